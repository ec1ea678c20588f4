"""The eval gate's config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kfrlhf.common.config import POSITIVE, UNIT, StageConfig

LEVEL = (lambda v: 0 < v < 1, "between 0 and 1, exclusive")


@dataclass
class GateConfig(StageConfig):
    """Rules on the eval report; every required one must hold for the tuned model to be promoted.

    - `min_gain_stderrs` (k): the reward gain is positive and >= k x its paired standard error, which
      must not be zero (zero spread is no evidence); a negative k tolerates a loss;
    - `max_kl`: KL(tuned || SFT) <= this bound;
    - `min_win_rate`, `win_rate_level`: the lower bound of the win rate's Wilson interval at that
      two-sided level must be above `min_win_rate`; ties are left out (n: the eval prompts not tied);
    - `require_second_judge`: the second judge's win rate must pass the same rule (it is shown anyway);
    - `min_reward_margin_stderrs`: the reward model's held-out accuracy beats the better length
      baseline (longer wins, shorter wins) by >= this many paired standard errors;
    - `min_reward_accuracy`: an absolute floor on that accuracy (0: none);
    - `require_length_controlled_gain`: the length-controlled gain must pass the gain's rule too
      (shown anyway; off by default, see docs/eval-gate.md).
    """

    section: ClassVar[str] = "gate"
    RULES: ClassVar[dict] = dict(max_kl=POSITIVE, min_win_rate=UNIT, win_rate_level=LEVEL, min_reward_accuracy=UNIT)

    HELP: ClassVar[dict] = dict(
        min_gain_stderrs="the reward gain must be >= this many paired standard errors",
        max_kl="KL(tuned || SFT) must be at most this",
        min_win_rate="the win rate's Wilson lower bound must be above this",
        win_rate_level="the Wilson interval's two-sided level",
        require_second_judge="the second judge's win rate must pass too",
        min_reward_margin_stderrs="the reward model must beat the length baselines by this many standard errors",
        min_reward_accuracy="a floor on the reward model's held-out accuracy (0: none)",
        require_length_controlled_gain="the length-controlled gain must pass the gain's rule too",
    )

    min_gain_stderrs: float = 2.0
    max_kl: float = 10.0
    min_win_rate: float = 0.5
    win_rate_level: float = 0.95
    require_second_judge: bool = False
    min_reward_margin_stderrs: float = 2.0
    min_reward_accuracy: float = 0.0
    require_length_controlled_gain: bool = False
