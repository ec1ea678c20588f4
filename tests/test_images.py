"""Images you can build and pin: the CI workflow builds every stage's image, pushes by digest and
compiles against the digests; the CUDA base, the torch index and the driver in docs/cluster.md agree."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import yaml

from kfrlhf.pipelines.cli import main
from kfrlhf.pipelines.cluster import cli as cli_cluster
from kfrlhf.pipelines.cluster import images
from kfrlhf.pipelines.definitions.stages import SPECS, STAGES

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "images.yaml"


def test_ci_builds_every_stage_image_pushes_by_digest_and_compiles_against_it():
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    # The stages and their build arguments come from the specs, in one place.
    assert "[s.build_args for s in SPECS.values()]" in jobs["targets"]["steps"][-1]["run"]
    assert jobs["build"]["strategy"]["matrix"]["include"] == "${{ fromJSON(needs.targets.outputs.stages) }}"
    (build,) = [s for s in jobs["build"]["steps"] if s.get("id") == "build"]
    assert build["with"]["push"] is True and build["with"]["target"] == images.STAGE_TARGET
    assert build["with"]["build-args"].splitlines() == [f"{a}=${{{{ matrix.{a} }}}}" for a in SPECS["ppo"].build_args]
    assert "kubeflow-rlhf-${{ matrix.STAGE }}" in build["with"]["tags"]
    assert any("steps.build.outputs.digest" in str(s.get("env", {})) for s in jobs["build"]["steps"])
    compile_run = next(s["run"] for s in jobs["compile"]["steps"] if "rlhf compile" in s.get("run", ""))
    assert "--digest" in compile_run and "--overlays manifests/overlays" in compile_run


def test_compile_names_images_by_digest(tmp_path):
    parser = argparse.ArgumentParser(prog="rlhf")
    cli_cluster.add_compile_parser(parser.add_subparsers(required=True))
    digest = "sha256:" + "a" * 64
    args = parser.parse_args(
        ["compile", "--output", str(tmp_path), "--registry", "reg.example/ml", "--digest", f"ppo={digest}"]
    )
    assert args.func(args) == 0
    ir = next(yaml.safe_load_all((tmp_path / "rlhf.yaml").read_text()))
    refs = {e["container"]["image"] for e in ir["deploymentSpec"]["executors"].values()}
    assert f"reg.example/ml/kubeflow-rlhf-ppo@{digest}" in refs
    assert images.image_for("sft", "reg.example/ml") in refs  # no digest given: the tag
    bad = parser.parse_args(["compile", "--output", str(tmp_path), "--digest", "nope=sha256:1"])
    assert bad.func(bad) == 2


def test_cuda_base_torch_index_and_driver_agree():
    text = (ROOT / images.DOCKERFILE).read_text()
    cuda = re.search(r"ARG BASE_IMAGE=nvidia/cuda:(\d+)\.(\d+)\.\d+-", text).groups()
    index = re.search(r"ARG TORCH_INDEX=https://download.pytorch.org/whl/cu(\d+)", text)[1]
    assert index == "".join(cuda), "the torch wheels' CUDA must be the base image's (PyPI's default is CUDA 13.0)"
    readme = (ROOT / "docs" / "cluster.md").read_text() + (ROOT / "images" / "README.md").read_text()
    assert f"CUDA {cuda[0]}.{cuda[1]}" in readme and "driver ≥ 570" in readme


def test_rlhf_images_builds_every_stage_on_its_base(capsys):
    """`rlhf images` (what the docs tell you to run) builds each stage's image from the `stage` target with
    the base its spec names; the images README's table lists every base and stage."""
    assert main(["images", "--dry-run", "--push", "--registry", "reg.example/ml", "--tag", "1.2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    builds = [shlex.split(line) for line in lines if line.startswith("docker build")]
    assert len(builds) == len(STAGES) and len(lines) == 2 * len(STAGES)
    for stage, command in zip(STAGES, builds):
        assert f"--build-arg=BASE={SPECS[stage].image_base}" in command and f"--build-arg=STAGE={stage}" in command
        assert command[command.index("-t") + 1] == f"reg.example/ml/kubeflow-rlhf-{stage}:1.2"
    assert "rlhf images --registry" in (ROOT / "docs" / "cluster.md").read_text()
    table = (ROOT / "images" / "README.md").read_text()
    for stage, spec in SPECS.items():
        assert re.search(rf"^\| `{spec.image_base}` \|[^|]*\b{stage}\b", table, re.M), f"images/README.md: {stage}"
