"""The KTO stage's config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kfrlhf.common.config import LENGTH, NON_NEGATIVE, POSITIVE, LoraFields, TrainerFields
from kfrlhf.launch.config import DistributedFields


@dataclass
class KTOConfig(TrainerFields, LoraFields, DistributedFields):
    """KTO (Kahneman-Tversky Optimisation): a LoRA adapter on the SFT model trained with TRL's KTOTrainer on
    unpaired answers, each labelled desirable or undesirable; here each preference pair gives one of each (its
    chosen and its rejected answer). The reference is the SFT model (the adapter disabled).

    `beta` is the strength of the KL constraint to the reference; `desirable_weight` and `undesirable_weight`
    weigh the two kinds of answer's losses; `max_length` counts prompt + answer tokens. The eval loss and
    implicit rewards, before and after, are computed on the first `max_eval_rows` held-out pairs (0: all).
    """

    section: ClassVar[str] = "kto"
    RULES: ClassVar[dict] = dict(
        beta=POSITIVE,
        desirable_weight=POSITIVE,
        undesirable_weight=POSITIVE,
        max_length=LENGTH,
        max_eval_rows=NON_NEGATIVE,
    )

    HELP: ClassVar[dict] = dict(
        beta="strength of the KL constraint to the reference (the SFT model)",
        desirable_weight="weight of the desirable (chosen) answers' loss",
        undesirable_weight="weight of the undesirable (rejected) answers' loss",
        max_length="prompt + answer tokens",
        max_eval_rows="held-out pairs (two answers each) the before/after eval uses (0: all)",
    )

    beta: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
    learning_rate: float = 5e-6
    max_steps: int = 1000
    max_length: int = 512
    max_eval_rows: int = 0
