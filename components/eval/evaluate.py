"""Eval: compare the tuned model with the SFT model on held-out prompts.

Both models answer the same prompts (same sampling seed); the reward model scores every
answer. Reported: mean reward before (SFT) and after (tuned), the mean per-prompt gain with its paired
standard error, the win rate (share of prompts
where the tuned answer scores higher, ties count half), and KL(tuned || SFT) estimated on the
tuned model's own samples as the mean over prompts of sum_t [log p_tuned - log p_sft].
Writes `report.json`, `report.md` and `report.html` (sample table, reward histograms) to `output_dir`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from kfrlhf.common.checkpoint import atomic_dir
from kfrlhf.common.config import from_dict
from kfrlhf.common.data_sources import read_split
from kfrlhf.common.models import RewardScorer, load_pretrained_causal_lm, load_tokenizer
from kfrlhf.common.sampling import Rollout, forward, generate, logprobs_from_logits

from .config import EvalConfig
from .report import html_report, markdown_report


def summarize(rewards_before: list[float], rewards_after: list[float], kl_per_prompt: list[float]) -> dict:
    """The headline metrics from per-prompt rewards and KL estimates."""
    n = len(rewards_before)
    wins = [1.0 if a > b else 0.5 if a == b else 0.0 for b, a in zip(rewards_before, rewards_after)]
    gains = [a - b for b, a in zip(rewards_before, rewards_after)]
    gain = sum(gains) / n
    # Paired standard error of the mean gain: how far sampling noise alone moves it.
    stderr = math.sqrt(sum((g - gain) ** 2 for g in gains) / (n - 1) / n) if n > 1 else float("inf")
    return {
        "reward_before": sum(rewards_before) / n,
        "reward_after": sum(rewards_after) / n,
        "reward_gain": gain,
        "reward_gain_stderr": stderr,
        "kl": sum(kl_per_prompt) / len(kl_per_prompt),
        "win_rate": sum(wins) / n,
        "num_prompts": n,
    }


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str], cfg: EvalConfig) -> list[Rollout]:
    """One sampled answer per prompt, in batches, with PPO's rollout code (same seed for every model)."""
    torch.manual_seed(cfg.seed)
    return [
        generate(model, tokenizer, prompts[i : i + cfg.batch_size], cfg.max_new_tokens, cfg)
        for i in tqdm(range(0, len(prompts), cfg.batch_size), desc="generate", leave=False)
    ]


def texts(tokenizer, rollouts: list[Rollout]) -> list[str]:
    return [
        tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
        for r in rollouts
        for ids, mask in zip(r.response_ids, r.mask)
    ]


@torch.no_grad()
def sequence_logprobs(model, r: Rollout) -> torch.Tensor:
    """log p(response | prompt) per row, summed over the response tokens (temperature 1)."""
    logits, _ = forward(model, None, r.input_ids, r.attention_mask, r.prompt_len, temperature=1.0)
    return (logprobs_from_logits(logits, r.response_ids) * r.mask).sum(1).cpu()


def evaluate(
    cfg: EvalConfig,
    sft_dir: str,
    tuned_dir: str,
    reward_dir: str,
    prompts: list[str],
    output_dir: str | Path,
    upstream: dict | None = None,
) -> dict:
    """`upstream`: metrics of earlier stages (SFT eval loss, reward accuracy) to carry into the report."""
    output_dir = Path(output_dir)
    prompts = prompts[: cfg.num_prompts]
    tokenizer = load_tokenizer(sft_dir, padding_side="left")
    sft, tuned = load_pretrained_causal_lm(sft_dir), load_pretrained_causal_lm(tuned_dir)
    before = texts(tokenizer, sample(sft, tokenizer, prompts, cfg))
    tuned_rollouts = sample(tuned, tokenizer, prompts, cfg)
    after = texts(tokenizer, tuned_rollouts)
    kl = torch.cat([sequence_logprobs(tuned, r) - sequence_logprobs(sft, r) for r in tuned_rollouts]).tolist()
    scorer = RewardScorer(reward_dir, batch_size=cfg.batch_size)
    scores_before, scores_after = scorer(prompts, before).tolist(), scorer(prompts, after).tolist()
    report = {**(upstream or {}), **summarize(scores_before, scores_after, kl)}
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


def run_eval(
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
    return evaluate(cfg, sft_model, tuned_model, str(Path(reward_model) / "model"), prompts, output_dir, upstream)
