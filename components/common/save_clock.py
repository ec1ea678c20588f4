"""Checkpoints by time as well as by steps (`checkpoint_every_minutes` in every training stage).

A preemption loses the work since the last checkpoint, and the one saved on SIGTERM is not to be relied
on: Argo's emissary forwards SIGTERM to the whole process group, KFP's launcher has no handler and exits,
and the container's end kills the Python process in the middle of its save (docs/cluster.md, "Recovery of
a multi-node stage"). A checkpoint every few minutes bounds the loss whatever the signal path.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import distributed


class SaveClock:
    """`due()`: `minutes` of wall time have passed since the last save (never when `minutes` is 0).
    Every rank asks at the same step and a save resets every rank's clock, so they agree on when to save."""

    def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.clock = minutes * 60, clock
        self.last = clock()

    def due(self) -> bool:
        """Whether any rank's clock says a save is due (a collective: call it on every rank)."""
        return distributed.any_process(self.seconds > 0 and self.clock() - self.last >= self.seconds)

    def saved(self) -> None:
        self.last = self.clock()
