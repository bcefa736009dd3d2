"""The Environment protocol: multi-step episodes with tools.

Only the protocol lives here for now; built-in environments and the backend bridges come with
the environments work. A config that sets `environment:` is rejected until then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from retrain.core.rollout import Message


@dataclass
class StepResult:
    """What the environment answers to one model turn."""

    observation: list[Message]
    done: bool
    reward_info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Environment(Protocol):
    async def reset(self, row: dict[str, Any]) -> list[Message]:
        """Start an episode from a dataset row; return the opening messages."""
        ...

    async def step(self, action: Message) -> StepResult:
        """React to the model's turn."""
        ...

    async def close(self) -> None:
        """Release what the episode holds (processes, connections)."""
        ...
