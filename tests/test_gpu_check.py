"""The GPU check's dry run (what CI can run of it): every pipeline builds from the check's QLoRA + bf16 config and
its tests exist; a check that cannot build a pipeline or find a test fails."""

import json
import shutil

import pytest

from benchmarks import gpu_check
from kfrlhf.pipelines.definitions.registry import PIPELINES


def test_the_dry_run_builds_every_pipeline_with_qlora_and_bf16(tmp_path):
    out = tmp_path / "gpu-check.json"
    assert gpu_check.main(["--dry-run", "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["mode"] == "dry-run" and summary["passed"] and set(summary["versions"]) >= {"torch", "trl", "kfp"}
    assert list(summary["pipelines"]) == list(PIPELINES)
    for name, result in summary["pipelines"].items():
        command = " ".join(result["command"])
        assert result["stages"] >= 6 and f"--pipeline {name}" in command
        assert "sft.load_in_4bit=true" in command and "reward.bf16=true" in command
    assert "ppo.load_in_4bit=true" in " ".join(summary["pipelines"]["rlhf"]["command"])
    collected = int(summary["tests"]["summary"].split()[0])
    assert collected >= 30  # the device and training tests


def test_a_check_that_cannot_build_or_collect_fails(tmp_path):
    out = tmp_path / "gpu-check.json"
    assert gpu_check.main(["--dry-run", "--json", str(out), "--tests", "tests/test_no_such_file.py"]) == 1
    assert not json.loads(out.read_text())["tests"]["passed"]
    with pytest.raises(Exception, match="sft.no_such_field"):
        gpu_check.main(["--dry-run", "--json", str(out), "--set", "sft.no_such_field=1"])


def test_without_a_gpu_the_check_refuses(tmp_path, capsys):
    if gpu_check.gpu()["cuda"]:
        pytest.skip("a GPU is here")
    assert gpu_check.main(["--json", str(tmp_path / "x.json")]) == 2
    assert "no CUDA GPU here" in capsys.readouterr().err


def test_a_stale_install_is_named(tmp_path, monkeypatch):
    """The GPU machine imports kfrlhf from carried wheels: a checkout changed since they were built is refused."""
    assert gpu_check.stale_install() is None  # this checkout's own code
    for name in ("components", "pipelines"):
        shutil.copytree(gpu_check.ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(gpu_check, "ROOT", tmp_path)
    assert gpu_check.stale_install() is None
    (tmp_path / "components" / "ppo" / "trainer.py").write_text("# changed\n")
    assert gpu_check.stale_install() == "components/ppo/trainer.py"
