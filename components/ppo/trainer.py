"""The PPO loop for language models (Ziegler et al., 2019; "The N Implementation Details of RLHF with PPO").

Each step: take `batch_size` prompts -> sample responses (length uniform in
[min_new_tokens, max_new_tokens]) -> score them with `reward_fn` (minus `missing_eos_penalty`
for responses without EOS; optionally normalised by running mean/std) -> per-token rewards =
score on the last token - kl_coef * KL to the reference policy (the same model with the LoRA
adapter disabled) -> GAE advantages (whitened) and returns -> `ppo_epochs` passes over shuffled
mini-batches minimising the clipped policy loss + vf_coef * clipped value loss -> adapt kl_coef
to the observed KL. The choices and their references: components/ppo/README.md.

The policy is the causal LM with a fresh LoRA adapter plus a linear value head on the
last hidden state, trained jointly with one optimiser.

Resume: with `output_dir`, checkpoints/step-N (adapter, value head, optimizer, KL coefficient,
reward moments, history, RNG states) are saved every `save_every` steps and on SIGTERM (then
the process exits 143); a new run on the same output_dir continues from the newest complete
one and, seeded, reproduces the uninterrupted run. The prompt position is the step count
(the seeded prompt order is replayed). A NaN/inf loss, reward or KL, or a KL (reward) above
`kl_limit` (`reward_limit`), stops the run before anything of that step is saved; with
`max_rollbacks`, the run first goes back to the newest checkpoint that predates the last
update (at least) and halves the learning rate, at most `max_rollbacks` times per run.

Data parallelism (launched by `kfrlhf.launch.launcher`, `ppo.distributed`): each rank samples and
scores its `batch_size / N` prompts of the step; the reward moments, mean KL, whitening statistics,
divergence checks, SIGTERM and logged metrics are all-reduced, the gradients averaged (each rank's
loss weighted by its share of the mini-batch's tokens), so every rank holds the same weights; rank 0
writes the checkpoints (`state.py`) and the outputs, every rank resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from peft import get_peft_model
from tqdm.auto import tqdm
from transformers import set_seed

from kfrlhf.common import distributed
from kfrlhf.common.checkpoint import (
    Diverged,
    Preempted,
    StopOnSigterm,
    atomic_file,
    check_config,
    checkpoint_root,
    latest_complete,
    remove_after,
    remove_incomplete,
    save_adapter,
)
from kfrlhf.common.models import lora_config
from kfrlhf.common.rollout import make_engine
from kfrlhf.common.sampling import Rollout, forward, logprobs_from_logits
from kfrlhf.common.save_clock import SaveClock

from . import losses as L
from .config import PPOConfig
from .kl import AdaptiveKLController, FixedKLController
from .merged import MergedCopy, can_merge
from .normalization import RunningMoments
from .rollout import score
from .state import PREFIX, VALUE_HEAD, load_checkpoint, save_checkpoint, save_value_head

log = logging.getLogger(__name__)

MAX_GRAD_NORM = 1.0
PHASES = ("generate", "reward", "score", "update")  # a step's parts, timed in its metrics (time_<phase>_s)


def phase_end(device: torch.device) -> float:
    """The clock once the device has run what a phase queued (CUDA runs asynchronously: without the wait, a
    phase's kernels would be timed in the next phase that waits for them)."""
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(device)
    return time.perf_counter()


ROLLBACK_LR_FACTOR = 0.5


class PPODivergence(Diverged):
    """Training is stopped: a loss, reward or KL is NaN/inf, or the KL (reward) exceeds `kl_limit` (`reward_limit`)."""

    def __init__(self, step: int, problem: str, last_good: Path | None):
        super().__init__("PPO", step, problem, last_good)


def make_policy(cfg: PPOConfig, model):
    """Wrap `model` with a fresh LoRA adapter (in place) and build a value head for it."""
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    policy = get_peft_model(model, lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout))
    if cfg.gradient_checkpointing:  # the update runs in training mode (ppo_update): keep it dropout-free
        for module in policy.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    hidden = policy.get_output_embeddings().weight.shape[1]  # width of the last hidden state
    value_head = torch.nn.Linear(hidden, 1).to(next(model.parameters()).device)
    torch.nn.init.zeros_(value_head.weight)  # values start at 0: no random baseline in the first steps
    torch.nn.init.zeros_(value_head.bias)
    return policy, value_head


