"""Images you can build and pin: the CI workflow builds every Dockerfile target, pushes by digest and
compiles against the digests; the CUDA base, the torch index and the driver in docs/cluster.md agree."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml

from kfrlhf.pipelines.cluster import cli as cli_cluster
from kfrlhf.pipelines.cluster import images
from kfrlhf.pipelines.definitions.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "images.yaml"
TARGETS = sorted(STAGES)


def test_ci_builds_every_target_pushes_by_digest_and_compiles_against_it():
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    assert (
        "kfrlhf.pipelines.definitions.stages import STAGES" in jobs["targets"]["steps"][-1]["run"]
    )  # the stage list lives in one place
    assert jobs["build"]["strategy"]["matrix"]["target"] == "${{ fromJSON(needs.targets.outputs.targets) }}"
    (build,) = [s for s in jobs["build"]["steps"] if s.get("id") == "build"]
    assert build["with"]["push"] is True and build["with"]["target"] == "${{ matrix.target }}"
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
    cuda = re.search(r"ARG CUDA_IMAGE=nvidia/cuda:(\d+)\.(\d+)\.\d+-", text).groups()
    index = re.search(r"ARG TORCH_INDEX=https://download.pytorch.org/whl/cu(\d+)", text)[1]
    assert index == "".join(cuda), "the torch wheels' CUDA must be the base image's (PyPI's default is CUDA 13.0)"
    readme = (ROOT / "docs" / "cluster.md").read_text() + (ROOT / "images" / "README.md").read_text()
    assert f"CUDA {cuda[0]}.{cuda[1]}" in readme and "driver ≥ 570" in readme


def test_readmes_build_every_target():
    loop = re.search(r"for target in ([a-z ]+); do", (ROOT / "docs" / "cluster.md").read_text())[1].split()
    assert sorted(loop) == TARGETS
    table = (ROOT / "images" / "README.md").read_text()
    assert all(f"`{t}`" in table for t in TARGETS)
