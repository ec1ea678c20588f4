"""The cpu-flavour stage images, built here (`rlhf images --flavour cpu`: buildah or podman, cached layers) and run:
each holds every module its stage's code imports, runs as uid 1000 writing only where a task may, and the tiny RLHF
and DPO pipelines run through them (`rlhf run --runner container`), each task in its own stage's image, built from
this commit. Skipped where neither buildah nor podman is installed (`.ci/run` installs them in CI); the first build
here takes minutes (docs/cluster.md "Stage images": cold and warm times)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kfrlhf.pipelines.cli import main
from kfrlhf.pipelines.cluster import image_build, images
from kfrlhf.pipelines.definitions.stages import SPECS, STAGES
from kfrlhf.pipelines.local import containers
from tests.test_pipeline import FAST

ROOT = Path(__file__).resolve().parents[1]
ENGINE = shutil.which("podman")
pytestmark = pytest.mark.skipif(
    not (ENGINE and (shutil.which("buildah") or ENGINE)) or os.geteuid() != 0,
    reason="needs podman (and buildah) as root: apt-get install -y buildah podman runc mmdebstrap",
)
TAG = images.default_tag("cpu")
DPO_FAST = ["dpo.max_steps=4", "dpo.batch_size=4", "sft.max_steps=10", "sft.eval_steps=10", "reward.max_steps=10"]


def _podman(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, **kwargs)


def _label(image: str, label: str) -> str:
    return _podman("image", "inspect", "--format", '{{index .Labels "' + label + '"}}', image).stdout.strip()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every stage's cpu image, built from this tree (cached layers: seconds when nothing changed)."""
    logs = tmp_path_factory.mktemp("image-logs")
    cwd = os.getcwd()
    os.chdir(ROOT)  # the build context is the repository root
    commit = image_build.git_commit(ROOT)  # what `rlhf images` labels them with (read as it starts)
    try:
        assert main(["images", "--flavour", "cpu", "--log-dir", str(logs)]) == 0
    finally:
        os.chdir(cwd)
    return commit


