"""The training config: one schema for every backend.

`TrainingConfig.from_yaml(path)` parses and validates a YAML file; every error names the field,
the file and line, and what is expected. The flat "conceptual" keys (`model_to_train`,
`learning_task`, `example_prompts`) are accepted as aliases of `model.name`, `task` and
`data.prompts`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from retrain.core.config._base import _FieldValueError, _Strict
from retrain.core.config.algorithm import AlgorithmConfig
from retrain.core.config.data import DataConfig
from retrain.core.config.environment import EnvironmentConfig, MCPServerSpec
from retrain.core.config.evaluation import CorrectConfig, EvaluationConfig
from retrain.core.config.messages import ALIASES, as_written, issues_from_validation, line_for, loc_of
from retrain.core.config.model import LoraConfig, ModelConfig
from retrain.core.config.optimizer import OptimizerConfig
from retrain.core.config.resources import ResourcesConfig
from retrain.core.config.rewards import ConstraintSpec, RewardsConfig, RewardSpec, ScoredSpec, VerifierSpec
from retrain.core.config.rollout import RolloutConfig
from retrain.core.config.tracking import LoggingConfig
from retrain.core.config.training import TrainingConfigSection
from retrain.core.errors import ConfigError, ConfigIssue
from retrain.core.registry import check_backend_name, load_backend
from retrain.core.yaml_source import KeyPath, load_yaml_with_lines, parse_yaml_text

OVERLONG = "overlong"  # the reward component of algorithm.overlong_buffer

__all__ = [
    "ALIASES", "AlgorithmConfig", "ConstraintSpec", "CorrectConfig", "DataConfig", "EnvironmentConfig",
    "EvaluationConfig", "LoggingConfig", "LoraConfig",
    "MCPServerSpec", "ModelConfig", "OptimizerConfig", "ResourcesConfig", "RewardSpec", "RewardsConfig",
    "RolloutConfig", "ScoredSpec", "TrainingConfig", "TrainingConfigSection", "VerifierSpec", "locate",
]


class TrainingConfig(_Strict):
    """A complete retrain run: what to learn, from what, and on which backend."""

    backend: str = Field("trl", description="The RL library that trains: 'trl', 'verl', or a registered name.")
    model: ModelConfig = Field(description="The model to train (`model_to_train` is a shorthand for its name).")
    task: str | None = Field(
        None,
        description="What the model should learn, in words (`learning_task`). Recorded in the run directory and "
        "shown at start; it is not shown to the model (use `data.system_prompt` for that).",
    )
    data: DataConfig = Field(description="The prompts (`example_prompts` is a shorthand for inline prompts).")
    verifiers: list[VerifierSpec] = Field(default_factory=list, description="Pass/fail checks that gate reward.")
    rewards: RewardsConfig = Field(default_factory=RewardsConfig, description="Rewards and constraints.")
    environment: EnvironmentConfig | None = Field(
        None, description="A multi-step environment with tools; unset: the model answers each prompt once."
    )
    algorithm: AlgorithmConfig = Field(
        default_factory=AlgorithmConfig, description="The RL algorithm (a named preset) and its options."
    )
    optimizer: OptimizerConfig = Field(
        default_factory=OptimizerConfig, description="AdamW and the learning-rate schedule."
    )
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="The generation engine.")
    training: TrainingConfigSection = Field(default_factory=TrainingConfigSection, description="Outputs.")
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig, description="Hardware.")
    logging: LoggingConfig = Field(
        default_factory=LoggingConfig, description="Experiment trackers (TensorBoard, W&B, MLflow, Trackio)."
    )
    evaluation: EvaluationConfig | None = Field(
        None, description="A held-out set, evaluated before and after training (unset: no evaluation)."
    )
    backend_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Raw options per backend, passed through unchanged (shown by `retrain translate`).",
    )

    @model_validator(mode="before")
    @classmethod
    def _expand_aliases(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("model"), str):
            data["model"] = {"name": data["model"]}
        for alias, target in ALIASES.items():
            if alias not in data:
                continue
            value = data.pop(alias)
            node = data
            for part in target[:-1]:
                existing = node.get(part)
                if existing is None:
                    existing = node[part] = {}
                elif not isinstance(existing, dict):
                    raise _FieldValueError(
                        (part,), f"`{alias}` sets {'.'.join(target)}, but `{part}` is not a mapping; use one of them"
                    )
                else:
                    existing = node[part] = dict(existing)
                node = existing
            if target[-1] in node:
                raise _FieldValueError((alias,), f"`{alias}` and `{'.'.join(target)}` both given; keep one")
            node[target[-1]] = value
        if isinstance(data.get("rewards"), list):
            raise _FieldValueError(
                ("rewards",),
                "`rewards` is a mapping: put reward functions under `rewards.functions` "
                "and penalties under `rewards.constraints`",
            )
        return data

    @field_validator("backend")
    @classmethod
    def _backend_known(cls, backend: str) -> str:
        check_backend_name(backend)
        return backend


    @model_validator(mode="after")
    def _names_unique(self) -> TrainingConfig:
        named: list[tuple[tuple[str | int, ...], str]] = [
            (("verifiers", i), v.display_name) for i, v in enumerate(self.verifiers)
        ]
        named += [(("rewards", "functions", i), r.display_name) for i, r in enumerate(self.rewards.functions)]
        named += [(("rewards", "constraints", i), c.display_name) for i, c in enumerate(self.rewards.constraints)]
        if self.rewards.goal:
            named.append((("rewards", "goal"), "goal"))
        if self.algorithm.overlong_buffer is not None:
            named.append((("algorithm", "overlong_buffer"), OVERLONG))
        seen: set[str] = set()
        for loc, name in named:
            if name in seen:
                raise _FieldValueError(
                    loc, f"reward/verifier names must be unique, '{name}' repeats; give one of them a `name:`"
                )
            seen.add(name)
        return self

    @model_validator(mode="after")
    def _evaluation_fits(self) -> TrainingConfig:
        evaluation = self.evaluation
        if evaluation is None:
            return self
        if self.environment is not None:
            raise _FieldValueError(("evaluation",), "evaluating environment episodes is not supported yet; remove "
                                                    "`evaluation` (the environment's run still trains)")
        if evaluation.every_steps is not None and evaluation.every_steps % self.training.save_every:
            raise _FieldValueError(
                ("evaluation", "every_steps"),
                f"evaluation reads the checkpoints, saved every {self.training.save_every} steps "
                f"(training.save_every); use a multiple of it",
            )
        held_out = evaluation.reasoning_gym
        if held_out is not None:
            if held_out.tasks is None and self.data.reasoning_gym is None:
                raise _FieldValueError(("evaluation", "reasoning_gym", "tasks"),
                                       "name the tasks: the training data is not generated by reasoning-gym")
            training = self.data.reasoning_gym
            # reasoning-gym makes row i of seed s from Random(s + i): seed 7 row 0 is seed 1 row 6. Rows overlap
            # when the seed ranges [seed, seed + size) do.
            if training is not None and held_out.tasks is None and (
                held_out.seed < training.seed + training.size and training.seed < held_out.seed + held_out.size
            ):
                raise _FieldValueError(
                    ("evaluation", "reasoning_gym", "seed"),
                    f"reasoning-gym makes row i from seed + i, so held-out seeds {held_out.seed}..."
                    f"{held_out.seed + held_out.size - 1} repeat training rows (seeds {training.seed}..."
                    f"{training.seed + training.size - 1}); use a seed of at least {training.seed + training.size}",
                )
        verifiers = {v.display_name for v in self.verifiers}
        if isinstance(evaluation.correct.verifiers, list):
            for name in evaluation.correct.verifiers:
                if name not in verifiers:
                    raise _FieldValueError(("evaluation", "correct", "verifiers"),
                                           f"no verifier named '{name}' (verifiers: {sorted(verifiers) or 'none'})")
        scored = {spec.name for spec in self.scored_specs()}
        for name in evaluation.correct.rewards or {}:
            if name not in scored:
                raise _FieldValueError(("evaluation", "correct", "rewards"),
                                       f"no reward or constraint named '{name}' (names: {sorted(scored) or 'none'})")
        return self

    def scored_specs(self) -> list[ScoredSpec]:
        """Every reward and constraint the Scorer computes: the rewards section's, then the algorithm's
        (DAPO's overlong shaping, `algorithm.overlong_buffer`, is a reward component like any other)."""
        specs = self.rewards.scored_specs()
        algorithm = self.algorithm
        if algorithm.overlong_buffer is not None:
            specs.append(ScoredSpec(
                "algorithm.overlong_buffer", OVERLONG, "reward", "overlong_penalty",
                {"max_tokens": algorithm.max_completion_tokens, "buffer_tokens": algorithm.overlong_buffer,
                 "penalty": algorithm.overlong_penalty}, 1.0, None,
            ))
        return specs

    def gate_issues(self) -> list[ConfigIssue]:
        """`rewards.gate: floor` needs the range of every reward and constraint to place failures below."""
        if not self.verifiers or self.rewards.gate != "floor":
            return []
        from retrain.core.scoring import component_bounds

        return [
            ConfigIssue(
                spec.field, None,
                f"'{spec.reference}' has no known range, and `rewards.gate: floor` needs one to rank a failed "
                "completion below every passing one; give it `bounds: [low, high]`, declare @reward(bounds=...), "
                "or set `rewards.gate: penalty`",
            )
            for spec in self.scored_specs()
            if component_bounds(spec.reference, spec.params, spec.bounds) is None
        ]

    def _preflights(self) -> list[tuple[str, str, Any]]:
        """(field, rule, preflight result or the ValueError it raised) of each rule that has a preflight."""
        from retrain.core.registry import Kind, resolve_function

        found: list[tuple[str, str, Any]] = []
        rules: list[tuple[str, str, Kind, dict[str, Any]]] = [
            (f"verifiers[{i}]", v.rule, "verifier", v.params) for i, v in enumerate(self.verifiers)
        ]
        rules += [(spec.field, spec.reference, "reward", spec.params) for spec in self.scored_specs()]
        for field_, reference, kind, params in rules:
            function = resolve_function(reference, kind)
            if function.preflight is None:
                continue
            try:
                found.append((field_, reference, function.preflight(dict(params))))
            except ValueError as exc:
                found.append((field_, reference, exc))
        return found

    def preflight_issues(self) -> list[ConfigIssue]:
        """Rules that cannot run on this machine with their params (e.g. code rules without OS isolation)."""
        return [ConfigIssue(f"{field_}.params", None, f"'{rule}': {result}")
                for field_, rule, result in self._preflights() if isinstance(result, ValueError)]

    def preflight_notes(self) -> list[str]:
        """What the rules' preflights report (e.g. the code sandbox's layers), one line each, without repeats."""
        notes: list[str] = []
        for _, _, result in self._preflights():
            if isinstance(result, str) and result not in notes:
                notes.append(result)
        return notes

    # -- loading -----------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainingConfig:
        """Load and validate a YAML config; errors name the field, the file and the line."""
        data, lines = load_yaml_with_lines(path)
        config = cls.from_data(data, source=str(path), lines=lines)
        config._source_path = Path(path)
        return config

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "<string>") -> TrainingConfig:
        data, lines = parse_yaml_text(text, source)
        return cls.from_data(data, source=source, lines=lines)

    @classmethod
    def from_data(
        cls, data: Any, source: str | None = None, lines: dict[KeyPath, int] | None = None
    ) -> TrainingConfig:
        if not isinstance(data, dict):
            found = "an empty file" if data is None else type(data).__name__
            raise ConfigError(
                [ConfigIssue(None, 1, f"a config is a YAML mapping of fields (backend, model, ...), found {found}")],
                source=source,
            )
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(issues_from_validation(exc, data, lines or {}, TrainingConfig), source=source) from None
        issues = [
            ConfigIssue(as_written(issue.field, data), line_for(loc_of(issue.field), data, lines or {}), issue.message)
            for issue in config.gate_issues() + config.preflight_issues()
            + load_backend(config.backend).check_config(config)
        ]
        if issues:
            raise ConfigError(issues, source=source)
        return config

    _source_path: Path | None = None

    @property
    def source_path(self) -> Path | None:
        return self._source_path

    def to_yaml_dict(self) -> dict[str, Any]:
        """The config as plain data, in the structured form (aliases expanded)."""
        return self.model_dump(mode="json", exclude_none=True)


def locate(error: ConfigError, path: str | Path) -> ConfigError:
    """`error` pointed at the config file: for problems found after loading it (reading the data, resuming),
    whose issues name a field but not the file or line."""
    if error.source is not None:
        return error
    try:
        data, lines = load_yaml_with_lines(path)
    except ConfigError:
        return error
    if not isinstance(data, dict):
        return error
    issues = [
        ConfigIssue(as_written(issue.field, data), issue.line or line_for(loc_of(issue.field), data, lines),
                    issue.message)
        for issue in error.issues
    ]
    return ConfigError(issues, source=str(path))


# -- error rendering -------------------------------------------------------------------------
