"""The data that flows between a backend, the environment and the Scorer.

Plain dataclasses: printable, serialisable with `to_dict`, comparable across backends.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str | None = None


@dataclass
class Message:
    role: Role
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            data["tool_calls"] = [asdict(call) for call in self.tool_calls]
        return data


@dataclass
class EpisodeStats:
    """What happened in a multi-step episode: model turns, tool calls and their failures."""

    turns: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    calls_per_tool: dict[str, int] = field(default_factory=dict)
    errors_per_kind: dict[str, int] = field(default_factory=dict)  # unknown_tool, bad_arguments, raised, ...
    truncated: bool = False  # the episode hit max_completion_tokens (or max_turns while still calling tools)
    reward: float | None = None  # the environment's own score: the sum of its turns' rewards (None: it gave none)
    error: str | None = None  # why the environment ended the episode early (e.g. a reply that is not an action)


@dataclass
class Rollout:
    """One prompt and the model's completion, with the tokens a backend trained on.

    `trainable_mask` has one entry per completion token: 1 where the model generated the token
    (trained on), 0 where an environment or tool inserted it (context only).
    """

    prompt_messages: list[Message]
    completion_messages: list[Message]
    prompt_token_ids: list[int] = field(default_factory=list)
    completion_token_ids: list[int] = field(default_factory=list)
    trainable_mask: list[int] = field(default_factory=list)
    completion_logprobs: list[float] = field(default_factory=list)  # sampler's, when it gives them; 0.0 on env tokens
    metadata: dict[str, Any] = field(default_factory=dict)
    rollout_id: str = ""
    episode: EpisodeStats | None = None

    @property
    def prompt(self) -> str:
        """The last user message: what the prompt asked."""
        users = [m.content for m in self.prompt_messages if m.role == "user"]
        return users[-1] if users else ""

    @property
    def completion(self) -> str:
        """The model's own words (assistant messages only), joined: tool output is not in it."""
        return "\n".join(m.content for m in self.completion_messages if m.role == "assistant")

    @property
    def tool_calls(self) -> list[ToolCall]:
        """Every tool call the model made in the episode, in order."""
        return [call for m in self.completion_messages if m.role == "assistant" for call in m.tool_calls]

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The whole conversation as chat messages."""
        return [m.to_dict() for m in self.prompt_messages + self.completion_messages]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VerifierOutcome:
    passed: bool
    reason: str = ""


@dataclass
class RewardBreakdown:
    """How one completion was scored: each verifier, each reward, each constraint, the total.

    A reward value of None means the reward abstained (or failed under `on_error: penalize`,
    in which case `errors` names why). `gate_floor` is the batch floor a failed completion was
    placed under (`rewards.gate: floor`), None when the gate passed or the mode is 'penalty'.
    """

    rollout_id: str
    total: float
    verifiers: dict[str, VerifierOutcome] = field(default_factory=dict)
    rewards: dict[str, float | None] = field(default_factory=dict)
    constraints: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    gate_floor: float | None = None

    @property
    def gate_passed(self) -> bool:
        return all(outcome.passed for outcome in self.verifiers.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RewardBreakdown:
        verifiers = {name: VerifierOutcome(**outcome) for name, outcome in data.get("verifiers", {}).items()}
        return cls(**{**data, "verifiers": verifiers})
