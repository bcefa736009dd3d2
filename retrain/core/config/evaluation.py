"""`evaluation`: a held-out set, scored the same way whatever backend trained the model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from retrain.core.config._base import _FieldValueError, _Strict


class CorrectConfig(_Strict):
    """When a completion counts as correct for pass@k."""

    verifiers: Literal["all", "none"] | list[str] = Field(
        "all", description="The verifiers that must pass: 'all', 'none', or a list of verifier names."
    )
    rewards: dict[str, float] | None = Field(
        None,
        description="Reward name -> the least value that counts as correct. Unset: every reward that reads the "
        "reference answer (`answer`) must reach the top of its range (1.0 for exact_match, math_equivalent, ...).",
    )
    min_total: float | None = Field(None, description="Also require the Scorer's total to be at least this.")


class EvaluationConfig(_Strict):
    """Held-out prompts, sampled and scored by retrain's own evaluator (the same code for every backend)."""

    prompts: list[str] | None = Field(None, description="Inline held-out prompts.")
    source: str | list[str] | None = Field(
        None, description="A .jsonl/.json/.parquet file or 'hf:<dataset>' (read like `data.source`)."
    )
    split: str = Field("test", description="Dataset split (for 'hf:' sources).")
    max_prompts: int | None = Field(None, gt=0, description="Evaluate only the first N held-out prompts.")
    n: int = Field(1, gt=0, description="Completions sampled per prompt.")
    temperature: float = Field(
        0.0, ge=0.0, description="0: greedy decoding (then n must be 1); above 0: sampling. Independent of training."
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling (when temperature > 0).")
    top_k: int | None = Field(None, gt=0, description="Top-k sampling (when temperature > 0); unset: off.")
    max_completion_tokens: int | None = Field(
        None, gt=0, description="Token budget per completion; unset: algorithm.max_completion_tokens."
    )
    pass_at: list[int] = Field(
        default_factory=lambda: [1], description="The k of each pass@k, by the unbiased estimator (k <= n)."
    )
    correct: CorrectConfig = Field(default_factory=CorrectConfig, description="What counts as correct for pass@k.")
    batch_size: int = Field(16, gt=0, description="Prompts generated together (memory only, never the numbers).")
    seed: int | None = Field(None, description="Seeds the sampling; unset: training.seed.")
    before: bool = Field(True, description="Evaluate the model before training (the baseline, step 0).")
    every_steps: int | None = Field(
        None, gt=0,
        description="Also evaluate the checkpoint of every N-th step (after training; N a multiple of "
        "training.save_every).",
    )
    after: bool = Field(True, description="Evaluate the final model.")

    @field_validator("prompts")
    @classmethod
    def _prompts_not_empty(cls, prompts: list[str] | None) -> list[str] | None:
        if prompts is not None and not [p for p in prompts if p.strip()]:
            raise ValueError("the held-out prompt list is empty; give at least one prompt")
        return prompts

    @field_validator("pass_at")
    @classmethod
    def _pass_at(cls, pass_at: list[int]) -> list[int]:
        if any(k < 1 for k in pass_at):
            raise ValueError("each k of pass@k is at least 1")
        return sorted(set(pass_at))

    @property
    def sources(self) -> list[str]:
        if self.source is None:
            return []
        return [self.source] if isinstance(self.source, str) else list(self.source)

    @model_validator(mode="after")
    def _consistent(self) -> EvaluationConfig:
        if self.prompts is None and self.source is None:
            raise ValueError("no held-out prompts: set `evaluation.prompts` or `evaluation.source`")
        if self.prompts is not None and self.source is not None:
            raise ValueError("set either `evaluation.prompts` or `evaluation.source`, not both")
        if self.temperature == 0 and self.n > 1:
            raise _FieldValueError(("n",), f"greedy decoding (temperature 0) gives the same completion {self.n} "
                                           "times; set n: 1, or a temperature above 0 to sample")
        if self.pass_at and max(self.pass_at) > self.n:
            k = max(self.pass_at)
            raise _FieldValueError(("pass_at",), f"pass@{k} needs at least {k} samples per prompt; raise "
                                                 f"evaluation.n (now {self.n}) or lower pass_at")
        return self
