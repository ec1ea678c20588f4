"""Reward normalisation for PPO: running mean and variance of every score seen so far (across ranks), by
which the trainer standardises each step's scores (`normalize_reward`) so the reward model's scale does
not set the step size.
"""

from __future__ import annotations

import torch

from kfrlhf.common.distributed import all_reduce_sum


class RunningMoments:
    """Running mean/std of all values seen so far, on every rank (Chan et al.'s parallel update)."""

    def __init__(self):
        self.mean, self.var, self.count = 0.0, 1.0, 0

    def update(self, x: torch.Tensor) -> None:
        """Add `x`; under data parallelism the values of every rank (one all-reduce of count, sum, sum of squares)."""
        x = x.double()
        n, sums, squares = all_reduce_sum(torch.stack([x.new_tensor(x.numel()), x.sum(), (x**2).sum()]))
        n, mean = int(n.item()), (sums / n).item()
        var = max((squares / n).item() - mean**2, 0.0)
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / max(self.var**0.5, 1e-6)

    def state_dict(self) -> dict:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]
