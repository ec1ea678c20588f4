"""The eval stage's config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kfrlhf.common.config import NON_NEGATIVE, POSITIVE, SamplingFields, StageConfig


@dataclass
class EvalConfig(StageConfig, SamplingFields):
    """Compare the tuned model with the SFT model on `num_prompts` held-out prompts.

    Sampling: `max_new_tokens`, `batch_size`, `seed` (the same for both models) and the sampling
    fields (`SamplingFields`; temperature 0.7 here). Report: `num_samples` rows in the sample
    table; a KL above `kl_bound` is flagged.
    """

    section: ClassVar[str] = "eval"
    RULES: ClassVar[dict] = dict(
        num_prompts=POSITIVE, max_new_tokens=POSITIVE, batch_size=POSITIVE, num_samples=NON_NEGATIVE, kl_bound=POSITIVE
    )

    num_prompts: int = 64
    max_new_tokens: int = 128
    temperature: float = 0.7
    batch_size: int = 16
    num_samples: int = 8
    kl_bound: float = 10.0
    seed: int = 1234
