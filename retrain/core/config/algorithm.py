"""`algorithm`: the RL algorithm and its options.

`algorithm.name` is a preset of the neutral options below (advantage estimator, policy loss, loss
aggregation, clip ranges, KL placement, dynamic sampling, overlong shaping): the preset fills every option
the user did not write, so a user can start from `dapo` and change one thing. `retrain translate` prints what
a name expanded to. Each backend then maps the options to its library's own implementation, or rejects them
at validation (`Capabilities` in `retrain.core.backend`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from retrain.core.config._base import _FieldValueError, _Strict

AlgorithmName = Literal[
    "grpo", "dr_grpo", "dapo", "gspo", "rloo", "cispo", "sapo", "reinforce_pp", "reinforce_pp_baseline", "ppo"
]
Advantage = Literal["grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "gae"]
PolicyLoss = Literal["clip", "gspo", "cispo", "sapo"]

# name -> the options it sets unless the user wrote them. A callable reads the rest of the section (DAPO's
# overlong buffer is a fifth of the completion budget, as in the DAPO recipe: 4096 of 20480 tokens).
PRESETS: dict[str, dict[str, Any]] = {
    # Both libraries' own GRPO defaults: group-normalised advantages, token-mean loss (TRL's loss_type
    # default "dapo", verl's loss_agg_mode default "token-mean"). The paper's per-sequence mean is
    # loss_aggregation: grpo.
    "grpo": {"advantage": "grpo", "policy_loss": "clip", "reward_scaling": "group", "loss_aggregation": "dapo"},
    "dr_grpo": {"advantage": "grpo", "policy_loss": "clip", "reward_scaling": "none",
                "loss_aggregation": "dr_grpo"},
    "dapo": {"advantage": "grpo", "policy_loss": "clip", "reward_scaling": "group", "loss_aggregation": "dapo",
             "clip_range": 0.2, "clip_range_high": 0.28, "dynamic_sampling": True,
             "overlong_buffer": lambda algorithm: max(1, algorithm.max_completion_tokens // 5)},
    # GSPO's paper: sequence-level ratio, per-sequence mean, clip ranges of 3e-4 / 4e-4.
    "gspo": {"advantage": "grpo", "policy_loss": "gspo", "reward_scaling": "group", "loss_aggregation": "grpo",
             "clip_range": 3e-4, "clip_range_high": 4e-4},
    # RLOO (Ahmadian et al. 2024, TRL's RLOOTrainer): leave-one-out baseline, KL in the reward, the loss summed
    # over a completion's tokens and averaged over completions.
    "rloo": {"advantage": "rloo", "policy_loss": "clip", "reward_scaling": "none",
             "loss_aggregation": "sequence_sum", "kl_placement": "reward"},
    # CISPO (MiniMax-M1): a stop-gradient on the clipped ratio, an upper cap only (ScaleRL's 5.0 = 1 + 4.0).
    "cispo": {"advantage": "grpo", "policy_loss": "cispo", "reward_scaling": "group", "loss_aggregation": "dapo",
              "clip_range_high": 4.0},
    # SAPO: a soft gate instead of a hard clip, per-sequence mean (both libraries fix that aggregation).
    "sapo": {"advantage": "grpo", "policy_loss": "sapo", "reward_scaling": "group", "loss_aggregation": "grpo"},
    # REINFORCE++: no critic, advantages whitened over the batch, KL in the reward.
    "reinforce_pp": {"advantage": "reinforce_pp", "policy_loss": "clip", "reward_scaling": "batch",
                     "loss_aggregation": "dapo", "kl_placement": "reward"},
    "reinforce_pp_baseline": {"advantage": "reinforce_pp_baseline", "policy_loss": "clip",
                              "reward_scaling": "batch", "loss_aggregation": "dapo", "kl_placement": "reward"},
    # PPO with a learned critic and GAE, KL in the reward (InstructGPT's placement).
    "ppo": {"advantage": "gae", "policy_loss": "clip", "reward_scaling": "batch", "loss_aggregation": "dapo",
            "kl_placement": "reward", "critic": {}},
}

# The scalings an advantage estimator can have. The REINFORCE++ family and GAE whiten over the batch by
# definition; RLOO's leave-one-out advantage is unscaled (TRL can also whiten it over the batch).
SCALINGS: dict[str, tuple[str, ...]] = {
    "grpo": ("group", "batch", "none"), "rloo": ("none", "batch"), "reinforce_pp": ("batch",),
    "reinforce_pp_baseline": ("batch",), "gae": ("batch",),
}


class CriticConfig(_Strict):
    """PPO's value model (`algorithm.name: ppo`)."""

    model: str | None = Field(None, description="The critic's starting model; unset: the policy's model.")
    learning_rate: float = Field(1e-5, gt=0, description="The critic's learning rate.")
    value_clip: float = Field(0.5, gt=0, description="PPO's value clip: the new value stays within this of the old.")
    gamma: float = Field(1.0, ge=0, le=1, description="GAE's discount.")
    lam: float = Field(1.0, ge=0, le=1, description="GAE's lambda.")
    warmup_steps: int = Field(
        0, ge=0, description="Steps that train only the critic before the policy starts updating."
    )


