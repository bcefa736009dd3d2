"""The training config: one schema for every backend.

`TrainingConfig.from_yaml(path)` parses and validates a YAML file; every error names the field,
the file and line, and what is expected. The flat "conceptual" keys (`model_to_train`,
`learning_task`, `example_prompts`) are accepted as aliases of `model.name`, `task` and
`data.prompts`.
"""

from __future__ import annotations

import difflib
import importlib.util
import reprlib
from datetime import date
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from retrain.core.errors import ConfigError, ConfigIssue
from retrain.core.registry import check_backend_name, import_attribute, load_backend, resolve_function
from retrain.core.yaml_source import KeyPath, load_yaml_with_lines, parse_yaml_text

# Flat keys of the conceptual config, and where they live in the structured schema.
ALIASES: dict[str, tuple[str, ...]] = {
    "model_to_train": ("model", "name"),
    "learning_task": ("task",),
    "example_prompts": ("data", "prompts"),
}


class ScoredSpec(NamedTuple):
    """A reward or constraint as the Scorer sees it (see `RewardsConfig.scored_specs`)."""

    field: str
    name: str
    role: Literal["reward", "constraint"]
    reference: str
    params: dict[str, Any]
    weight: float
    bounds: tuple[float, float] | None


class _FieldValueError(ValueError):
    """A ValueError about one field, raised where pydantic cannot tell which (a mode="before" validator)."""

    def __init__(self, loc: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.loc = loc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class LoraConfig(_Strict):
    """Low-rank adapters: train a few small matrices instead of every weight."""

    r: int = Field(16, gt=0, description="Rank of the adapter matrices.")
    alpha: int = Field(32, gt=0, description="Scaling numerator (effective scale is alpha / r).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the adapter input (peft's default, 0).")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or 'all-linear'."
    )


class ModelConfig(_Strict):
    """The policy model to train."""

    name: str = Field(
        description="A Hugging Face hub id (org/name), a local folder, or a built-in "
        "('retrain:smollm2-135m-instruct', 'retrain:tiny').",
        min_length=1,
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; 'auto' is bfloat16 on a GPU that supports it, else float32."
    )
    lora: LoraConfig | None = Field(None, description="Train LoRA adapters instead of the full model.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    loader: Literal["transformers", "unsloth"] = Field(
        "transformers",
        description="What loads the model: 'transformers', or 'unsloth' (its patched kernels; TRL backend; "
        "`pip install 'retrain[unsloth]'`).",
    )

    @field_validator("name")
    @classmethod
    def _name_resolvable(cls, name: str) -> str:
        from retrain.models import check_model_reference  # no ML imports: a path/name check only

        problem = check_model_reference(name)
        if problem:
            raise ValueError(problem)
        return name


class DataConfig(_Strict):
    """Where prompts come from: inline, or a JSONL/parquet file or a Hugging Face dataset."""

    prompts: list[str] | None = Field(None, description="Inline prompts.")
    source: str | None = Field(
        None,
        description="A .jsonl/.json/.parquet file, or 'hf:<dataset name>' for a Hugging Face dataset.",
    )
    split: str = Field("train", description="Dataset split (for 'hf:' sources).")
    prompt_column: str = Field("prompt", description="Column holding the prompt text.")
    answer_column: str | None = Field(
        None, description="Column holding the reference answer, passed to rewards as `answer`."
    )
    system_prompt: str | None = Field(None, description="A system message put before every prompt.")

    @field_validator("prompts")
    @classmethod
    def _prompts_not_empty(cls, prompts: list[str] | None) -> list[str] | None:
        if prompts is not None:
            if not prompts:
                raise ValueError("the prompt list is empty; give at least one prompt")
            for i, prompt in enumerate(prompts):
                if not prompt.strip():
                    raise ValueError(f"prompt {i} is blank; remove it or write the prompt")
        return prompts

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if self.prompts is None and self.source is None:
            raise ValueError("no prompts: set `data.prompts` (or `example_prompts`) or `data.source`")
        if self.prompts is not None and self.source is not None:
            raise ValueError("set either `data.prompts` or `data.source`, not both")
        return self


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
    max_completion_tokens: int = Field(128, gt=0, description="Most tokens generated per completion.")
    updates_per_batch: int = Field(
        1, gt=0, description="Optimizer passes over each generated batch (GRPO's mu); >1 makes clipping active."
    )


