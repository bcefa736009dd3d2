"""Rewards: scores weighted into a completion's total."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from retrain.core.rollout import Rollout


@runtime_checkable
class Reward(Protocol):
    """Scores each rollout; None means the reward abstains for that rollout."""

    name: str
    weight: float

    async def score(self, rollouts: Sequence[Rollout]) -> list[float | None]: ...


def coerce_score(value: Any, name: str) -> float | None:
    """Accept int/float/bool/None from a user's reward; reject anything else and NaN."""
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        score = float(value)
        if math.isnan(score) or math.isinf(score):
            raise ValueError(f"returned {score}; return a finite number or None to abstain")
        return score
    raise TypeError(f"returned {value!r}; return a number, or None to abstain")
