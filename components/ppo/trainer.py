"""The PPO loop for language models (Ziegler et al., 2019; "The N Implementation Details of RLHF with PPO").

Each step: take `batch_size` prompts -> sample responses (length uniform in
[min_new_tokens, max_new_tokens]) -> score them with `reward_fn` (optionally normalised
by running mean/std) -> per-token rewards = score on the last token - kl_coef * KL to
the reference policy (the same model with the LoRA adapter disabled) -> GAE advantages
(whitened) and returns -> `ppo_epochs` passes over shuffled mini-batches minimising the
clipped policy loss + vf_coef * clipped value loss -> adapt kl_coef to the observed KL.

The policy is the causal LM with a fresh LoRA adapter plus a linear value head on the
last hidden state, trained jointly with one optimiser.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..config import PPOConfig
from . import losses as L
from .kl import AdaptiveKLController, FixedKLController
from .rollout import Rollout, RunningMoments, forward, generate, score

MAX_GRAD_NORM = 1.0


class PPODivergence(RuntimeError):
    """Training is stopped: a loss is NaN/inf or the KL to the reference exceeds `kl_limit`."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_policy(cfg: PPOConfig, model):
    """Wrap `model` with a fresh LoRA adapter (in place) and build a value head for it."""
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    policy = get_peft_model(model, lora)
    hidden = policy.get_output_embeddings().weight.shape[1]  # width of the last hidden state
    value_head = torch.nn.Linear(hidden, 1).to(next(model.parameters()).device)
    torch.nn.init.zeros_(value_head.weight)  # values start at 0: no random baseline in the first steps
    torch.nn.init.zeros_(value_head.bias)
    return policy, value_head


def save_policy(policy, value_head, path: Path) -> None:
    policy.save_pretrained(str(path / "adapter"))
    save_file({k: v.contiguous() for k, v in value_head.state_dict().items()}, str(path / "value_head.safetensors"))


