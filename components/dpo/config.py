"""The DPO stage's config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kfrlhf.common.config import LENGTH, NON_NEGATIVE, POSITIVE, LoraFields, TrainerFields
from kfrlhf.launch.config import DistributedFields


@dataclass
class DPOConfig(TrainerFields, LoraFields, DistributedFields):
    """DPO, the alternative to reward model + PPO: a LoRA adapter on the SFT model trained with TRL's
    DPOTrainer on chosen/rejected pairs; the reference is the SFT model (the adapter disabled).

    `beta` is the strength of the implicit KL constraint to the reference; `max_length` counts
    prompt + answer tokens. The eval loss and implicit-reward accuracy, before and after, are computed
    on the first `max_eval_rows` held-out pairs (0: all; each costs four forward passes).
    """

    section: ClassVar[str] = "dpo"
    RULES: ClassVar[dict] = dict(beta=POSITIVE, max_length=LENGTH, max_eval_rows=NON_NEGATIVE)

    HELP: ClassVar[dict] = dict(
        beta="strength of the implicit KL constraint to the reference (the SFT model)",
        max_length="prompt + answer tokens",
        max_eval_rows="held-out pairs the before/after eval uses (0: all)",
    )

    beta: float = 0.1
    learning_rate: float = 5e-6
    max_steps: int = 1000
    max_length: int = 512
    max_eval_rows: int = 0
