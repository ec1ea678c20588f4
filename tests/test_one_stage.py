"""`rlhf stage NAME` runs one stage's entry on an earlier run's artifacts: PPO on a finished run's SFT model,
reward model and prompts gives that run's PPO numbers (same config, same seed); bad inputs are one line."""

import json

import pytest

from kfrlhf.pipelines.cli import main
from tests.test_pipeline import FAST


def test_ppo_alone_on_a_finished_runs_artifacts_reproduces_its_ppo(tmp_path):
    sets = [a for item in FAST for a in ("--set", item)]
    run = tmp_path / "run"
    assert main(["run", "--output", str(run), "--report-to", "none", *sets]) in (0, 3)  # 3: the gate refused
    root = run / "pipeline_root"
    # kfp.local keeps each task's outputs in <run>/<task>/<output>.
    (ppo_metrics,) = root.glob("*/ppo/adapter/metrics.json")
    inputs = {
        "sft_model": next(root.glob("*/merge/model")),
        "reward_model": next(root.glob("*/reward/reward_model")),
        "prompt_data": next(root.glob("*/prepare-data/prompt_data")),
    }
    args = ["stage", "ppo", "--output", str(tmp_path / "ppo"), "--report-to", "none", *sets]
    for name, path in inputs.items():
        args += ["--input", f"{name}={path}"]
    assert main(args) == 0
    again = json.loads((tmp_path / "ppo" / "metrics.json").read_text())
    before = json.loads(ppo_metrics.read_text())
    assert set(again) == set(before)
    for key, value in before.items():
        if "per_second" not in key:  # the speed, not a result
            assert again[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


@pytest.mark.parametrize(
    "args, expected",
    [
        (["stage", "nope", "--output", "o"], "unknown stage 'nope'"),
        (["stage", "ppo", "--output", "o"], "stage ppo needs --input sft_model=DIR --input reward_model=DIR"),
        (["stage", "dpo", "--output", "o", "--input", "x=y"], "--input x: stage dpo takes no such input"),
        (["stage", "dpo", "--output", "o", "--input", "sft_model"], "--input 'sft_model': expected NAME=DIR"),
        (["stage", "rest", "--output", "o"], "stage rest runs as steps: give --step grow or --step improve"),
    ],
)
def test_bad_stage_arguments_are_one_line(tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
