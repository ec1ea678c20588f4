"""The eval stage's config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kfrlhf.common.config import NON_NEGATIVE, POSITIVE, SamplingFields, StageConfig


@dataclass
class EvalConfig(StageConfig, SamplingFields):
    """Compare the tuned model with the SFT model on `num_prompts` held-out prompts.

    Sampling: `max_new_tokens`, `batch_size`, `seed` (the same for both models) and the sampling
    fields (`SamplingFields`; temperature 0.7 here; the KL is taken at it too). Report: `num_samples`
    rows in the sample table; a KL above `kl_bound` is flagged. The win rate is judged by this run's
    reward model; `second_judge` (a sequence classifier's path or hub id, e.g. a reward model
    trained on other data; empty: none) adds its win rate beside it.
    """

    section: ClassVar[str] = "eval"
    RULES: ClassVar[dict] = dict(
        num_prompts=POSITIVE, max_new_tokens=POSITIVE, batch_size=POSITIVE, num_samples=NON_NEGATIVE, kl_bound=POSITIVE
    )

    HELP: ClassVar[dict] = dict(
        num_prompts="held-out prompts, answered once by each model",
        max_new_tokens="tokens per answer",
        temperature="sampling temperature; the KL is taken at it too",
        batch_size="prompts per generate call",
        num_samples="rows in the report's sample table",
        kl_bound="the report flags a larger KL",
        second_judge="a sequence classifier whose win rate is reported too; empty: the reward stage's probe if any",
        seed="the same sampling seed for both models",
    )

    num_prompts: int = 64  # held-out prompts, answered once by each model
    max_new_tokens: int = 128  # per answer
    temperature: float = 0.7  # sampling temperature; the KL is taken at it too
    batch_size: int = 16  # prompts per generate call
    num_samples: int = 8  # rows in the report's sample table
    kl_bound: float = 10.0  # the report flags a larger KL
    second_judge: str = ""  # a sequence classifier (path or hub id) whose win rate is reported too; "": none
    seed: int = 1234  # the same sampling seed for both models