def ppo_update(cfg: PPOConfig, policy, value_head, optimizer, params, r: Rollout, advantages, returns) -> dict:
    """`ppo_epochs` passes of clipped policy + value loss over shuffled mini-batches.

    Under data parallelism each rank takes its share of every mini-batch from its own rollout; a
    rank's loss is weighted by its share of the mini-batch's tokens, so the averaged gradient is that
    of the masked mean over the whole mini-batch (as in one process)."""
    names = ("policy_loss", "value_loss", "clip_fraction", "value_clip_fraction", "approx_kl")
    stats: dict[str, list[float]] = {k: [] for k in names}
    n, world = len(r.input_ids), distributed.world_size()
    # transformers checkpoints activations only in training mode; every dropout is off (make_policy), so
    # training mode computes what eval mode does. Generation stays in eval mode, with its KV cache.
    policy.train(cfg.gradient_checkpointing)
    for _ in range(cfg.ppo_epochs):
        for idx in torch.randperm(n).split(cfg.mini_batch_size // world):
            logits, values = forward(policy, value_head, r.input_ids[idx], r.attention_mask[idx], r.prompt_len)
            logprobs = logprobs_from_logits(logits, r.response_ids[idx], cfg.temperature)
            mask = r.mask[idx]
            pg_loss, clipfrac, approx_kl = L.policy_loss(
                logprobs, r.logprobs[idx], advantages[idx], mask, cfg.cliprange
            )
            vf_loss, vf_clipfrac = L.value_loss(values, r.values[idx], returns[idx], mask, cfg.cliprange_value)
            loss = pg_loss + cfg.vf_coef * vf_loss
            tokens = mask.sum().clamp(min=1)
            all_tokens, not_finite = distributed.all_reduce_sum(torch.stack([tokens, (~torch.isfinite(loss)).float()]))
            if not_finite:
                raise FloatingPointError(f"loss is {loss.item()} (policy {pg_loss.item()}, value {vf_loss.item()})")
            optimizer.zero_grad(set_to_none=True)
            (loss * (tokens.double() * world / all_tokens).float() if world > 1 else loss).backward()
            distributed.average_gradients(params)
            torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            optimizer.step()
            for k, v in zip(names, (pg_loss, vf_loss, clipfrac, vf_clipfrac, approx_kl)):
                stats[k].append(v.item())
    policy.eval()
    return distributed.all_reduce_mean({k: float(np.mean(v)) for k, v in stats.items()})


def divergence(cfg: PPOConfig, raw_rewards: torch.Tensor, mean_kl: float) -> str | None:
    """Why this step's rollout (all ranks') must not be trained on, or None."""
    finite = torch.isfinite(raw_rewards)
    bad, n, total = distributed.all_reduce_sum(
        torch.stack([(~finite).sum().float(), raw_rewards.new_tensor(raw_rewards.numel()), raw_rewards[finite].sum()])
    ).tolist()
    if bad:
        return f"reward is NaN/inf for {bad:.0f} of {n:.0f} responses"
    mean_reward = total / n
    if cfg.reward_limit > 0 and mean_reward > cfg.reward_limit:
        return f"mean reward {mean_reward:.4g} > reward_limit {cfg.reward_limit}"
    if not math.isfinite(mean_kl):
        return f"mean KL is {mean_kl}"
    if cfg.kl_limit > 0 and mean_kl > cfg.kl_limit:
        return f"mean KL {mean_kl:.4g} > kl_limit {cfg.kl_limit}"
    return None


@contextlib.contextmanager
def left_padding(tokenizer):
    """Batched generation pads prompts on the left; the caller's setting comes back afterwards."""
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        yield
    finally:
        tokenizer.padding_side = side


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`losses.masked_whiten` with the mean and (unbiased) variance over every rank's masked positions."""
    n, total = distributed.all_reduce_sum(torch.stack([mask.sum(), (x * mask).sum()])).tolist()
    mean = total / n
    (squares,) = distributed.all_reduce_sum(((x - mean) ** 2 * mask).sum().reshape(1)).tolist()
    var = squares / n * n / max(n - 1, 1)
    return (x - mean) * (var + 1e-8) ** -0.5 * mask


def global_mean_kl(kl: torch.Tensor) -> float:
    """The sequence-level KL (the quantity target_kl refers to), averaged over every rank's responses."""
    total, n = distributed.all_reduce_sum(torch.stack([kl.sum(), kl.new_tensor(len(kl))])).tolist()
    return total / n


def prompt_batches(prompts: list[str], batch_size: int, seed: int, skip: int = 0):
    """Endless batches of `batch_size` prompts, cycling through a seeded shuffle of the list, after `skip` batches."""
    rng, order, n = random.Random(seed), [], 0
    while True:
        while len(order) < batch_size:
            perm = list(range(len(prompts)))
            rng.shuffle(perm)
            order += perm
        batch, order, n = order[:batch_size], order[batch_size:], n + 1
        if n > skip:
            yield [prompts[i] for i in batch]


def run_ppo(
    cfg: PPOConfig, model, tokenizer, prompts: list[str], reward_fn, output_dir: str | None = None, log_fn=None
) -> dict:
    """Tune `model` with PPO against `reward_fn(prompts, responses) -> scores (n,)`.

    `model` gets a LoRA adapter injected in place (after the call it is the tuned policy).
    Returns {"history": [per-step metrics], "reward_first", "reward_last", "kl_last",
    "kl_coef_last", "samples_per_second"}; with `output_dir`, resumes from the newest complete
    checkpoints/step-N, saves one every `save_every` steps and on SIGTERM (then raises
    `Preempted`, exit status 143), and at the end writes adapter/ (peft, with the tokenizer)
    and value_head.safetensors. Raises PPODivergence (see `divergence`).
    """
    if not prompts:
        raise ValueError("run_ppo needs at least one prompt")
    if cfg.batch_size % cfg.mini_batch_size:
        raise ValueError(f"batch_size ({cfg.batch_size}) must be divisible by mini_batch_size ({cfg.mini_batch_size})")
    world, rank, main = distributed.world_size(), distributed.rank(), distributed.is_main()
    if cfg.mini_batch_size % world:
        raise ValueError(f"mini_batch_size ({cfg.mini_batch_size}) must be divisible by the {world} processes")
    set_seed(cfg.seed)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    policy, value_head = make_policy(cfg, model)
    params = [p for p in policy.parameters() if p.requires_grad] + list(value_head.parameters())
    distributed.broadcast_parameters(params)  # one start on every rank
    if rank:
        set_seed(cfg.seed + rank)  # each rank samples its own responses
    # Dropout stays off (eval mode) so that the first PPO epoch starts at ratio 1 exactly.
    policy.eval()
    # The vllm engine takes plain weights: it always samples from the merged copy (PPOConfig refuses a 4-bit base).
    merged = (cfg.merged_generation or cfg.rollout_engine == "vllm") and can_merge(model)
    sampler = MergedCopy(policy) if merged else None
    engine = make_engine(cfg, tokenizer, sampler.sync if sampler else lambda: policy)
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, eps=1e-5)
    if cfg.adaptive_kl:
        kl_ctl = AdaptiveKLController(cfg.init_kl_coef, cfg.target_kl, cfg.horizon)
    else:
        kl_ctl = FixedKLController(cfg.init_kl_coef)
    moments, length_rng = RunningMoments(), random.Random(cfg.seed)
    out = Path(output_dir) if output_dir else None
    ckpts = checkpoint_root(out) if out else None

    def restore(path: Path, rollbacks: int | None = None) -> tuple[int, list[dict], int]:
        """Load `path`; the learning rate is the config's (a rerun may lower it), halved per rollback."""
        state = load_checkpoint(path, policy, value_head, optimizer, kl_ctl, moments, length_rng, cfg.seed)
        rollbacks = state["rollbacks"] if rollbacks is None else rollbacks
        for group in optimizer.param_groups:
            group["lr"] = cfg.learning_rate * ROLLBACK_LR_FACTOR**rollbacks
        return state["step"], state["history"], rollbacks

    step, history, rollbacks = 0, [], 0
    if ckpts is not None:
        if main:
            remove_incomplete(ckpts, PREFIX)
        distributed.barrier()
        resume = latest_complete(ckpts, PREFIX)
        check_config(resume, dataclasses.asdict(cfg), "PPO")
        if resume is not None:
            log.warning("PPO: resuming from %s", resume)
            step, history, rollbacks = restore(resume)
    start_step = step
    batches = prompt_batches(prompts, cfg.batch_size, cfg.seed, skip=step)  # the data position: replayed
    start = time.perf_counter()
    save_clock = SaveClock(cfg.checkpoint_every_minutes)  # checkpoints by time too

    with StopOnSigterm() as stop, left_padding(tokenizer), engine:
        bar = tqdm(desc="ppo", unit="step", initial=step, total=cfg.steps, disable=not main)
        while step < cfg.steps:
            step += 1
            t0 = time.perf_counter()
            share = cfg.batch_size // world
            batch = next(batches)[rank * share : (rank + 1) * share]  # this rank's prompts of the step
            n_new = length_rng.randint(cfg.min_new_tokens, cfg.max_new_tokens)
            engine.sync()  # the policy's weights after the last update (or a restore)
            r = engine.generate(batch, n_new, cfg)
            clock = [t0, phase_end(r.mask.device)]  # phase ends: generate, reward, score, update
            raw = torch.as_tensor(reward_fn(batch, r.texts), dtype=torch.float).reshape(-1).to(r.mask.device)
            clock.append(phase_end(r.mask.device))
            scores = raw
            if cfg.missing_eos_penalty:
                scores = torch.where(r.ended, raw, raw - cfg.missing_eos_penalty)
            if cfg.normalize_reward:
                moments.update(scores)
                scores = moments.normalize(scores).float()
            score(policy, value_head, r, cfg.temperature, cfg.mini_batch_size)
            clock.append(phase_end(r.mask.device))

            rewards, kl = L.kl_penalty_rewards(scores, r.logprobs, r.ref_logprobs, r.mask, kl_ctl.value)
            mean_kl = global_mean_kl(kl.sum(1))
            advantages, returns = L.gae(rewards, r.values, r.mask, cfg.gamma, cfg.lam)
            advantages = whiten(advantages, r.mask)
            problem = divergence(cfg, raw, mean_kl)
            if not problem:
                try:
                    stats = ppo_update(cfg, policy, value_head, optimizer, params, r, advantages, returns)
                except FloatingPointError as err:
                    problem = str(err)
            if problem:
                diverged = PPODivergence(step, problem, latest_complete(ckpts, PREFIX))
                # Back before the update that produced this step's policy, so that it is redone at the lower rate.
                target = latest_complete(ckpts, PREFIX, before=step - 1)
                if rollbacks >= cfg.max_rollbacks or target is None:
                    raise diverged
                rollbacks += 1
                log.warning("%s; rollback %d of %d to %s", diverged, rollbacks, cfg.max_rollbacks, target)
                step, history, _ = restore(target, rollbacks)
                if main:
                    remove_after(ckpts, PREFIX, step)
                distributed.barrier()
                batches = prompt_batches(prompts, cfg.batch_size, cfg.seed, skip=step)
                bar.n = step
                continue

            kl_coef = kl_ctl.value
            kl_ctl.update(mean_kl, cfg.batch_size)
            clock.append(phase_end(r.mask.device))
            local = {
                "reward": raw.mean().item(),
                "entropy": L.masked_mean(r.entropy, r.mask).item(),
                "response_length": r.mask.sum(1).mean().item(),
                "tokens_per_second": r.mask.sum().item() * world / (clock[-1] - t0),
                **{f"time_{phase}_s": b - a for phase, a, b in zip(PHASES, clock, clock[1:])},
            }
            metrics = {"step": step, "kl": mean_kl, "kl_coef": kl_coef, **distributed.all_reduce_mean(local), **stats}
            history.append(metrics)
            bar.update()
            bar.set_postfix(reward=f"{metrics['reward']:.3f}", kl=f"{mean_kl:.3f}")
            if log_fn is not None:
                log_fn(step, metrics)
            saved, stopping, due = None, distributed.any_process(stop.requested), save_clock.due()
            if ckpts is not None and (stopping or due or (cfg.save_every > 0 and step % cfg.save_every == 0)):
                saved = save_checkpoint(
                    ckpts,
                    step,
                    policy,
                    value_head,
                    optimizer,
                    kl_ctl,
                    moments,
                    length_rng,
                    history,
                    rollbacks,
                    dataclasses.asdict(cfg),
                )
                save_clock.saved()
            if stopping:
                raise Preempted("PPO", step, saved)
        bar.close()

    total = time.perf_counter() - start
    if out is not None and main:
        save_adapter(policy, tokenizer, out / "adapter")
        with atomic_file(out / VALUE_HEAD) as tmp:
            save_value_head(value_head, tmp)
    k = max(1, math.ceil(len(history) / 10))
    return {
        "history": history,
        "reward_first": float(np.mean([h["reward"] for h in history[:k]])),
        "reward_last": float(np.mean([h["reward"] for h in history[-k:]])),
        "kl_last": history[-1]["kl"],
        "kl_coef_last": kl_ctl.value,
        "samples_per_second": (cfg.steps - start_step) * cfg.batch_size / total,
    }
