"""The reward stage's config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kfrlhf.common.config import LENGTH, NON_NEGATIVE, UNIT, TrainerFields
from kfrlhf.launch.config import DistributedFields


@dataclass
class RewardConfig(TrainerFields, DistributedFields):
    """Reward model: a sequence classifier with one output, trained on chosen/rejected pairs.

    `max_length` tokens of prompt + answer (the rule PPO and eval score by too: the prompt is cut from
    the left to fit, the answer only when it alone is too long; no pair is dropped); `min_accuracy` is
    the quality gate (the stage fails below this held-out pair accuracy, so PPO never spends GPU
    hours on a bad reward model).
    `warm_start_pairs` > 0 fits the head on frozen encoder features of that many training pairs
    before fine-tuning (`kfrlhf.reward.warm_start`).
    """

    section: ClassVar[str] = "reward"
    RULES: ClassVar[dict] = dict(max_length=LENGTH, min_accuracy=UNIT, warm_start_pairs=NON_NEGATIVE)

    HELP: ClassVar[dict] = dict(
        model_name="the reward model's base: a sequence classifier (hub id, directory, tiny/packaged name)",
        max_length="prompt + answer tokens it reads; the prompt is cut from the left to fit",
        min_accuracy="the quality gate: below this held-out pair accuracy the stage fails",
        warm_start_pairs="> 0: fit the head on frozen features of that many pairs first (saved as the probe judge)",
    )

    model_name: str = "microsoft/deberta-v3-base"
    max_length: int = 512
    learning_rate: float = 2e-5
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    min_accuracy: float = 0.55
    warm_start_pairs: int = 0
