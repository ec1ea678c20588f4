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

from .config import EvalConfig
from .report import html_report, markdown_report
from .models import LOAD_KWARGS, RewardScorer, device, load_tokenizer


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
def generate(model, tokenizer, prompts: list[str], cfg: EvalConfig) -> tuple[list[str], list[torch.Tensor], list[torch.Tensor]]:
    """Sampled answers, plus prompt and response token ids (unpadded) for each prompt."""
    texts, prompt_ids, response_ids = [], [], []
    torch.manual_seed(cfg.seed)
    for i in tqdm(range(0, len(prompts), cfg.batch_size), desc="generate", leave=False):
        enc = tokenizer(prompts[i : i + cfg.batch_size], return_tensors="pt", padding=True).to(model.device)
        out = model.generate(**enc, do_sample=True, temperature=cfg.temperature, top_k=cfg.top_k or None,
                             top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             use_cache=True)
        width = enc.input_ids.shape[1]
        for row, mask, seq in zip(enc.input_ids, enc.attention_mask, out):
            resp = seq[width:]
            keep = resp != tokenizer.pad_token_id
            eos = (resp == tokenizer.eos_token_id).nonzero()
            if len(eos):  # keep the EOS, drop what follows
                keep[eos[0, 0] + 1 :] = False
            prompt_ids.append(row[mask.bool()].cpu())
            response_ids.append(resp[keep].cpu())
            texts.append(tokenizer.decode(resp[keep], skip_special_tokens=True))
    return texts, prompt_ids, response_ids


@torch.no_grad()
def response_logprob(model, prompt_ids: torch.Tensor, response_ids: torch.Tensor) -> float:
    """log p(response | prompt) under `model`, summed over response tokens."""
    if len(response_ids) == 0:
        return 0.0
    ids = torch.cat([prompt_ids, response_ids]).unsqueeze(0).to(model.device)
    logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
    return logits.log_softmax(-1).gather(-1, response_ids.to(model.device).unsqueeze(-1)).sum().item()


def _load(path: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, **LOAD_KWARGS).to(device()).eval()


def evaluate(cfg: EvalConfig, sft_dir: str, tuned_dir: str, reward_dir: str, prompts: list[str],
             output_dir: str | Path, upstream: dict | None = None) -> dict:
    """`upstream`: metrics of earlier stages (SFT eval loss, reward accuracy) to carry into the report."""
    output_dir = Path(output_dir)
    prompts = prompts[: cfg.num_prompts]
    tokenizer = load_tokenizer(sft_dir, padding_side="left")
    sft, tuned = _load(sft_dir), _load(tuned_dir)
    before, _, _ = generate(sft, tokenizer, prompts, cfg)
    after, p_ids, r_ids = generate(tuned, tokenizer, prompts, cfg)
    kl = [response_logprob(tuned, p, r) - response_logprob(sft, p, r) for p, r in zip(p_ids, r_ids)]
    scorer = RewardScorer(reward_dir, batch_size=cfg.batch_size)
    scores_before, scores_after = scorer(prompts, before).tolist(), scorer(prompts, after).tolist()
    report = {**(upstream or {}), **summarize(scores_before, scores_after, kl)}
    report["kl_bound"] = cfg.kl_bound
    report["kl_within_bound"] = math.isfinite(report["kl"]) and report["kl"] <= cfg.kl_bound
    report["samples"] = [
        {"prompt": p, "sft": b, "tuned": a, "reward_sft": sb, "reward_tuned": sa}
        for p, b, a, sb, sa in zip(prompts, before, after, scores_before, scores_after)
    ]
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "report.json").write_text(json.dumps(report, indent=2))
    (output_dir / "report.md").write_text(markdown_report(report, cfg.num_samples))
    (output_dir / "report.html").write_text(html_report(report, cfg.num_samples))
    return report
