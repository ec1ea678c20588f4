"""Eval: compare the tuned model with the SFT model on held-out prompts.

Both models answer the same prompts (same sampling seed, `temperature`); this run's reward model
scores every answer (`win_rate_judge` says so; `rlhf run` adds whether the tuning method optimised
it). Reported: mean reward before (SFT) and after (tuned), the mean per-prompt gain with its paired
standard error, the win rate (share of prompts where the tuned answer scores higher, ties count half;
`win_rate_ties` prompts tied), with `second_judge` the win rate
by that other sequence classifier beside it (by default the reward stage's frozen-encoder probe when
it saved one: a model no method optimised against, though it shares the reward model's base),
how reward follows answer length (see `summarize`),
and KL(tuned || SFT) estimated on the tuned model's own samples as the mean over prompts of
sum_t [log p_tuned - log p_sft], both at the sampling temperature: the KL of the distributions
that were sampled. Writes `report.json`, `report.md` and `report.html` (sample table, reward
histograms) to `output_dir`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from kfrlhf.common.checkpoint import atomic_dir
from kfrlhf.common.config import from_dict
from kfrlhf.common.data_sources import read_split
from kfrlhf.common.models import RewardScorer, load_pretrained_causal_lm, load_tokenizer
from kfrlhf.common.rollout import sample_batches
from kfrlhf.common.sampling import Rollout, forward, logprobs_from_logits, response_texts

from .config import EvalConfig
from .report import html_report, markdown_report

JUDGE = "this run's reward model"  # `rlhf run` says whether the tuning method optimised it
PROBE_JUDGE = "the reward stage's frozen-encoder probe (its warm-started head, never fine-tuned)"


def win_rate(before: list[float], after: list[float]) -> float:
    """Share of prompts where the tuned answer scores higher; ties count half."""
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for b, a in zip(before, after)) / len(before)


def ties(before: list[float], after: list[float]) -> int:
    """Prompts where both answers score the same (mostly: the same answer)."""
    return sum(a == b for b, a in zip(before, after))


def _mean(x: list[float]) -> float:
    return sum(x) / len(x)


def _stderr(x: list[float]) -> float:
    """Standard error of the mean of paired differences: how far sampling noise alone moves it."""
    n, m = len(x), _mean(x)
    return math.sqrt(sum((v - m) ** 2 for v in x) / (n - 1) / n) if n > 1 else float("inf")


def summarize(
    rewards_before: list[float],
    rewards_after: list[float],
    kl_per_prompt: list[float],
    lengths_before: list[float],
    lengths_after: list[float],
) -> dict:
    """The headline metrics from per-prompt rewards, KL estimates and answer lengths (tokens).

    Length: `reward_length_correlation_eval` is the correlation of reward and answer length over
    both models' answers. `length_controlled_gain` is the gain left once length is regressed out:
    one least-squares slope of reward on length over both models' answers, then the mean gain
    minus slope x mean length change (the gain of the residuals). A gain that is only longer
    (or shorter) answers scores ~0 here; it is a linear control, not a causal one. Its
    `length_controlled_gain_stderr` is the paired standard error of the per-prompt residual gains,
    the slope taken as known.
    """
    n = len(rewards_before)
    gains = [a - b for b, a in zip(rewards_before, rewards_after)]
    gain = _mean(gains)
    lengths, rewards = lengths_before + lengths_after, rewards_before + rewards_after
    ml, mr = _mean(lengths), _mean(rewards)
    sll = sum((x - ml) ** 2 for x in lengths)
    srr = sum((y - mr) ** 2 for y in rewards)
    slr = sum((x - ml) * (y - mr) for x, y in zip(lengths, rewards))
    slope = slr / sll if sll else 0.0
    controlled = [g - slope * (a - b) for g, b, a in zip(gains, lengths_before, lengths_after)]
    return {
        "reward_before": _mean(rewards_before),
        "reward_after": _mean(rewards_after),
        "reward_gain": gain,
        "reward_gain_stderr": _stderr(gains),
        "kl": _mean(kl_per_prompt),
        "win_rate": win_rate(rewards_before, rewards_after),
        "win_rate_ties": ties(rewards_before, rewards_after),
        "reward_length_correlation_eval": slr / math.sqrt(sll * srr) if sll and srr else 0.0,
        "length_controlled_gain": _mean(controlled),
        "length_controlled_gain_stderr": _stderr(controlled),
        "num_prompts": n,
    }


def sample(model, tokenizer, prompts: list[str], cfg: EvalConfig) -> list[Rollout]:
    """One sampled answer per prompt, in batches, with PPO's rollout code (same seed for every model)."""
    return sample_batches(model, tokenizer, prompts, cfg.max_new_tokens, cfg, cfg.batch_size, cfg.seed)


