"""KL coefficient controllers for the per-token KL penalty (Ziegler et al., 2019).

The adaptive controller steers the observed KL (policy vs. reference) towards `target`:
    error = clip(kl / target - 1, -0.2, 0.2);  coef *= 1 + error * n_steps / horizon
"""

from __future__ import annotations


class AdaptiveKLController:
    """Raise the KL coefficient when the KL is above target, lower it when below."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise ValueError("target and horizon must be > 0")
        self.value = init_kl_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        proportional_error = min(max(current_kl / self.target - 1, -0.2), 0.2)
        self.value *= 1 + proportional_error * n_steps / self.horizon
        return self.value


class FixedKLController:
    """A constant KL coefficient (same interface as AdaptiveKLController)."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value