def save_checkpoint(root: Path, step: int, policy, value_head, optimizer, kl_ctl, moments: RunningMoments) -> Path:
    """Write checkpoints/step-N atomically: build it in a temp dir, then rename."""
    final, tmp = root / f"step-{step}", root / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_policy(policy, value_head, tmp)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    state = {"step": step, "kl_coef": kl_ctl.value, "reward_moments": moments.state_dict()}
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def ppo_update(cfg: PPOConfig, policy, value_head, optimizer, params, r: Rollout, advantages, returns) -> dict:
    """`ppo_epochs` passes of clipped policy + value loss over shuffled mini-batches."""
    stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "clip_fraction": [], "approx_kl": []}
    n = len(r.input_ids)
    for _ in range(cfg.ppo_epochs):
        for idx in torch.randperm(n).split(cfg.mini_batch_size):
            logits, values = forward(policy, value_head, r.input_ids[idx], r.attention_mask[idx], r.prompt_len, cfg.temperature)
            logprobs = L.logprobs_from_logits(logits, r.response_ids[idx])
            mask = r.mask[idx]
            pg_loss, clipfrac, approx_kl = L.policy_loss(logprobs, r.logprobs[idx], advantages[idx], mask, cfg.cliprange)
            vf_loss, _ = L.value_loss(values, r.values[idx], returns[idx], mask, cfg.cliprange_value)
            loss = pg_loss + cfg.vf_coef * vf_loss
            if not torch.isfinite(loss):
                raise PPODivergence(f"PPO loss is {loss.item()} (policy {pg_loss.item()}, value {vf_loss.item()})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            optimizer.step()
            for k, v in zip(stats, (pg_loss, vf_loss, clipfrac, approx_kl)):
                stats[k].append(v.item())
    return {k: float(np.mean(v)) for k, v in stats.items()}


def prompt_batches(prompts: list[str], batch_size: int, seed: int):
    """Endless batches of `batch_size` prompts, cycling through a seeded shuffle of the list."""
    rng, order = random.Random(seed), []
    while True:
        while len(order) < batch_size:
            perm = list(range(len(prompts)))
            rng.shuffle(perm)
            order += perm
        batch, order = order[:batch_size], order[batch_size:]
        yield [prompts[i] for i in batch]


def run_ppo(
    cfg: PPOConfig, model, tokenizer, prompts: list[str], reward_fn, output_dir: str | None = None, log_fn=None
) -> dict:
    """Tune `model` with PPO against `reward_fn(prompts, responses) -> scores (n,)`.

    `model` gets a LoRA adapter injected in place (after the call it is the tuned policy).
    Returns {"history": [per-step metrics], "reward_first", "reward_last", "kl_last",
    "kl_coef_last", "samples_per_second"}; with `output_dir`, writes adapter/ (peft),
    value_head.safetensors and checkpoints/step-N every `save_every` steps.
    """
    if not prompts:
        raise ValueError("run_ppo needs at least one prompt")
    if cfg.batch_size % cfg.mini_batch_size:
        raise ValueError(f"batch_size ({cfg.batch_size}) must be divisible by mini_batch_size ({cfg.mini_batch_size})")
    seed_everything(cfg.seed)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"

    policy, value_head = make_policy(cfg, model)
    # Dropout stays off (eval mode) so that the first PPO epoch starts at ratio 1 exactly.
    policy.eval()
    params = [p for p in policy.parameters() if p.requires_grad] + list(value_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, eps=1e-5)
    if cfg.adaptive_kl:
        kl_ctl = AdaptiveKLController(cfg.init_kl_coef, cfg.target_kl, cfg.kl_horizon)
    else:
        kl_ctl = FixedKLController(cfg.init_kl_coef)
    moments, length_rng = RunningMoments(), random.Random(cfg.seed)
    batches = prompt_batches(prompts, cfg.batch_size, cfg.seed)
    out = Path(output_dir) if output_dir else None
    history: list[dict] = []
    start = time.perf_counter()

    try:
        bar = tqdm(range(1, cfg.steps + 1), desc="ppo", unit="step")
        for step in bar:
            t0 = time.perf_counter()
            batch = next(batches)
            n_new = length_rng.randint(cfg.min_new_tokens, cfg.max_new_tokens)
            r = generate(policy, tokenizer, batch, n_new, cfg)
            lengths = r.mask.sum(1).long().tolist()
            responses = [tokenizer.decode(ids[:n], skip_special_tokens=True) for ids, n in zip(r.response_ids, lengths)]
            raw = torch.as_tensor(reward_fn(batch, responses), dtype=torch.float).reshape(-1).to(r.mask.device)
            scores = raw
            if cfg.normalize_reward:
                moments.update(raw)
                scores = moments.normalize(raw).float()
            score(policy, value_head, r, cfg.temperature, cfg.mini_batch_size)

            rewards, kl = L.kl_penalty_rewards(scores, r.logprobs, r.ref_logprobs, r.mask, kl_ctl.value)
            mean_kl = kl.sum(1).mean().item()  # sequence-level KL, the quantity target_kl refers to
            if cfg.kl_limit > 0 and mean_kl > cfg.kl_limit:
                raise PPODivergence(f"step {step}: mean KL {mean_kl:.3f} exceeds kl_limit {cfg.kl_limit}")
            advantages, returns = L.gae(rewards, r.values, r.mask, cfg.gamma, cfg.lam)
            advantages = L.masked_whiten(advantages, r.mask)
            stats = ppo_update(cfg, policy, value_head, optimizer, params, r, advantages, returns)

            kl_coef = kl_ctl.value
            kl_ctl.update(mean_kl, cfg.batch_size)
            elapsed = time.perf_counter() - t0
            metrics = {
                "step": step,
                "reward": raw.mean().item(),
                "kl": mean_kl,
                "kl_coef": kl_coef,
                "entropy": L.masked_mean(r.entropy, r.mask).item(),
                **stats,
                "response_length": r.mask.sum(1).mean().item(),
                "tokens_per_second": r.mask.sum().item() / elapsed,
            }
            history.append(metrics)
            bar.set_postfix(reward=f"{metrics['reward']:.3f}", kl=f"{mean_kl:.3f}")
            if log_fn is not None:
                log_fn(step, metrics)
            if out is not None and cfg.save_every > 0 and step % cfg.save_every == 0:
                save_checkpoint(out / "checkpoints", step, policy, value_head, optimizer, kl_ctl, moments)
    finally:
        tokenizer.padding_side = padding_side

    total = time.perf_counter() - start
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        save_policy(policy, value_head, out)
    k = max(1, math.ceil(len(history) / 10))
    return {
        "history": history,
        "reward_first": float(np.mean([h["reward"] for h in history[:k]])),
        "reward_last": float(np.mean([h["reward"] for h in history[-k:]])),
        "kl_last": history[-1]["kl"],
        "kl_coef_last": kl_ctl.value,
        "samples_per_second": len(history) * cfg.batch_size / total,
    }
