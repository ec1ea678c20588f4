"""The real RLHF pipeline through kfp.local (SubprocessRunner), shortened to a few steps a stage,
with fake secrets in the environment and W&B offline: they must not leak into logs or artifacts."""

import json
import math

from kfrlhf.pipelines.cli import GATE_REFUSED, main
from tests.conftest import assert_clean, assert_tree_clean

FAST = [
    "sft.max_steps=10",
    "sft.eval_steps=10",
    "reward.max_steps=10",
    "reward.eval_steps=10",
    "ppo.steps=2",
    "ppo.batch_size=8",
    "ppo.mini_batch_size=4",
    "ppo.ppo_epochs=1",
    "ppo.save_every=1",
    "eval.num_prompts=8",
    "eval.batch_size=8",
]


def test_rlhf_run_through_kfp_local(tmp_path, capfd, fake_secrets):
    """...whose PPO does not move the model (learning rate 1e-12): the gate fails and nothing is promoted."""
    out = tmp_path / "run"
    args = ["run", "--output", str(out), "--report-to", "wandb"]
    for item in FAST + ["ppo.learning_rate=1e-12"]:
        args += ["--set", item]
    assert main(args) == GATE_REFUSED  # the pipeline ran, its gate refused the model
    report = json.loads((out / "report.json").read_text())
    for key in ("sft_eval_loss", "reward_accuracy", "reward_before", "reward_after", "kl", "win_rate"):
        assert math.isfinite(report[key]), key
    assert report["num_prompts"] == 8 and len(report["samples"]) == 8
    assert all(s["sft"] == s["tuned"] for s in report["samples"])  # the tuned model answers as SFT did
    assert report["reward_gain"] == 0.0 and report["reward_gain_stderr"] == 0.0 and report["win_rate_ties"] == 8
    assert not report["gate"]["passed"] and "promotion" not in report and not list(out.rglob("promote"))
    assert "reward gain 0 ± 0: zero spread" in report["gate"]["reasons"][0]
    assert "RLHF evaluation" in (out / "report.md").read_text()
    printed = capfd.readouterr()  # fd level: the tasks' own output too
    assert "win_rate" in printed.out and "reward_after" in printed.out
    # The quiet console: a line per stage; the tasks' output is in the logs.
    stages = [line[:5] for line in printed.out.splitlines() if line.startswith("[")]
    assert stages == [f"[{i}/9]" for i in range(1, 9)]  # no promote: the gate failed
    assert "executor_input" not in printed.out and "executor_input" in (out / "logs" / "sft.log").read_text()
    assert f"report: {out}/report.html" in printed.out
    assert "eval gate failed, promotion skipped: reward gain 0 ± 0: zero spread" in printed.out
    assert_clean(printed.out + printed.err, fake_secrets, "the run's output")
    assert assert_tree_clean(out, fake_secrets) > 50  # every artifact, W&B offline files included
    assert list(out.rglob("*.wandb"))
    # Every stage ran as its own KFP task and left its artifacts under the pipeline root.
    root = out / "pipeline_root"
    for name in ("adapter_model.safetensors", "model.safetensors", "train.jsonl", "history.json"):
        assert list(root.rglob(name)), name
