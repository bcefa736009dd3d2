"""Each backend's own objects, built from retrain's translation of one retrain config.

The parity tests never re-implement a backend: TRL's side is the `GRPOTrainer` that retrain's
launcher builds (its `GRPOConfig` comes from `grpo_config_kwargs`), verl's side is verl's own
`ppo_trainer` config composed with retrain's overrides and checked by verl's `validate_config`.
A wrong mapping in either translation therefore changes what the tests compare.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retrain.config_models import TrainingConfig
from retrain.core.progress import ProgressReporter
from retrain.core.run_dir import RunDir


def retrain_config(data: dict[str, Any], backend: str) -> TrainingConfig:
    """The one retrain config, validated for `backend` (the same dict goes to both backends)."""
    return TrainingConfig.from_data({**data, "backend": backend})


def trl_trainer(data: dict[str, Any], run_root: Path) -> tuple[Any, RunDir]:
    """TRL's real GRPOTrainer for the config, exactly as `retrain run` builds it, and its run directory."""
    from retrain.backends.trl.launch import build_trainer

    run_dir = RunDir.create(run_root, "trl")
    trainer = build_trainer(retrain_config(data, "trl"), run_dir, ProgressReporter(enabled=False))
    return trainer, run_dir


def verl_composed(data: dict[str, Any], run_overrides: list[str] | None = None) -> Any:
    """verl's composed config for the config: retrain's algorithm and machine overrides (plus the
    run's, when given), accepted by verl's own `validate_config`."""
    from retrain.backends.verl.launch import machine_overrides
    from retrain.backends.verl.translate import algorithm_overrides, compose, validate

    config = retrain_config(data, "verl")
    composed = compose(algorithm_overrides(config) + machine_overrides(config) + list(run_overrides or []))
    validate(composed)
    return composed
