"""Verifiers: pass/fail checks that gate a completion's reward."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from retrain.core.rollout import Rollout, VerifierOutcome


@runtime_checkable
class Verifier(Protocol):
    """Checks each rollout; a failed check gives the completion the verifier's penalty."""

    name: str

    async def verify(self, rollouts: Sequence[Rollout]) -> list[VerifierOutcome]: ...


def coerce_outcome(value: Any, name: str) -> VerifierOutcome:
    """Accept bool, (bool, reason) or VerifierOutcome from a user's verifier."""
    if isinstance(value, VerifierOutcome):
        return value
    if isinstance(value, bool):
        return VerifierOutcome(value, "" if value else f"{name} returned False (return (False, reason) to say why)")
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], bool):
        return VerifierOutcome(value[0], str(value[1]))
    raise TypeError(
        f"returned {value!r}; return a bool, a (bool, reason) pair or a VerifierOutcome"
    )
