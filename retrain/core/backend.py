"""The Backend protocol: what an RL library adapter implements.

An adapter is a subpackage with the same module names as the built-ins (`translate`, `rewards`,
`callbacks`/metrics, `launch`), exposing one object that satisfies `Backend`. Loading that object
must be cheap (no torch import); heavy imports happen in `translate` and `train`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from retrain.core.errors import ConfigIssue
from retrain.core.registry import available_backends

if TYPE_CHECKING:
    from retrain.core.config import TrainingConfig
    from retrain.core.progress import ProgressReporter
    from retrain.core.run_dir import RunDir


@dataclass(frozen=True)
class Capabilities:
    """What a backend can honour. Options outside these are rejected at validation."""

    loss_aggregations: frozenset[str]
    reward_scalings: frozenset[str]
    lora: bool = True
    environments: bool = False
    multi_node: bool = False
    ray_cluster: bool = False
    cpu: bool = True
    kl_penalty: bool = True
    asymmetric_clip: bool = True
    # Generation engines it can drive ("transformers", "vllm") and the vLLM modes ("colocate", "server").
    rollout_engines: frozenset[str] = frozenset({"transformers"})
    vllm_modes: frozenset[str] = frozenset()
    # What can load the model ("transformers", "unsloth").
    model_loaders: frozenset[str] = frozenset({"transformers"})
    # Learning-rate schedules ("constant", "linear", "cosine").
    lr_schedulers: frozenset[str] = frozenset({"constant", "linear", "cosine"})
    # The algorithm's parts (`algorithm.advantage`, `policy_loss`, `kl_placement`, `dynamic_sampling`); an
    # adapter that declares nothing runs GRPO only. `reward_scalings` are those of the 'grpo' advantage.
    advantages: frozenset[str] = frozenset({"grpo"})
    policy_losses: frozenset[str] = frozenset({"clip"})
    kl_placements: frozenset[str] = frozenset({"loss"})
    dynamic_sampling: bool = False


@dataclass
class NativeConfig:
    """What the backend will receive, printable by `retrain translate`.

    `settings` is the library's own config as plain data; `notes` explain decisions a user should
    know about (for example "CPU detected: bf16 off").
    """

    backend: str
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"# native config for backend '{self.backend}'"]
        lines += [f"# {note}" for note in self.notes]
        lines.append(json.dumps(self.settings, indent=2, sort_keys=True, default=str))
        return "\n".join(lines)


@dataclass
class TrainResult:
    """What a finished (or interrupted) training leaves behind."""

    steps_completed: int
    final_model_dir: Path | None
    last_checkpoint: Path | None
    interrupted: bool = False


@runtime_checkable
class Backend(Protocol):
    name: str
    capabilities: Capabilities

    def check_config(self, config: TrainingConfig) -> list[ConfigIssue]:
        """Problems this backend has with the config (options it cannot honour); [] if none."""
        ...

    def translate(self, config: TrainingConfig) -> NativeConfig:
        """The config in the library's own terms. No side effects: no files, no processes."""
        ...

    def train(self, config: TrainingConfig, run_dir: RunDir, progress: ProgressReporter) -> TrainResult:
        """Train for real: write metrics through `run_dir`, checkpoints under it, report progress."""
        ...


def missing_packages(backend: str, modules: tuple[str, ...], extra: str) -> list[ConfigIssue]:
    """An issue naming the backend's libraries that are not installed here, and the extra that installs them
    (checked first: the other checks and `translate` import them)."""
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if not missing:
        return []
    return [ConfigIssue(
        "backend", None,
        f"backend '{backend}' needs {', '.join(missing)}, not installed in this environment: "
        f"`pip install 'retrain[{extra}]'` (from a checkout: `make setup-dev` installs both backends)",
    )]


