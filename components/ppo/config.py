"""The PPO stage's config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kfrlhf.common.config import NON_NEGATIVE, POSITIVE, UNIT, ConfigError, LoraFields, SamplingFields, StageConfig


@dataclass
class PPOConfig(StageConfig, LoraFields, SamplingFields):
    """The project's own PPO (see `kfrlhf.ppo.trainer`): LoRA policy, value head, adaptive KL.

    Optimisation: `learning_rate` (1.41e-5), `steps`, `batch_size` (32) rollouts per step split
    into `mini_batch_size` (4) for `ppo_epochs` (4). KL: `init_kl_coef` (0.2), `adaptive_kl` with
    `target_kl` and `kl_horizon`. Advantages: `gamma`, `lam`; clipping: `cliprange`,
    `cliprange_value`; `vf_coef`. Sampling: response length uniform in [`min_new_tokens`,
    `max_new_tokens`] (32..400), and the sampling fields (`SamplingFields`: temperature 1, no
    top-k/top-p, prompts cut to `max_prompt_length` 256). Safety: `save_every`, `kl_limit`,
    `reward_limit`, `max_rollbacks`.
    """

    section: ClassVar[str] = "ppo"
    RULES: ClassVar[dict] = dict(
        learning_rate=POSITIVE,
        steps=POSITIVE,
        batch_size=POSITIVE,
        mini_batch_size=POSITIVE,
        ppo_epochs=POSITIVE,
        init_kl_coef=NON_NEGATIVE,
        target_kl=POSITIVE,
        kl_horizon=POSITIVE,
        gamma=UNIT,
        lam=UNIT,
        cliprange=POSITIVE,
        cliprange_value=POSITIVE,
        vf_coef=NON_NEGATIVE,
        save_every=NON_NEGATIVE,
        kl_limit=NON_NEGATIVE,
        reward_limit=NON_NEGATIVE,
        max_rollbacks=NON_NEGATIVE,
    )

    learning_rate: float = 1.41e-5
    steps: int = 200
    batch_size: int = 32
    mini_batch_size: int = 4
    ppo_epochs: int = 4
    init_kl_coef: float = 0.2
    adaptive_kl: bool = True
    target_kl: float = 6.0
    kl_horizon: int = 10000
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    normalize_reward: bool = True
    min_new_tokens: int = 32
    max_new_tokens: int = 400
    save_every: int = 50
    kl_limit: float = 0.0  # hard stop when the mean KL exceeds it; 0 = off
    reward_limit: float = 0.0  # hard stop when the mean raw reward exceeds it (reward hacking); 0 = off
    max_rollbacks: int = 0  # on divergence: back to an earlier checkpoint at half the learning rate, at most N times
    seed: int = 42

    def check(self) -> None:
        if self.batch_size % self.mini_batch_size:
            raise ConfigError(
                f"ppo.batch_size ({self.batch_size}) must be divisible by ppo.mini_batch_size ({self.mini_batch_size})"
            )
        if not 0 < self.min_new_tokens <= self.max_new_tokens:
            raise ConfigError("ppo.min_new_tokens must be > 0 and <= ppo.max_new_tokens")
