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
    try:
        assert main(["images", "--flavour", "cpu", "--log-dir", str(logs)]) == 0
    finally:
        os.chdir(cwd)
    return image_build.git_commit(ROOT)


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
    assert main(args) == 0
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
