"""The eval gate's config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kfrlhf.common.config import POSITIVE, UNIT, StageConfig


@dataclass
class GateConfig(StageConfig):
    """Thresholds on the eval report; every one must hold for the tuned model to be promoted.

    - `min_gain_stderrs` (k): reward gain >= k x its paired standard error (2: the gain is about two
      standard errors above zero; a negative k tolerates a loss);
    - `max_kl`: KL(tuned || SFT) <= this bound;
    - `min_win_rate`: share of prompts where the tuned answer out-scores the SFT answer;
    - `min_reward_accuracy`: the reward model's held-out pair accuracy (a model that scores well by
      chance cannot vouch for a gain).
    """

    section: ClassVar[str] = "gate"
    RULES: ClassVar[dict] = dict(max_kl=POSITIVE, min_win_rate=UNIT, min_reward_accuracy=UNIT)

    min_gain_stderrs: float = 2.0
    max_kl: float = 10.0
    min_win_rate: float = 0.5
    min_reward_accuracy: float = 0.6
