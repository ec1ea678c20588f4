"""The PPO stage's config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kfrlhf.common.config import NON_NEGATIVE, POSITIVE, UNIT, ConfigError, LoraFields, SamplingFields, StageConfig
from kfrlhf.launch.config import DistributedFields


@dataclass
class PPOConfig(StageConfig, LoraFields, SamplingFields, DistributedFields):
    """The project's own PPO (`kfrlhf.ppo.trainer`; choices: components/ppo/README.md): LoRA, value head, KL.

    Optimisation: `learning_rate` (1.41e-5), `steps`, `batch_size` (32) rollouts per step split
    into `mini_batch_size` (4) for `ppo_epochs` (4). KL: `init_kl_coef` (0.2), `adaptive_kl` with
    `target_kl` (per-sequence KL) and `kl_horizon` (0: a fifth of the run's samples, steps x
    batch_size / 5, so the coefficient can move up to e^±1 (x0.37..x2.7) within the run; a fixed
    10,000 moved it only x0.88..x1.14 over 200 steps of 32). Advantages: `gamma`, `lam`; clipping:
    `cliprange`, `cliprange_value`; `vf_coef`. Scores: `normalize_reward` (running mean/std of the
    raw scores; see below), `missing_eos_penalty` (subtracted from the score of a response the
    length sampler cut before its end, EOS or stop string; 0: off; the N+ implementation details use a score of -1).
    Sampling: response length uniform in [`min_new_tokens`, `max_new_tokens`] (32..400), and the
    sampling fields (`SamplingFields`: temperature 1, prompts cut to `max_prompt_length` 256).
    `lora_dropout` has no effect here: the policy stays in eval mode (dropout off), so that the
    first PPO epoch starts at ratio 1 exactly. Safety: `save_every`, `kl_limit`, `reward_limit`,
    `max_rollbacks`.

    Reward normalisation (`normalize_reward`, on): running mean/std of the scores. On the known-reward
    word task (3 seeds, 30 steps) it changed nothing measurable (reward gain 0.53/0.90/0.93 on vs
    0.50/0.91/0.93 off), so it stays on for what it buys: `init_kl_coef` and `target_kl` mean the
    same whatever the reward model's scale (components/ppo/README.md has the comparison).
    """

    section: ClassVar[str] = "ppo"
    RULES: ClassVar[dict] = dict(
        learning_rate=POSITIVE,
        steps=POSITIVE,
        batch_size=POSITIVE,
        mini_batch_size=POSITIVE,
        reward_batch_size=POSITIVE,
        ppo_epochs=POSITIVE,
        init_kl_coef=NON_NEGATIVE,
        target_kl=POSITIVE,
        kl_horizon=NON_NEGATIVE,
        gamma=UNIT,
        lam=UNIT,
        cliprange=POSITIVE,
        cliprange_value=POSITIVE,
        vf_coef=NON_NEGATIVE,
        missing_eos_penalty=NON_NEGATIVE,
        save_every=NON_NEGATIVE,
        checkpoint_every_minutes=NON_NEGATIVE,
        kl_limit=NON_NEGATIVE,
        reward_limit=NON_NEGATIVE,
        max_rollbacks=NON_NEGATIVE,
    )

    HELP: ClassVar[dict] = dict(
        learning_rate="the optimizer's learning rate (adapter and value head)",
        steps="PPO steps (each: sample a batch of rollouts, score, update)",
        batch_size="rollouts per step (across all processes)",
        mini_batch_size="rollouts per update mini-batch (divides batch_size)",
        ppo_epochs="passes over each step's rollouts",
        init_kl_coef="the KL penalty's starting coefficient",
        adaptive_kl="move the KL coefficient towards target_kl",
        target_kl="the per-sequence KL the adaptive controller aims at",
        kl_horizon="the controller's horizon in samples (0: a fifth of the run's)",
        gamma="discount factor",
        lam="GAE lambda",
        cliprange="the policy ratio's clip",
        cliprange_value="the value prediction's clip",
        vf_coef="the value loss's weight",
        normalize_reward="standardise the scores by their running mean and std",
        missing_eos_penalty="subtracted from the score of an answer cut before its end (0: off)",
        min_new_tokens="the shortest answer length drawn per step",
        max_new_tokens="the longest answer length drawn per step (not above reward.max_length)",
        save_every="checkpoint every N steps (0: only at the end)",
        checkpoint_every_minutes="and every N minutes of training (0: off)",
        kl_limit="stop when the mean KL exceeds it (0: off)",
        reward_limit="stop when the mean raw reward exceeds it, reward hacking (0: off)",
        max_rollbacks="on divergence: back to an earlier checkpoint at half the learning rate, at most N times",
        bf16="bf16 policy weights on a GPU that has bf16 (fp32 elsewhere)",
        load_in_4bit="a 4-bit NF4 base (QLoRA)",
        gradient_checkpointing="activation checkpointing in the update",
        merged_generation="sample from a copy of the policy with its adapter merged (faster; one more copy)",
        reward_batch_size="answers scored by the reward model at a time",
        static_cache="decode with a fixed-size KV cache, prompts padded to max_prompt_length (compiled on a GPU)",
        seed="the random seed (sampling, adapter initialisation)",
    )

    learning_rate: float = 1.41e-5
    steps: int = 200
    batch_size: int = 32
    mini_batch_size: int = 4
    ppo_epochs: int = 4
    init_kl_coef: float = 0.2
    adaptive_kl: bool = True
    target_kl: float = 6.0
    kl_horizon: int = 0
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    normalize_reward: bool = True
    missing_eos_penalty: float = 0.0
    min_new_tokens: int = 32
    max_new_tokens: int = 400
    save_every: int = 50
    checkpoint_every_minutes: float = 10.0  # and every N minutes of training (0: off; kfrlhf.common.save_clock)
    kl_limit: float = 0.0  # hard stop when the mean KL exceeds it; 0 = off
    reward_limit: float = 0.0  # hard stop when the mean raw reward exceeds it (reward hacking); 0 = off
    max_rollbacks: int = 0  # on divergence: back to an earlier checkpoint at half the learning rate, at most N times
    # Memory and speed: bf16 weights on a GPU that has bf16 (fp32 elsewhere, with a warning; the adapter and
    # value head stay fp32), a 4-bit NF4 base (QLoRA), activation checkpointing in the update (docs/scale-out.md).
    bf16: bool = True
    load_in_4bit: bool = False
    gradient_checkpointing: bool = False
    # Speed: sample from a copy of the policy with its adapter merged (kfrlhf.ppo.merged; one more copy of the
    # weights; a 4-bit base samples unmerged); score each step's answers `reward_batch_size` at a time;
    # `static_cache`: decode with a fixed-size KV cache and prompts padded to `max_prompt_length`, one shape
    # for the whole run, which transformers compiles (torch.compile) on a GPU.
    merged_generation: bool = True
    reward_batch_size: int = 64
    static_cache: bool = False
    seed: int = 42

    def check(self) -> None:
        if self.batch_size % self.mini_batch_size:
            raise ConfigError(
                f"ppo.batch_size ({self.batch_size}) must be divisible by ppo.mini_batch_size ({self.mini_batch_size})"
            )
        if self.distributed.strategy != "ddp":
            raise ConfigError(
                "ppo.distributed.strategy must be ddp: the PPO loop averages the gradients of its LoRA adapter and "
                "value head itself; a policy too big for one GPU trains with ppo.load_in_4bit"
            )
        if not 0 < self.min_new_tokens <= self.max_new_tokens:
            raise ConfigError("ppo.min_new_tokens must be > 0 and <= ppo.max_new_tokens")
        if self.rollout_engine == "vllm" and self.load_in_4bit:
            raise ConfigError(
                "ppo.rollout_engine vllm takes the policy's merged weights, and a 4-bit base is not merged (lossy): "
                "use ppo.rollout_engine=hf with ppo.load_in_4bit"
            )

    @property
    def horizon(self) -> int:
        """The adaptive KL controller's horizon: `kl_horizon`, or a fifth of the run's samples."""
        return self.kl_horizon or max(1, self.steps * self.batch_size // 5)