def lengths(rollouts: list[Rollout]) -> list[float]:
    """Answer lengths in tokens (up to and including EOS)."""
    return [n for r in rollouts for n in r.mask.sum(1).tolist()]


@torch.no_grad()
def sequence_logprobs(model, r: Rollout, temperature: float) -> torch.Tensor:
    """log p(response | prompt) per row, summed over the response tokens, at the sampling temperature."""
    logits, _ = forward(model, None, r.input_ids, r.attention_mask, r.prompt_len)
    return (logprobs_from_logits(logits, r.response_ids, temperature) * r.mask).sum(1).cpu()


def evaluate(
    cfg: EvalConfig,
    sft_dir: str,
    tuned_dir: str,
    reward_dir: str,
    prompts: list[str],
    output_dir: str | Path,
    upstream: dict | None = None,
    probe_dir: str | None = None,
) -> dict:
    """`upstream`: metrics of earlier stages (SFT eval loss, reward accuracy) to carry into the report;
    `probe_dir`: the reward stage's frozen-encoder probe, the second judge unless `cfg.second_judge` names one."""
    output_dir = Path(output_dir)
    prompts = prompts[: cfg.num_prompts]
    tokenizer = load_tokenizer(sft_dir, padding_side="left")
    sft, tuned = load_pretrained_causal_lm(sft_dir), load_pretrained_causal_lm(tuned_dir)
    sft_rollouts, tuned_rollouts = sample(sft, tokenizer, prompts, cfg), sample(tuned, tokenizer, prompts, cfg)
    before, after = response_texts(sft_rollouts), response_texts(tuned_rollouts)
    t = cfg.temperature
    kl = torch.cat([sequence_logprobs(tuned, r, t) - sequence_logprobs(sft, r, t) for r in tuned_rollouts]).tolist()
    scorer = RewardScorer(reward_dir, batch_size=cfg.batch_size)
    scores_before, scores_after = scorer(prompts, before).tolist(), scorer(prompts, after).tolist()
    report = {
        **(upstream or {}),
        **summarize(scores_before, scores_after, kl, lengths(sft_rollouts), lengths(tuned_rollouts)),
        "win_rate_judge": JUDGE,
        "kl_estimator": "k1 on the tuned model's samples, both models at the sampling temperature",
        "kl_temperature": t,
    }
    if cfg.second_judge or probe_dir:
        judge = RewardScorer(cfg.second_judge or probe_dir, batch_size=cfg.batch_size)
        report["second_judge"] = cfg.second_judge or PROBE_JUDGE
        second_before, second_after = judge(prompts, before).tolist(), judge(prompts, after).tolist()
        report["win_rate_second_judge"] = win_rate(second_before, second_after)
        report["win_rate_second_judge_ties"] = ties(second_before, second_after)
    report["kl_bound"] = cfg.kl_bound
    report["kl_within_bound"] = math.isfinite(report["kl"]) and report["kl"] <= cfg.kl_bound
    report["samples"] = [
        {"prompt": p, "sft": b, "tuned": a, "reward_sft": sb, "reward_tuned": sa}
        for p, b, a, sb, sa in zip(prompts, before, after, scores_before, scores_after)
    ]
    with atomic_dir(output_dir) as tmp:
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
        (tmp / "report.md").write_text(markdown_report(report, cfg.num_samples))
        (tmp / "report.html").write_text(html_report(report, cfg.num_samples))
    return report


def run(
    eval: dict,
    sft_model: str,
    tuned_model: str,
    reward_model: str,
    prompt_data: str,
    output_dir: str,
    upstream: dict | None = None,
) -> dict:
    """The stage on directories (what the KFP component calls); `reward_model` is the reward stage's output."""
    cfg = from_dict(EvalConfig, eval, "eval")
    prompts = [r["prompt"] for r in read_split(prompt_data, "eval")]
    probe = Path(reward_model) / "probe"  # written by the reward stage when it warm-starts its head
    probe_dir = str(probe) if probe.is_dir() else None
    return evaluate(
        cfg, sft_model, tuned_model, str(Path(reward_model) / "model"), prompts, output_dir, upstream, probe_dir
    )
