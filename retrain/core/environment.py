"""Environments: multi-step episodes in which the model acts (calls tools, answers) and the
environment responds.

The protocol is small and async: `reset` starts an episode from a dataset row and returns its
opening messages, `step` reacts to each model turn, `close` releases what the episode holds.
A simple environment is a `MultiTurnEnv` with two hooks:

    class Countdown(MultiTurnEnv):
        async def is_completed(self, messages, state):
            return "DONE" in messages[-1].content
        async def env_response(self, messages, state):
            return [Message("user", f"{state['left']} tries left")]

Tokens are the backend's business (see `retrain/environments/episode.py`): an environment sees
and returns messages only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from retrain.core.rollout import Message


@dataclass
class StepResult:
    """What the environment answers to one model turn. `reward`: what the environment itself scores this turn
    (a game won, an OpenEnv observation's reward), or None; the episode's environment reward is the sum of the
    turns' rewards, and reaches the Scorer through the `environment_reward` built-in."""

    observation: list[Message]
    done: bool
    info: dict[str, Any] = field(default_factory=dict)  # e.g. "tool_outcomes"; reaches the metrics
    reward: float | None = None


@runtime_checkable
class Environment(Protocol):
    async def reset(self, row: dict[str, Any]) -> list[Message]:
        """Start an episode from a dataset row; return the opening messages (the prompt)."""
        ...

    async def step(self, action: Message) -> StepResult:
        """React to the model's turn."""
        ...

    async def close(self) -> None:
        """Release what the episode holds (processes, connections)."""
        ...


def opening_messages(row: dict[str, Any]) -> list[Message]:
    """A row's prompt as chat messages (retrain's rows carry `prompt` as a message list already)."""
    prompt = row["prompt"]
    if isinstance(prompt, list):
        return [Message(m["role"], m.get("content") or "") for m in prompt]
    messages = [Message("system", row["system_prompt"])] if row.get("system_prompt") else []
    return messages + [Message("user", str(prompt))]


class MultiTurnEnv:
    """An environment from two hooks: `env_response` (what the environment says after a model turn)
    and `is_completed` (whether the episode is over). `state` is a dict per episode, which
    `setup_state` may fill from the row."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.state: dict[str, Any] = {}

    async def setup_state(self, row: dict[str, Any], state: dict[str, Any]) -> None:
        """Fill the episode's state from its dataset row (optional)."""

    async def is_completed(self, messages: list[Message], state: dict[str, Any]) -> bool:
        raise NotImplementedError

    async def env_response(self, messages: list[Message], state: dict[str, Any]) -> list[Message]:
        raise NotImplementedError

    async def reset(self, row: dict[str, Any]) -> list[Message]:
        self.state = {"row": row}
        await self.setup_state(row, self.state)
        self.messages = opening_messages(row)
        return list(self.messages)

    async def step(self, action: Message) -> StepResult:
        self.messages.append(action)
        if await self.is_completed(self.messages, self.state):
            return StepResult([], done=True)
        observation = await self.env_response(self.messages, self.state)
        self.messages.extend(observation)
        reward = self.state.pop("reward", None)  # an env_response may score the turn: state["reward"] = ...
        return StepResult(observation, done=False, info=dict(self.state.get("info", {})), reward=reward)

    async def close(self) -> None:
        """Nothing to release by default."""
