"""Secrets come only from the environment (Kubernetes Secrets as env vars): with distinctive fake
values set, they appear in no compiled pipeline, rendered manifest, pipeline parameter,
CLI output, log, dataset artifact or W&B (offline) run file.
"""

import dataclasses
import logging
import subprocess
from pathlib import Path

import pytest

from kfrlhf.pipelines.cli import main
from tests.conftest import KUBECTL, assert_clean, assert_tree_clean, need

ROOT = Path(__file__).resolve().parents[1]


def test_compiled_pipelines_and_parameters(fake_secrets, tmp_path):
    from kfrlhf.pipelines.cluster.compile import compile_all
    from kfrlhf.pipelines.cluster.submit import pipeline_arguments

    compile_all(tmp_path / "compiled", manifests_dir=tmp_path / "manifests")
    assert assert_tree_clean(tmp_path, fake_secrets) >= 3
    assert_clean(repr(pipeline_arguments(preset="tiny")), fake_secrets, "pipeline parameters")


@pytest.mark.parametrize("overlay", sorted(p.name for p in (ROOT / "manifests" / "overlays").iterdir()))
def test_rendered_manifests(fake_secrets, overlay):
    out = subprocess.run(
        [need("kubectl", KUBECTL), "kustomize", str(ROOT / "manifests" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "kind: PipelineVersion" in out.stdout
    assert_clean(out.stdout + out.stderr, fake_secrets, f"kubectl kustomize {overlay}")


def test_cli_output_logs_and_artifacts(fake_secrets, tmp_path, capsys, caplog):
    from kfrlhf.data.stage import run as prepare_data

    caplog.set_level(logging.DEBUG)
    sample = tmp_path / "prefs.jsonl"
    sample.write_text(
        '{"chosen": "\\n\\nHuman: Hi\\n\\nAssistant: Hello", "rejected": "\\n\\nHuman: Hi\\n\\nAssistant: "}\n'
        '{"prompt": "Q", "chosen": "A", "rejected": "B"}\n'
    )
    assert main(["config", "--report-to", "wandb"]) == 0
    main(["data", "check", "--format", "preference", str(sample)])
    main(["run", "--set", "ppo.steps=0", "--output", str(tmp_path / "never")])  # fails in the pre-flight
    data = {"sft_dataset": "sample", "preference_dataset": "sample", "prompt_dataset": "sample", "max_rows": 20}
    prepare_data(data, *(str(tmp_path / d) for d in ("sft", "pref", "prompts")))
    out, err = capsys.readouterr()
    assert "report_to: wandb" in out and f"{sample}: ok" in out and "ppo.steps must be > 0" in err
    assert "skipped 1 of 2 rows" in caplog.text
    assert_clean(out + err + caplog.text, fake_secrets, "CLI output and logs")
    assert assert_tree_clean(tmp_path, fake_secrets) >= 6


def test_wandb_offline_run_files(fake_secrets, tmp_path):
    wandb = pytest.importorskip("wandb")
    from kfrlhf.common.tracking import step_tracker
    from kfrlhf.ppo.config import PPOConfig

    with step_tracker("wandb", tmp_path, "ppo", dataclasses.asdict(PPOConfig())) as tracker:
        tracker.log({"reward": 0.5, "kl": 0.1}, step=1)
    assert wandb.run is None  # the tracker finished the run
    assert assert_tree_clean(tmp_path, fake_secrets) >= 3
