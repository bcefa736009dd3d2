"""Rewards that misbehave on purpose, to test how a run (on any backend) handles them.

Each misbehaves on some completions only, chosen by the completion's text, so that the same
completions fail on every backend and in every process (Ray reward workers included):
"""

from __future__ import annotations

import time
import zlib

from retrain.core.registry import reward


def _some(completion: str, every: int = 2) -> bool:
    return zlib.crc32(completion.encode()) % every == 0


@reward(bounds=(0.0, 1.0))
def raises_sometimes(completion: str) -> float:
    """Raises on about half the completions."""
    if _some(completion):
        raise RuntimeError("this reward fails on purpose")
    return 0.5


@reward(bounds=(0.0, 1.0))
def nan_sometimes(completion: str) -> float:
    """NaN on about half the completions, inf on some others."""
    if _some(completion):
        return float("nan")
    return float("inf") if _some(completion, 3) else 0.5


@reward(batched=True, bounds=(0.0, 1.0))
def wrong_length(completion: list[str]) -> list[float]:
    """A batched reward that returns one value too few."""
    return [0.5] * (len(completion) - 1)


@reward(bounds=(0.0, 1.0))
def hangs_sometimes(completion: str) -> float:
    """Never returns on about a third of the completions (a sync call: its thread is abandoned)."""
    if _some(completion, 3):
        time.sleep(3600)
    return 0.5
