import json
import math

import pytest

from kfrlhf.eval.config import EvalConfig
from kfrlhf.eval.stage import evaluate, summarize


def test_summarize_hand_made_case():
    m = summarize([1.0, 2.0, 3.0, 0.0], [2.0, 2.0, 1.0, 1.0], [0.5, 1.5, 1.0, 1.0], [4] * 4, [4] * 4)
    assert m["reward_before"] == 1.5 and m["reward_after"] == 1.5
    assert m["win_rate"] == (1 + 0.5 + 0 + 1) / 4 and m["win_rate_ties"] == 1
    assert m["kl"] == 1.0 and m["num_prompts"] == 4
    gains = [1.0, 0.0, -2.0, 1.0]
    assert m["reward_gain"] == 0.0
    assert m["reward_gain_stderr"] == pytest.approx(math.sqrt(sum(g * g for g in gains) / 3 / 4))


def test_length_controlled_gain():
    """Reward = length + 0.5 for tuned answers: the gain is length but for the 0.5."""
    before, lengths_after = [1.0, 3.0, 2.0, 6.0], [4.0, 5.0, 6.0, 9.0]
    m = summarize(before, [x + 0.5 for x in lengths_after], [0.0] * 4, before, lengths_after)
    assert m["reward_gain"] == pytest.approx(3.5)
    # one slope over both models' answers: cov/var of the pooled 8 points, then gain - slope * 3 (length change)
    x, y = before + lengths_after, before + [v + 0.5 for v in lengths_after]
    mx, my = sum(x) / 8, sum(y) / 8
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)
    assert m["length_controlled_gain"] == pytest.approx(3.5 - slope * 3.0)
    # its paired standard error: of the per-prompt gains less slope x each prompt's length change
    residuals = [0.5 + (a - b) * (1 - slope) for b, a in zip(before, lengths_after)]
    mean = sum(residuals) / 4
    assert m["length_controlled_gain_stderr"] == pytest.approx(math.sqrt(sum((r - mean) ** 2 for r in residuals) / 12))
    assert 0.9 < m["reward_length_correlation_eval"] < 1.0
    exact = summarize([1.0, 2.0], [3.0, 5.0], [0.0] * 2, [1.0, 2.0], [3.0, 5.0])  # reward is length
    assert exact["length_controlled_gain"] == pytest.approx(0.0) and exact["reward_length_correlation_eval"] == 1.0


def test_a_model_against_itself(tiny_lm_dir, reward_dir, tmp_path):
    """Same model, same sampling seed: identical answers, KL 0, win rate one half."""
    cfg = EvalConfig(num_prompts=6, max_new_tokens=6, batch_size=4, num_samples=3, second_judge=str(reward_dir[0]))
    prompts = [
        f"Question: Why do people like {t}?\n\nAnswer: " for t in ("tea", "maps", "bees", "kites", "soup", "boats")
    ]
    report = evaluate(
        cfg, str(tiny_lm_dir), str(tiny_lm_dir), str(reward_dir[0]), prompts, tmp_path, {"sft_eval_loss": 1.0}
    )
    assert report["kl"] == pytest.approx(0.0, abs=1e-5)
    assert report["win_rate"] == 0.5 and report["reward_before"] == report["reward_after"]
    assert report["win_rate_ties"] == 6 and report["reward_gain_stderr"] == 0.0  # the gate reads: no evidence
    assert report["sft_eval_loss"] == 1.0 and report["kl_within_bound"]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert len(saved["samples"]) == 6 and all(s["sft"] == s["tuned"] for s in saved["samples"])
    md = (tmp_path / "report.md").read_text()
    assert "| win_rate | 0.5 |" in md and md.count("\n| Question:") == 3
    assert report["win_rate_second_judge"] == 0.5 and report["win_rate_second_judge_ties"] == 6
    assert "| win_rate_judge | this run's reward model |" in md
    assert report["length_controlled_gain"] == 0.0 and "| kl_temperature | 0.7 |" in md
    assert "<svg" in (tmp_path / "report.html").read_text()


def test_a_run_names_the_judge_its_method_used():
    """PPO, GRPO and ReST optimise the run's reward model; DPO and KTO learn from the pairs and never see it."""
    from kfrlhf.pipelines.definitions.registry import PIPELINES
    from kfrlhf.pipelines.local.run import judge

    judges = {name: judge(PIPELINES[name]()) for name in ("rlhf", "dpo", "kto", "rest", "grpo")}
    assert judges["rlhf"] == "this run's reward model, which PPO optimised"
    assert judges["grpo"].endswith("which GRPO optimised") and judges["rest"].endswith("which ReST optimised")
    assert judges["dpo"] == "this run's reward model, trained on the pairs DPO learned from without it"
    assert judges["kto"].endswith("KTO learned from without it")