def _run_in(image: str, *command: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`command` in `image` as the container runner runs a task (uid 1000, its options)."""
    engine = ["--runtime", "runc", "run", "--rm", "-i", f"--user={containers.UID}:{containers.UID}"]
    return _podman(*engine, *containers.RUN_OPTIONS, image, *command, input=stdin)


@pytest.mark.parametrize("stage", STAGES)
def test_each_image_holds_what_its_stage_imports(built, stage):
    """Every module the stage's code imports (at the top or in a function, through the kfrlhf modules it reaches) is
    in its image; a module an extra promises (`require`) only where the image was built with that extra."""
    image = images.image_for(stage, tag=TAG)
    assert _label(image, images.STAGE_LABEL) == stage and _label(image, images.COMMIT_LABEL) == built
    extras = _label(image, "org.kubeflow-rlhf.extras")
    script = (ROOT / "tests" / "image_imports.py").read_text()
    out = _run_in(image, "python3", "-", stage, extras, stdin=script)
    assert out.returncode == 0, f"{image} lacks modules its stage imports:\n{out.stdout}{out.stderr}"


def test_images_run_as_1000_and_write_only_where_a_task_may(built):
    """uid 1000; the venv, the system and the project's files read-only; /cache, /tmp, HOME and KFP's artifact
    folders writable. One image per base."""
    probe = (
        "id -u; for d in / /usr /etc /opt/venv /opt/venv/lib /opt/rlhf-build /cache /tmp $HOME /gcs /minio /s3; do "
        'touch "$d/.probe" 2>/dev/null && echo "writable $d"; done; python3 -c "import sys; print(sys.prefix)"'
    )
    for stage in {spec.image_base: name for name, spec in SPECS.items()}.values():
        out = _run_in(images.image_for(stage, tag=TAG), "sh", "-c", probe)
        lines = out.stdout.split()
        assert out.returncode == 0 and lines[0] == "1000", out.stdout + out.stderr
        writable = {line for line in out.stdout.splitlines() if line.startswith("writable")}
        assert writable == {f"writable {d}" for d in ("/cache", "/tmp", "/home/rlhf", "/gcs", "/minio", "/s3")}, stage
        assert lines[-1] == "/opt/venv"  # the image's own Python


def _container_run(tmp_path: Path, pipeline: str, overrides: list[str]) -> tuple[dict, dict]:
    out = tmp_path / pipeline
    args = ["run", "--runner", "container", "--pipeline", pipeline, "--output", str(out)]
    for item in overrides:
        args += ["--set", item]
    assert main(args) in (0, 3)  # 3: the pipeline ran and its eval gate refused the model (`rlhf run`'s exit status)
    return json.loads((out / "report.json").read_text()), json.loads((out / "containers.json").read_text())


def _ran_in_own_images(ran: dict, commit: str) -> None:
    """Each task ran in its stage's image (the container's image ID is that image's), built from `commit`."""
    assert ran
    for task, where in ran.items():
        stage = _label(where["image"], images.STAGE_LABEL)
        assert where["image"] == images.image_for(stage, tag=TAG), task
        image_id = _podman("image", "inspect", "--format", "{{.Id}}", where["image"]).stdout.strip()
        assert where["image_id"] == image_id and where["commit"] == commit, (task, where)


def test_rlhf_pipeline_through_the_images(built, tmp_path):
    report, ran = _container_run(tmp_path, "rlhf", FAST)
    for key in ("sft_eval_loss", "reward_accuracy", "kl", "win_rate"):
        assert math.isfinite(report[key]), key
    _ran_in_own_images(ran, built)
    stages = {_label(where["image"], images.STAGE_LABEL) for where in ran.values()}
    assert stages >= {"data", "sft", "merge", "reward", "ppo", "eval", "gate"}, stages
    assert (tmp_path / "rlhf" / "report.html").is_file()
    if report["gate"]["passed"]:  # promoted: the manifest comes out as from a subprocess run
        assert (tmp_path / "rlhf" / "inference_service.yaml").is_file()


def test_dpo_pipeline_through_the_images(built, tmp_path):
    report, ran = _container_run(tmp_path, "dpo", DPO_FAST)
    assert math.isfinite(report["win_rate"])
    _ran_in_own_images(ran, built)
    assert "dpo" in {_label(where["image"], images.STAGE_LABEL) for where in ran.values()}


# The cuda flavour's base, nvidia/cuda:12.8.1-base-ubuntu24.04, is built by NVIDIA's
# gitlab.com/nvidia/container-images/cuda dist/12.8.1/ubuntu2404/base/Dockerfile on ubuntu:24.04: no Python, Ubuntu's
# `ubuntu` user at uid 1000, the NVIDIA_* and CUDA_VERSION environment, /usr/local/nvidia on PATH and LD_LIBRARY_PATH,
# /usr/local/cuda -> cuda-12.8. No image registry (and no Ubuntu mirror) is reachable here: the stand-in is Debian 12
# from mmdebstrap, without Python, with that user, environment and layout.
CUDA_STANDIN = "localhost/kubeflow-rlhf-cuda-standin:bookworm"
CUDA_ENV = {
    "NVIDIA_VISIBLE_DEVICES": "all",
    "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
    "CUDA_VERSION": "12.8.1",
    "PATH": "/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LD_LIBRARY_PATH": "/usr/local/nvidia/lib:/usr/local/nvidia/lib64",
}


def _cuda_standin(tmp: Path) -> str:
    if image_build.image_exists("buildah", CUDA_STANDIN):
        return CUDA_STANDIN
    tar = tmp / "standin.tar"
    subprocess.run(["mmdebstrap", "--variant=minbase", "--include=passwd", "bookworm", str(tar)], check=True)
    name = subprocess.run(["buildah", "from", "scratch"], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["buildah", "add", name, str(tar), "/"], check=True, capture_output=True)
    layout = "useradd --uid 1000 --create-home ubuntu && mkdir -p /usr/local/cuda-12.8/lib64 "
    layout += "&& ln -s cuda-12.8 /usr/local/cuda"
    subprocess.run(["buildah", "run", "--isolation=chroot", name, "sh", "-c", layout], check=True)
    subprocess.run(["buildah", "config", *[f"--env={k}={v}" for k, v in CUDA_ENV.items()], name], check=True)
    subprocess.run(["buildah", "commit", "--rm", name, CUDA_STANDIN], check=True, capture_output=True)
    return CUDA_STANDIN


@pytest.mark.skipif(not shutil.which("buildah") or not shutil.which("mmdebstrap"), reason="needs buildah, mmdebstrap")
def test_cuda_flavour_up_to_torch_on_a_stand_in_base(tmp_path):
    """The cuda flavour's Dockerfile path on a base laid out as the CUDA one: Python and its venv from the
    distribution (the CUDA base has none), torch installed (the CPU wheel: the cu128 index is not reachable here),
    Ubuntu's uid-1000 user replaced by `rlhf`, the base's CUDA environment kept."""
    base = _cuda_standin(tmp_path)
    mounts, overrides, _ = image_build.host_mounts("buildah", "cpu", tmp_path)
    args = images.build_args("ppo", "cuda", "test", BASE_IMAGE=base, TORCH_INDEX=overrides.get("TORCH_INDEX", ""))
    command = images.build_command("ppo", "localhost/standin", "test", "buildah", args, tuple(mounts))
    command[command.index(f"--target={images.STAGE_TARGET}")] = "--target=user"
    build = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    probe = 'id -un; id ubuntu 2>&1; echo "$NVIDIA_VISIBLE_DEVICES $CUDA_VERSION"; '
    probe += 'python3 -c "import torch; print(torch.__version__)"'
    out = _run_in("localhost/standin/kubeflow-rlhf-ppo:test", "sh", "-c", probe)
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and lines[0] == "rlhf" and "no such user" in lines[1], out.stdout + out.stderr
    assert lines[2] == "all 12.8.1" and lines[3].startswith("2.13.0"), lines
