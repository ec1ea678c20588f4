"""ReST: the Improve filter keeps exactly the answers above the threshold and the threshold rises; Grow
and Improve on tiny models (the filtered SFT moves the policy towards the kept answers); the ReST
pipeline end to end through kfp.local, its Grow datasets and Improve metrics agreeing."""

import json
import math

import pytest
import torch

from kfrlhf.common.config import ConfigError
from kfrlhf.common.models import RewardScorer, load_tokenizer
from kfrlhf.pipelines.cli import GATE_REFUSED, main
from kfrlhf.rest.config import RESTConfig, unrolled_config
from kfrlhf.rest.grow import SAMPLES, grow, load_policy
from kfrlhf.rest.improve import improve, select, standardised
from tests.conftest import preference_rows
from tests.test_pipeline import FAST


def _rows(rewards):
    return [{"prompt": f"q{i}", "response": f"a{i}", "reward": r} for i, r in enumerate(rewards)]


def test_filter_keeps_exactly_the_answers_above_the_threshold():
    rows = _rows([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])  # mean 3.5, std sqrt(5.25): z = +-0.22, 0.65, 1.09, 1.53
    assert standardised([r["reward"] for r in rows])[7] == pytest.approx(3.5 / math.sqrt(5.25))
    kept = {t: [r["reward"] for r in select(rows, t)] for t in (-2.0, 0.0, 0.5, 1.0, 1.6)}
    assert kept == {
        -2.0: [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        0.0: [4.0, 5.0, 6.0, 7.0],
        0.5: [5.0, 6.0, 7.0],
        1.0: [6.0, 7.0],
        1.6: [],
    }
    # Strictly above: an answer exactly at the threshold (here the mean, z = 0) is dropped.
    assert [r["reward"] for r in select(_rows([-1.0, 0.0, 1.0]), 0.0)] == [1.0]
    assert select(_rows([2.0, 2.0, 2.0]), -1.0) == _rows([2.0, 2.0, 2.0])  # no spread: every z is 0


def test_the_threshold_rises_each_iteration_and_the_unrolled_count_is_checked():
    cfg = RESTConfig(iterations=4, threshold_start=-0.5, threshold_step=0.25)
    assert [cfg.threshold(i) for i in range(4)] == [-0.5, -0.25, 0.0, 0.25]
    with pytest.raises(ConfigError, match="iteration 4 is outside 0..3"):
        cfg.threshold(4)
    for step in (0.0, -0.5):
        with pytest.raises(ConfigError, match="rest.threshold_step must be > 0"):
            RESTConfig(threshold_step=step)
    assert unrolled_config({"iterations": 2}, 2).iterations == 2
    with pytest.raises(ConfigError, match="rest.iterations is 3, but this pipeline was built with 2"):
        unrolled_config({"iterations": 3}, 2)


def test_grow_then_improve_moves_the_policy_towards_the_kept_answers(tiny_lm_dir, reward_dir, tmp_path):
    reward_model, _ = reward_dir
    cfg = RESTConfig(
        iterations=2, samples_per_prompt=4, num_prompts=16, max_new_tokens=8, max_prompt_length=32,
        learning_rate=1e-2, max_steps=8, batch_size=8, logging_steps=2, gradient_checkpointing=False, bf16=False,
        save_steps=8,
    )  # fmt: skip
    prompts = [r["prompt"] for r in preference_rows(32, seed=5)]
    tok, scorer = load_tokenizer(str(tiny_lm_dir), padding_side="left"), RewardScorer(str(reward_model))
    summary = grow(cfg, 0, load_policy(str(tiny_lm_dir), None), tok, scorer, prompts, tmp_path / "grow")
    rows = [json.loads(line) for line in (tmp_path / "grow" / SAMPLES).read_text().splitlines()]
    assert len(rows) == summary["rest_grow_samples"] == 64 and {r["iteration"] for r in rows} == {0}
    assert [r["prompt"] for r in rows[:4]] == [prompts[0]] * 4
    # The stored rewards are the reward model's scores of the stored texts.
    scores = scorer([r["prompt"] for r in rows], [r["response"] for r in rows])
    assert torch.allclose(scores, torch.tensor([r["reward"] for r in rows]), atol=1e-4)
    m = improve(cfg, 0, str(tiny_lm_dir), None, rows, tmp_path / "improve")
    kept = select(rows, 0.0)
    assert m["rest_threshold"] == 0.0 and m["rest_kept"] == len(kept) and 0 < len(kept) < len(rows)
    assert m["rest_kept_reward_mean"] > summary["rest_grow_reward_mean"]
    assert m["rest_train_loss_last"] < m["rest_train_loss_first"]
    # The improved policy (SFT + adapter) gives the kept answers more probability than the SFT model did.
    policy, base = (
        load_policy(str(tiny_lm_dir), str(tmp_path / "improve" / "adapter")),
        load_policy(str(tiny_lm_dir), None),
    )

    def logp(model, row):
        ids = tok(row["prompt"] + row["response"], return_tensors="pt")["input_ids"]
        n = len(tok(row["prompt"])["input_ids"])
        with torch.no_grad():
            return model(input_ids=ids).logits[0, :-1].log_softmax(-1).gather(-1, ids[0, 1:, None])[n - 1 :].sum()

    assert sum(logp(policy, r) - logp(base, r) for r in kept) > 0


def test_rest_run_through_kfp_local(tmp_path):
    out = tmp_path / "run"
    # Thresholds -1 and -0.5: the best answer (z >= 0) always passes, whatever the few-step SFT samples.
    rest = [
        "iterations=2",
        "num_prompts=8",
        "samples_per_prompt=4",
        "max_steps=3",
        "save_steps=3",
        "threshold_start=-1",
        "threshold_step=0.5",
    ]
    args = ["run", "--pipeline", "rest", "--output", str(out), "--report-to", "none"]
    for item in FAST + [f"rest.{r}" for r in rest]:
        args += ["--set", item]
    code = main(args)
    report = json.loads((out / "report.json").read_text())
    assert code == (0 if report["gate"]["passed"] else GATE_REFUSED)
    assert report["pipeline"] == "rest"
    for key in ("reward_before", "reward_after", "kl", "win_rate"):
        assert math.isfinite(report[key]), key
    assert {"rest-grow", "rest-grow-2", "rest-improve", "rest-improve-2"} <= set(report["stage_times_s"])
    root = next((out / "pipeline_root").iterdir())  # <pipeline>-<timestamp>: one run
    for i, suffix in enumerate(("", "-2")):
        rows = [
            json.loads(line) for line in (root / f"rest-grow{suffix}" / "samples" / SAMPLES).read_text().splitlines()
        ]
        assert len(rows) == 8 * 4 and {r["iteration"] for r in rows} == {i}
        metrics = json.loads((root / f"rest-improve{suffix}" / "adapter" / "metrics.json").read_text())
        assert metrics["rest_threshold"] == -1 + 0.5 * i
        assert metrics["rest_kept"] == len(select(rows, -1 + 0.5 * i))
