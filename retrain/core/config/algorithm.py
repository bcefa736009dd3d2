"""`algorithm`: the RL algorithm and its options."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from retrain.core.config._base import _FieldValueError, _Strict


class AlgorithmConfig(_Strict):
    """GRPO and its options."""

    name: Literal["grpo"] = Field("grpo", description="The RL algorithm.")
    group_size: int = Field(8, ge=2, description="Completions sampled per prompt (GRPO needs at least 2).")
    prompts_per_step: int = Field(2, gt=0, description="Distinct prompts in one optimizer step.")
    max_steps: int = Field(50, gt=0, description="Optimizer steps to train for.")
    learning_rate: float = Field(1e-5, gt=0, description="Peak learning rate.")
    kl_coef: float = Field(0.0, ge=0, description="KL penalty coefficient against the reference model (0: no KL).")
    clip_range: float = Field(0.2, gt=0, description="PPO ratio clip range (lower, and upper if not set).")
    clip_range_high: float | None = Field(None, gt=0, description="Upper clip range (DAPO's clip-higher).")
    loss_aggregation: Literal["grpo", "dr_grpo", "dapo"] = Field(
        "dapo",
        description="How token losses are averaged: 'grpo' (per sequence, then batch), 'dr_grpo' (by a "
        "constant), 'dapo' (over all tokens in the batch).",
    )
    reward_scaling: Literal["group", "batch", "none"] = Field(
        "group", description="Divide advantages by the std of the group, of the batch, or not at all."
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature for rollouts.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling for rollouts.")
    top_k: int = Field(0, ge=0, description="Sample among the k likeliest tokens only (0: all tokens).")
    max_completion_tokens: int = Field(128, gt=0, description="Most tokens generated per completion.")
    updates_per_batch: int = Field(
        1, gt=0,
        description="Passes over each generated batch (GRPO's mu); >1 makes clipping active. One step is one "
        "generated batch and every update made on it: mini_batches x updates_per_batch optimizer updates.",
    )
    mini_batches: int = Field(
        1, gt=0,
        description="Optimizer updates per pass over a generated batch, each on prompts_per_step / mini_batches "
        "prompts' groups (verl's ppo_mini_batch_size; the DAPO recipe uses several).",
    )
    entropy_coef: float = Field(
        0.0, ge=0, description="Weight of an entropy bonus in the loss (0: none), averaged over completion tokens."
    )

    @model_validator(mode="after")
    def _mini_batches_divide(self) -> AlgorithmConfig:
        if self.prompts_per_step % self.mini_batches:
            raise _FieldValueError(
                ("mini_batches",),
                f"{self.mini_batches} mini-batches cannot split {self.prompts_per_step} prompts per step evenly; "
                "use a divisor of prompts_per_step",
            )
        return self

    @property
    def updates_per_step(self) -> int:
        """Optimizer updates in one step (one generated batch)."""
        return self.mini_batches * self.updates_per_batch
