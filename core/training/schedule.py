"""Step-size schedules from high to low (MRzero: explore first, converge without oscillation later).

``factor(i)`` multiplies each field's base step size at iteration ``i`` of a cycle of ``length``
iterations: ``cosine`` falls from 1 to ``final`` along half a cosine, ``exponential``
geometrically, ``constant`` stays 1. Random restarts start a new cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("cosine", "exponential", "constant")


@dataclass(frozen=True)
class Schedule:
    kind: str = "cosine"
    length: int = 500
    final: float = 0.05

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.kind!r}")
        if self.length < 1 or not 0 < self.final <= 1:
            raise ValueError(
                f"schedule needs length >= 1 and 0 < final <= 1, got {self.length}, {self.final}"
            )

    def factor(self, i: int) -> float:
        """Step-size factor at iteration ``i`` (0-based) of the cycle; clamps past the end."""
        x = min(max(i, 0), self.length - 1) / max(self.length - 1, 1)
        if self.kind == "cosine":
            return self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * x))
        if self.kind == "exponential":
            return self.final**x
        return 1.0