class RolloutConfig(_Strict):
    """What generates the completions. On GPUs vLLM is much faster than transformers' generate()."""

    engine: Literal["auto", "transformers", "vllm"] = Field(
        "auto",
        description="'auto': vLLM on GPUs when it is installed (and the backend can use it), else transformers; "
        "'vllm' or 'transformers' to insist (`pip install 'retrain[vllm]'`).",
    )
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate",
        description="'colocate': vLLM shares the training GPUs; 'server': generate on a separately started "
        "vLLM server (`trl vllm-serve`, TRL backend).",
    )
    server_url: str | None = Field(
        None,
        description="For vllm_mode 'server': the server's base URL; unset: http://localhost:8000.",
    )
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="Share of each GPU's memory vLLM may take; unset: the backend's own default."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one vLLM engine is split across.")

    def vllm_settings(self) -> list[str]:
        """The fields set that only vLLM uses (unused, or a mistake, where transformers generates)."""
        return [f"rollout.{name}" for name, given in (
            ("gpu_memory_utilization", self.gpu_memory_utilization is not None),
            ("tensor_parallel_size", self.tensor_parallel_size > 1)) if given]

    @field_validator("server_url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"'{url}' is not an http(s) URL; write it like http://host:8000")
        return url

    @model_validator(mode="after")
    def _server_fields(self) -> RolloutConfig:
        if self.vllm_mode == "server" and self.engine == "transformers":
            raise _FieldValueError(("vllm_mode",), "'server' generates with vLLM; set engine: vllm (or auto)")
        if self.server_url is not None and self.vllm_mode != "server":
            raise _FieldValueError(
                ("server_url",), "only used with vllm_mode: server; set that, or remove server_url"
            )
        return self


class TrainingConfigSection(_Strict):
    """Where outputs go and how often."""

    output_dir: str = Field("runs", description="Folder holding run directories.")
    run_name: str | None = Field(None, description="Run directory name prefix; defaults to the config file name.")
    seed: int = Field(42, description="Random seed.")
    save_every: int = Field(50, gt=0, description="Save a checkpoint every N steps (and at the end).")
    log_every: int = Field(1, gt=0, description="Write metrics every N steps.")
    samples_per_step: int = Field(4, ge=0, description="Completions (with breakdowns) kept per logged step.")
    resume: str | None = Field(None, description="A run directory to resume from its latest checkpoint.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory in the backward pass.")


class MCPServerSpec(_Strict):
    """An MCP server started over stdio for the run (and stopped when it ends)."""

    name: str = Field(description="Name of the server (in logs and errors).")
    command: str = Field(
        description="The executable, e.g. 'npx', or 'python' (the interpreter retrain runs in, not the first on PATH)."
    )
    args: list[str] = Field(default_factory=list, description="Its arguments.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables for the server. Only these and a few safe ones (PATH, HOME, USER, ...) "
        "reach it: the parent's secrets are not passed unless listed here.",
    )
    cwd: str | None = Field(None, description="Working directory of the server process.")


class EnvironmentConfig(_Strict):
    """A multi-step environment: the model may call tools and take several turns."""

    type: str = Field(
        "tools",
        description="'single_turn', 'tools' (Python functions and/or MCP servers' tools), 'mcp' (the same, with "
        "mcp_servers required), or 'module:Class' for your own Environment / MultiTurnEnv.",
    )
    tools: list[str] = Field(
        default_factory=list, description="Tool functions: a built-in name ('calculator') or 'module:function'."
    )
    mcp_servers: list[MCPServerSpec] = Field(default_factory=list, description="MCP servers whose tools to offer.")
    max_turns: int = Field(4, gt=0, description="Most model turns per episode.")
    tool_timeout_seconds: float = Field(10.0, gt=0, description="Time limit of one tool call.")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for a 'module:Class' type.")

    @field_validator("tools")
    @classmethod
    def _tools_exist(cls, tools: list[str]) -> list[str]:
        from retrain.environments.tools import load_tool

        for tool in tools:
            load_tool(tool)
        return tools

    @model_validator(mode="after")
    def _type_fits(self) -> EnvironmentConfig:
        if self.type == "mcp" and not self.mcp_servers:
            raise ValueError("type 'mcp' needs at least one entry in mcp_servers")
        if self.mcp_servers and importlib.util.find_spec("mcp") is None:
            raise ValueError("mcp_servers need the MCP SDK: pip install 'retrain[mcp]'")
        if self.type == "tools" and not (self.tools or self.mcp_servers):
            raise ValueError("type 'tools' needs `tools` (Python functions) or `mcp_servers`")
        if self.type not in ("single_turn", "tools", "mcp"):
            if ":" not in self.type:
                raise ValueError(
                    f"unknown environment type '{self.type}'; use 'single_turn', 'tools', 'mcp' or 'module:Class'"
                )
            import_attribute(self.type, what="environment")
        return self


class ResourcesConfig(_Strict):
    """Hardware the run may use. Scale-out is done by the backend's own engine."""

    nodes: int = Field(1, gt=0, description="Number of machines.")
    gpus_per_node: int = Field(0, ge=0, description="GPUs per machine (0: CPU).")
    ray_address: str | None = Field(
        None,
        description="An existing Ray cluster to run on ('auto', or the head's 'host:port'), for backends that "
        "run on Ray (verl). Unset: the run starts a local Ray and stops it at the end. A cluster it did not "
        "start is left running; only this run's actors end with it.",
    )


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
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig, description="GRPO options.")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="The generation engine.")
    training: TrainingConfigSection = Field(default_factory=TrainingConfigSection, description="Outputs.")
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig, description="Hardware.")
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
        seen: set[str] = set()
        for loc, name in named:
            if name in seen:
                raise _FieldValueError(
                    loc, f"reward/verifier names must be unique, '{name}' repeats; give one of them a `name:`"
                )
            seen.add(name)
        return self

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
            for spec in self.rewards.scored_specs()
            if component_bounds(spec.reference, spec.params, spec.bounds) is None
        ]

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
            raise ConfigError(_issues_from_validation(exc, data, lines or {}), source=source) from None
        issues = [
            ConfigIssue(issue.field, _line_for(_loc_of(issue.field), data, lines or {}), issue.message)
            for issue in config.gate_issues() + load_backend(config.backend).check_config(config)
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
        issue if issue.line else ConfigIssue(issue.field, _line_for(_loc_of(issue.field), data, lines), issue.message)
        for issue in error.issues
    ]
    return ConfigError(issues, source=str(path))