def check_capabilities(config: TrainingConfig, capabilities: Capabilities, backend: str) -> list[ConfigIssue]:
    """The checks every backend shares: an option outside the capabilities is an error, not dropped."""
    issues: list[ConfigIssue] = algorithm_issues(config, capabilities, backend)
    algorithm = config.algorithm
    if algorithm.loss_aggregation not in capabilities.loss_aggregations:
        issues.append(ConfigIssue(
            "algorithm.loss_aggregation" if "loss_aggregation" in algorithm.model_fields_set else "algorithm.name",
            None,
            f"backend '{backend}' does not support '{algorithm.loss_aggregation}'; "
            f"choose one of {sorted(capabilities.loss_aggregations)}",
        ))
    if algorithm.advantage == "grpo" and algorithm.reward_scaling not in capabilities.reward_scalings:
        issues.append(ConfigIssue(
            "algorithm.reward_scaling",
            None,
            f"backend '{backend}' does not support '{algorithm.reward_scaling}'; "
            f"choose one of {sorted(capabilities.reward_scalings)}",
        ))
    if config.optimizer.lr_scheduler not in capabilities.lr_schedulers:
        issues.append(ConfigIssue(
            "optimizer.lr_scheduler", None,
            f"backend '{backend}' has no '{config.optimizer.lr_scheduler}' schedule; choose one of "
            f"{sorted(capabilities.lr_schedulers)}",
        ))
    if config.model.lora is not None and not capabilities.lora:
        issues.append(ConfigIssue("model.lora", None, f"backend '{backend}' cannot train LoRA adapters; remove it"))
    if algorithm.kl_coef > 0 and not capabilities.kl_penalty:
        issues.append(ConfigIssue("algorithm.kl_coef", None, f"backend '{backend}' has no KL penalty; set 0"))
    if algorithm.clip_range_high is not None and not capabilities.asymmetric_clip:
        issues.append(ConfigIssue(
            "algorithm.clip_range_high", None, f"backend '{backend}' has one clip range; remove clip_range_high"
        ))
    if config.resources.nodes > 1 and not capabilities.multi_node:
        issues.append(ConfigIssue(
            "resources.nodes", None, f"backend '{backend}' runs on one node; set nodes: 1"
        ))
    if config.environment is not None and config.environment.type != "single_turn" and not capabilities.environments:
        issues.append(ConfigIssue(
            "environment", None,
            f"backend '{backend}' does not run multi-step environments yet; use `backend: trl` or remove `environment`",
        ))
    if config.resources.ray_address is not None and not capabilities.ray_cluster:
        issues.append(ConfigIssue(
            "resources.ray_address", None,
            f"backend '{backend}' does not run on a Ray cluster; remove ray_address (use `backend: verl` for Ray)",
        ))
    if config.resources.gpus_per_node == 0 and not capabilities.cpu:
        issues.append(ConfigIssue(
            "resources.gpus_per_node", None, f"backend '{backend}' needs GPUs; set gpus_per_node >= 1"
        ))
    rollout = config.rollout
    if rollout.engine != "auto" and rollout.engine not in capabilities.rollout_engines:
        issues.append(ConfigIssue(
            "rollout.engine", None,
            f"backend '{backend}' cannot generate with {rollout.engine}; choose one of "
            f"{sorted(capabilities.rollout_engines | {'auto'})}",
        ))
    # The mode matters when vLLM is asked for, or a non-default mode is (auto + colocate may fall back).
    elif (rollout.engine == "vllm" or rollout.vllm_mode != "colocate") and (
        rollout.vllm_mode not in capabilities.vllm_modes
    ):
        modes = sorted(capabilities.vllm_modes)
        issues.append(ConfigIssue(
            "rollout.vllm_mode", None,
            f"backend '{backend}' does not run vLLM in '{rollout.vllm_mode}' mode"
            + (f"; choose one of {modes}" if modes else ""),
        ))
    if rollout.engine == "transformers":  # asked for transformers, and set vLLM's knobs: a mistake
        issues += [ConfigIssue(field, None, "a vLLM setting, and engine is transformers; remove it (or use vllm)")
                   for field in rollout.vllm_settings()]
    if config.model.loader not in capabilities.model_loaders:
        issues.append(ConfigIssue(
            "model.loader", None,
            f"backend '{backend}' loads models with {sorted(capabilities.model_loaders)} only; "
            + ("use `backend: trl` for unsloth" if config.model.loader == "unsloth" else "choose one of those"),
        ))
    known = set(available_backends())
    for other in sorted(set(config.backend_options) - known):
        # Options for another backend are kept (the same YAML runs on both), but a typo is not.
        issues.append(ConfigIssue(
            f"backend_options.{other}", None, f"'{other}' is not a backend; known: {sorted(known)}"
        ))
    return issues


_PARTS = {"advantage": ("advantages", "advantage estimator"), "policy_loss": ("policy_losses", "policy loss"),
          "kl_placement": ("kl_placements", "KL placement"), "dynamic_sampling": ("dynamic_sampling", "")}


def _has(capabilities: Capabilities, part: str, value: Any) -> bool:
    have = getattr(capabilities, _PARTS[part][0])
    return bool(have) if isinstance(have, bool) else value in have


def algorithm_issues(config: TrainingConfig, capabilities: Capabilities, backend: str) -> list[ConfigIssue]:
    """The algorithm's parts this backend lacks, each naming the backends that have it. A part the name's
    preset chose is reported on `algorithm.name` (the user wrote the name, not the part)."""
    from retrain.core.registry import load_backend

    algorithm = config.algorithm
    wanted: dict[str, Any] = {"advantage": algorithm.advantage, "policy_loss": algorithm.policy_loss}
    if algorithm.kl_coef > 0:
        wanted["kl_placement"] = algorithm.kl_placement
    if algorithm.dynamic_sampling:
        wanted["dynamic_sampling"] = True
    issues = []
    for part, value in wanted.items():
        if _has(capabilities, part, value):
            continue
        others = []
        for name in available_backends():
            try:
                if name != backend and _has(load_backend(name).capabilities, part, value):
                    others.append(name)
            except Exception:  # noqa: BLE001  # a broken third-party adapter must not hide this message
                continue
        what = "dynamic sampling" if part == "dynamic_sampling" else f"'{value}' {_PARTS[part][1]}"
        field = f"algorithm.{part}" if part in algorithm.model_fields_set else "algorithm.name"
        of_name = f" (part of algorithm '{algorithm.name}')" if field == "algorithm.name" else ""
        where = f"use `backend: {others[0]}`" + (f" (or {', '.join(others[1:])})" if others[1:] else "") \
            if others else "no installed backend has it"
        if part == "dynamic_sampling" and others:
            where += " (or set algorithm.dynamic_sampling: false)"
        issues.append(ConfigIssue(field, None, f"backend '{backend}' has no {what}{of_name}; {where}"))
    return issues

