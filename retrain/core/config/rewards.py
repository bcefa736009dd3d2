"""`verifiers` and `rewards`: what good means, as the Scorer computes it."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from pydantic import Field, field_validator, model_validator

from retrain.core.config._base import _Strict
from retrain.core.registry import resolve_function


class ScoredSpec(NamedTuple):
    """A reward or constraint as the Scorer sees it (see `RewardsConfig.scored_specs`)."""

    field: str
    name: str
    role: Literal["reward", "constraint"]
    reference: str
    params: dict[str, Any]
    weight: float
    bounds: tuple[float, float] | None


class VerifierSpec(_Strict):
    """A pass/fail check. A failed check replaces the rewards with `penalty` (see `rewards.gate`)."""

    rule: str = Field(description="A built-in verifier name, a @verifier name, or 'module:function'.")
    penalty: float = Field(-1.0, description="Total reward of a completion that fails this check.")
    name: str | None = Field(None, description="Name in metrics; defaults to the rule name.")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the rule.")

    @property
    def display_name(self) -> str:
        return self.name or self.rule.rsplit(":", 1)[-1]

    @field_validator("rule")
    @classmethod
    def _rule_exists(cls, rule: str) -> str:
        resolve_function(rule, "verifier")
        return rule


class RewardSpec(_Strict):
    """A scored reward, weighted into the total."""

    function: str = Field(description="A built-in reward name, a @reward name, or 'module:function'.")
    weight: float = Field(1.0, description="Multiplier of this reward in the total.")
    name: str | None = Field(None, description="Name in metrics; defaults to the function name.")
    bounds: tuple[float, float] | None = Field(
        None, description="The range [low, high] of the reward's values, if its function does not declare it."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the reward.")

    @property
    def display_name(self) -> str:
        return self.name or self.function.rsplit(":", 1)[-1]

    @field_validator("function")
    @classmethod
    def _function_exists(cls, function: str) -> str:
        resolve_function(function, "reward")
        return function


class ConstraintSpec(_Strict):
    """A rule added to the total whatever the verifiers say (for example a penalty per letter)."""

    type: str = Field(description="A built-in constraint name, a @reward name, or 'module:function'.")
    name: str | None = Field(None, description="Name in metrics; defaults to the type.")
    bounds: tuple[float, float] | None = Field(
        None, description="The range [low, high] of the constraint's values, if its function does not declare it."
    )
    text_to_avoid: str | None = Field(None, description="For penalize_text_containing: the text to avoid.")
    penalty_score: float | None = Field(None, description="For penalize_text_containing: the penalty.")
    mode: Literal["frequency", "count", "once"] = Field(
        "frequency",
        description="For penalize_text_containing: 'frequency' scales the penalty by the share of the completion's "
        "characters that are the avoided text (no reward for merely writing less), 'count' applies it per "
        "occurrence, 'once' applies it if the text appears at all.",
    )
    case_sensitive: bool = Field(False, description="For penalize_text_containing: match case.")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for a custom type.")

    @property
    def display_name(self) -> str:
        return self.name or self.type.rsplit(":", 1)[-1]

    @field_validator("type")
    @classmethod
    def _type_exists(cls, type_: str) -> str:
        resolve_function(type_, "reward")
        return type_

    def call_params(self) -> dict[str, Any]:
        """The keyword arguments its function receives."""
        params = dict(self.params)
        if self.type == "penalize_text_containing":
            params.update(text_to_avoid=self.text_to_avoid, penalty_score=self.penalty_score, mode=self.mode,
                          case_sensitive=self.case_sensitive)
        return params

    @model_validator(mode="after")
    def _builtin_fields(self) -> ConstraintSpec:
        if self.type == "penalize_text_containing":
            if not self.text_to_avoid:
                raise ValueError("penalize_text_containing needs `text_to_avoid` (the text to penalise)")
            if self.penalty_score is None:
                raise ValueError("penalize_text_containing needs `penalty_score` (for example -1.0)")
        return self


class RewardsConfig(_Strict):
    """What 'good' means: a semantic goal, weighted reward functions and constraints."""

    goal: str | None = Field(
        None, description="A description of a good completion; scored by semantic similarity (MiniLM)."
    )
    goal_weight: float = Field(1.0, description="Weight of the goal similarity in the total.")
    functions: list[RewardSpec] = Field(default_factory=list, description="Reward functions.")
    constraints: list[ConstraintSpec] = Field(default_factory=list, description="Constraints.")
    gate: Literal["floor", "penalty"] = Field(
        "floor",
        description="How a failed verifier scores a completion. 'floor': below the lowest total any passing "
        "completion can get (from the rewards' bounds), plus the penalties and constraints, so no reward or "
        "constraint can make failing pay. 'penalty': just the failed verifiers' penalties plus constraints.",
    )
    timeout_seconds: float = Field(60.0, gt=0, description="Time limit for one reward or verifier call.")
    on_error: Literal["fail", "penalize"] = Field(
        "fail",
        description="When a reward or verifier raises or times out: 'fail' stops the run naming the reward "
        "and the sample; 'penalize' scores the sample with `error_penalty` and counts it in metrics.",
    )
    error_penalty: float = Field(-1.0, description="Total of a sample whose reward failed (on_error: penalize).")

    def scored_specs(self) -> list[ScoredSpec]:
        """Every reward and constraint, in scoring order, with what the Scorer needs to call it."""
        specs: list[ScoredSpec] = []
        if self.goal:
            specs.append(ScoredSpec("rewards.goal", "goal", "reward", "semantic_similarity", {"target": self.goal},
                                    self.goal_weight, None))
        for i, reward in enumerate(self.functions):
            specs.append(ScoredSpec(f"rewards.functions[{i}]", reward.display_name, "reward", reward.function,
                                    reward.params, reward.weight, reward.bounds))
        for i, constraint in enumerate(self.constraints):
            specs.append(ScoredSpec(f"rewards.constraints[{i}]", constraint.display_name, "constraint",
                                    constraint.type, constraint.call_params(), 1.0, constraint.bounds))
        return specs