# -- error rendering -------------------------------------------------------------------------


def _loc_of(field: str | None) -> tuple[str | int, ...]:
    if not field:
        return ()
    parts: list[str | int] = []
    for part in field.replace("[", ".[").split("."):
        parts.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(parts)


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the field at `loc` (skipping list indices)."""
    model: type[BaseModel] = TrainingConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        inner = _unwrap_model(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _line_for(loc: tuple[str | int, ...], data: dict[str, Any], lines: dict[KeyPath, int]) -> int | None:
    candidates: list[KeyPath] = [loc]
    for alias, target in ALIASES.items():
        if alias in data and loc[: len(target)] == target:
            candidates.append((alias, *loc[len(target) :]))
        if alias in data and loc == target[:-1]:
            candidates.append((alias,))
    # A key with dots in it (backend_options.verl.<dotted.override>) reads as several parts of the field.
    candidates += [(*loc[:i], ".".join(map(str, loc[i:]))) for i in range(1, len(loc) - 1)]
    for candidate in candidates:
        if candidate in lines:
            return lines[candidate]
    for candidate in candidates:
        for end in range(len(candidate), -1, -1):
            line = lines.get(candidate[:end])
            if line is not None and (end > 0 or len(candidate) == 0):
                return line
    return None


_EXPECTED = {
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "finite_number": "a finite number",
    "string_too_short": "text that is not empty",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


# Values in messages are shortened: a config can hold long text, or a YAML alias that expands hugely.
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 80
_short.maxlist = _short.maxdict = _short.maxtuple = _short.maxset = 6
_short.maxlevel = 3


def _data_loc(loc: tuple[str | int, ...], data: Any) -> tuple[str | int, ...]:
    """The error's location without the union members pydantic names in it ('list[str]'), keeping keys of
    the data (which may hold '[' too)."""
    kept: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(part, str) and "[" in part:
            continue
        else:
            node = None
        kept.append(part)
    return tuple(kept)


def _issues_from_validation(
    exc: ValidationError, data: dict[str, Any], lines: dict[KeyPath, int]
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for error in exc.errors():
        loc = _data_loc(error["loc"], data)
        kind = error["type"]
        if isinstance(error.get("ctx", {}).get("error"), _FieldValueError):
            loc = (*loc, *error["ctx"]["error"].loc)
        got = "an empty value" if error.get("input") is None else _short.repr(error.get("input"))
        line = None
        if kind == "invalid_key":  # a key that is not text (a number, true, null): name the mapping holding it
            loc = loc[:-1]
            line = lines.get((*loc, str(error.get("input"))))
        elif kind == "missing" and len(loc) > 1 and loc[-2] == "bounds":
            loc = loc[:-1]  # an item missing from [low, high]: name the pair
        field = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[") or None
        if kind == "invalid_key":
            message = (f"the key {error.get('input')!r} is not a name; field names are text "
                       "(a number, true/false or null as a key is probably a mistake)")
        elif loc and loc[-1] == "bounds" and kind in ("missing", "too_long"):
            message = f"got {got}, expected two numbers: [low, high]"
        elif kind == "extra_forbidden":
            model = _model_at(loc)
            allowed = list(model.model_fields) if model else []
            if model is TrainingConfig:
                allowed += list(ALIASES)
            suggestion = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
            hint = f"; did you mean '{suggestion[0]}'?" if suggestion else f"; known fields: {', '.join(allowed)}"
            message = f"unknown field '{loc[-1]}'{hint}"
        elif kind == "missing":
            model = _model_at(loc)
            description = model.model_fields[str(loc[-1])].description if model else None
            message = f"required field is missing; add `{loc[-1]}:`" + (f" ({description})" if description else "")
        elif kind == "literal_error":
            message = f"got {got}, expected one of {error['ctx']['expected']}"
        elif kind == "string_type" and isinstance(error.get("input"), int | float | date):
            message = f"got {got}, expected text; put it in quotes if you mean the text {str(error.get('input'))!r}"
        elif kind in _EXPECTED:
            message = f"got {got}, expected {_EXPECTED[kind]}"
        elif kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
            message = f"got {got}: {error['msg'].lower()}"
        elif kind == "value_error":
            message = str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
        else:
            message = error["msg"]
        issues.append(ConfigIssue(field, line or _line_for(loc, data, lines), message))
    return issues
