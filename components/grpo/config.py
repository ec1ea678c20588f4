"""The GRPO stage's config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kfrlhf.common.config import NON_NEGATIVE, POSITIVE, ConfigError, LoraFields, SamplingFields, TrainerFields
from kfrlhf.launch.config import DistributedFields

SCALE_REWARDS = ("group", "batch", "none")


@dataclass
class GRPOConfig(TrainerFields, LoraFields, SamplingFields, DistributedFields):
    """GRPO (Group Relative Policy Optimisation, Shao et al. 2024) through TRL's GRPOTrainer: a LoRA
    adapter on the SFT model; the reference is the SFT model (the adapter disabled).

    Each prompt gets a group of `num_generations` answers of at most `max_new_tokens` tokens (sampled
    at `temperature`, prompts cut on the left to `max_prompt_length` tokens); the reward model scores
    each answer (cut at the first of `stop_strings`), and an answer's advantage is its reward minus its
    group's mean, divided by the group's standard deviation (`scale_rewards`: group, batch or none).
    The loss is PPO's clipped objective (`epsilon`) on those advantages plus `beta` x KL to the
    reference. `batch_size` counts answers per optimizer step across all processes (`distributed`);
    `batch_size x gradient_accumulation_steps` must hold whole groups. No held-out set (`eval_steps`
    is not used): the eval stage judges.
    """

    section: ClassVar[str] = "grpo"
    RULES: ClassVar[dict] = dict(
        num_generations=(lambda v: v >= 2, ">= 2 (an advantage compares answers within a group)"),
        max_new_tokens=POSITIVE,
        beta=NON_NEGATIVE,
        epsilon=POSITIVE,
    )

    HELP: ClassVar[dict] = dict(
        num_generations="answers per prompt: the group an advantage is relative to",
        max_new_tokens="tokens per answer (not above reward.max_length)",
        beta="weight of the KL to the reference (the SFT model)",
        epsilon="the policy ratio's clip",
        scale_rewards="divide advantages by the std of: group, batch or none",
        batch_size="answers per optimizer step (with gradient_accumulation_steps, whole groups)",
    )

    num_generations: int = 8
    max_new_tokens: int = 128
    beta: float = 0.04
    epsilon: float = 0.2
    scale_rewards: str = "group"
    learning_rate: float = 1e-5
    max_steps: int = 500
    batch_size: int = 8
    gradient_accumulation_steps: int = 1

    def check(self) -> None:
        if self.scale_rewards not in SCALE_REWARDS:
            raise ConfigError(
                f"grpo.scale_rewards must be one of {', '.join(SCALE_REWARDS)}, got {self.scale_rewards!r}"
            )
        if (self.batch_size * self.gradient_accumulation_steps) % self.num_generations:
            raise ConfigError(
                f"grpo.batch_size x grpo.gradient_accumulation_steps ({self.batch_size} x "
                f"{self.gradient_accumulation_steps}) must be a multiple of grpo.num_generations "
                f"({self.num_generations}): each step trains on whole groups"
            )