class AlgorithmConfig(_Strict):
    """The RL algorithm: a preset (`name`) of the options below, each of which can be set."""

    name: AlgorithmName = Field(
        "grpo",
        description="The algorithm: a preset of advantage, policy_loss, loss_aggregation, reward_scaling, clip "
        "ranges, kl_placement, dynamic_sampling, overlong_buffer and critic (see docs/algorithms.md); options "
        "written here override the preset.",
    )
    group_size: int = Field(8, ge=2, description="Completions sampled per prompt (group baselines need at least 2).")
    prompts_per_step: int = Field(2, gt=0, description="Distinct prompts in one optimizer step.")
    max_steps: int = Field(50, gt=0, description="Optimizer steps to train for.")
    learning_rate: float = Field(1e-5, gt=0, description="Peak learning rate.")
    advantage: Advantage = Field(
        "grpo",
        description="Advantage estimator: 'grpo' (reward minus the group mean), 'rloo' (leave-one-out mean), "
        "'reinforce_pp' (batch-whitened return), 'reinforce_pp_baseline' (group mean removed, then batch-"
        "whitened), 'gae' (a learned critic).",
    )
    policy_loss: PolicyLoss = Field(
        "clip",
        description="'clip' (PPO's clipped per-token ratio), 'gspo' (clipped per-sequence ratio), 'cispo' "
        "(stop-gradient on the ratio capped at 1 + clip_range_high), 'sapo' (a soft gate).",
    )
    kl_coef: float = Field(0.0, ge=0, description="KL penalty coefficient against the reference model (0: no KL).")
    kl_placement: Literal["loss", "reward"] = Field(
        "loss",
        description="Where the KL penalty goes: 'loss' (a k3 term in the loss, GRPO's) or 'reward' (k1 subtracted "
        "from the reward before advantages, RLOO's, REINFORCE++'s and PPO's).",
    )
    clip_range: float = Field(0.2, gt=0, description="PPO ratio clip range (lower, and upper if not set).")
    clip_range_high: float | None = Field(
        None, gt=0, description="Upper clip range (DAPO's clip-higher); for cispo the ratio's cap is 1 + this."
    )
    loss_aggregation: Literal["grpo", "dr_grpo", "dapo", "sequence_sum"] = Field(
        "dapo",
        description="How token losses are averaged: 'grpo' (per sequence, then batch), 'dr_grpo' (by a "
        "constant), 'dapo' (over all tokens in the batch), 'sequence_sum' (summed per sequence, then averaged: "
        "RLOO's).",
    )
    reward_scaling: Literal["group", "batch", "none"] = Field(
        "group", description="Divide advantages by the std of the group, of the batch, or not at all."
    )
    dynamic_sampling: bool = Field(
        False,
        description="DAPO's dynamic sampling: drop groups whose rewards all agree (no learning signal) and "
        "generate more prompts until the step's batch is full.",
    )
    overlong_buffer: int | None = Field(
        None, gt=0,
        description="DAPO's soft overlong punishment: completions within this many tokens of "
        "max_completion_tokens lose up to overlong_penalty (a reward component named 'overlong', computed by "
        "retrain); unset: off.",
    )
    overlong_penalty: float = Field(1.0, gt=0, description="The overlong punishment at max_completion_tokens.")
    sapo_temperature_pos: float = Field(1.0, gt=0, description="SAPO's gate temperature for positive advantages.")
    sapo_temperature_neg: float = Field(1.05, gt=0, description="SAPO's gate temperature for other advantages.")
    critic: CriticConfig | None = Field(None, description="PPO's critic (set by algorithm.name: ppo).")
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
    def _expand_and_check(self) -> AlgorithmConfig:
        # The preset fills what the user did not write, leaving `model_fields_set` as the user's own fields
        # (errors then name `algorithm.name` for a part the name chose). Presets are ours, hence unvalidated.
        for key, value in PRESETS[self.name].items():
            if key not in self.model_fields_set:
                value = value(self) if callable(value) else value
                self.__dict__[key] = CriticConfig(**value) if key == "critic" else value
        if self.prompts_per_step % self.mini_batches:
            raise _FieldValueError(
                ("mini_batches",),
                f"{self.mini_batches} mini-batches cannot split {self.prompts_per_step} prompts per step evenly; "
                "use a divisor of prompts_per_step",
            )
        scalings = SCALINGS[self.advantage]
        if self.reward_scaling not in scalings:
            raise _FieldValueError(("reward_scaling",), (
                f"the '{self.advantage}' advantage is scaled {' or '.join(repr(s) for s in scalings)} by definition; "
                f"set reward_scaling: {scalings[0]} (or remove it)"
            ))
        if (self.critic is not None) != (self.advantage == "gae"):
            raise _FieldValueError(("critic",), (
                "a critic is what the 'gae' advantage learns; remove critic" if self.critic is not None
                else "the 'gae' advantage needs a critic; add `critic: {}` (or use name: ppo)"
            ))
        if self.policy_loss == "sapo" and self.loss_aggregation != "grpo":
            raise _FieldValueError(("loss_aggregation",), (
                "sapo averages per sequence on both TRL and verl (neither honours another aggregation); "
                "set loss_aggregation: grpo"
            ))
        if self.policy_loss == "cispo":
            if self.clip_range != type(self).model_fields["clip_range"].default:
                raise _FieldValueError(("clip_range",), (
                    "cispo caps the ratio from above only (at 1 + clip_range_high; TRL has no lower bound); "
                    "remove clip_range"
                ))
            if self.loss_aggregation != "dapo":
                raise _FieldValueError(("loss_aggregation",), (
                    "cispo averages over the batch's tokens on TRL (its only aggregation); set loss_aggregation: dapo"
                ))
        if self.overlong_buffer is not None and self.overlong_buffer > self.max_completion_tokens:
            raise _FieldValueError(("overlong_buffer",), (
                f"{self.overlong_buffer} tokens is more than max_completion_tokens ({self.max_completion_tokens}); "
                "use a smaller buffer (DAPO: a fifth)"
            ))
        return self

    def expanded(self) -> dict[str, Any]:
        """The options the name stands for, as this config has them (for `retrain translate`)."""
        keys = ["advantage", "policy_loss", "reward_scaling", "loss_aggregation", "clip_range", "clip_range_high",
                "kl_placement", "dynamic_sampling", "overlong_buffer"]
        if self.policy_loss == "sapo":
            keys += ["sapo_temperature_pos", "sapo_temperature_neg"]
        values = self.model_dump(include=set(keys) | {"critic"})
        return {key: values[key] for key in keys + (["critic"] if self.critic is not None else [])}

    @property
    def updates_per_step(self) -> int:
        """Optimizer updates in one step (one generated batch)."""
        return self.mini_batches * self.updates_per_batch
