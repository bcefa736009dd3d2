"""`logging`: the experiment trackers a run's neutral metrics go to (TensorBoard, W&B, MLflow, Trackio)."""

from __future__ import annotations

import importlib.util
from typing import Literal

from pydantic import Field, field_validator

from retrain.core.config._base import _Strict

Tracker = Literal["tensorboard", "wandb", "mlflow", "trackio"]
# The module each tracker needs, and the extra that installs it.
TRACKER_MODULES: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
    "trackio": ("trackio", "trackio"),
}


class WandbConfig(_Strict):
    """Weights & Biases."""

    mode: Literal["offline", "online"] = Field(
        "offline",
        description="offline: the run is written under the run directory for `wandb sync` later (nothing leaves "
        "the machine); online: streamed to the W&B server (needs `wandb login` or WANDB_API_KEY).",
    )
    entity: str | None = Field(None, description="The W&B team or user (unset: your default entity).")


class MlflowConfig(_Strict):
    """MLflow."""

    tracking_uri: str | None = Field(
        None,
        description="Where runs are recorded: a tracking server ('http://host:5000') or a database "
        "('sqlite:////abs/path/mlflow.db'). Unset: a SQLite store in the run directory (`<run>/mlflow.db`); "
        "`retrain compare` shares one per comparison.",
    )


class LoggingConfig(_Strict):
    """Experiment trackers. Every tracker gets the same neutral record as `metrics.jsonl` (the same names on
    every backend, at the same steps), the run's config as its parameters, and sample completions with their
    reward breakdowns as a table. A tracker that fails never stops the run: a warning, and `metrics.jsonl`
    stays complete."""

    trackers: list[Tracker] = Field(
        default_factory=list,
        description="Any of tensorboard, wandb, mlflow, trackio (each an extra: pip install 'retrain[wandb]').",
    )
    project: str = Field("retrain", min_length=1, description="The tracker's project (MLflow: experiment).")
    group: str | None = Field(
        None, description="Runs that belong together (`retrain compare` sets one per comparison)."
    )
    wandb: WandbConfig = Field(default_factory=WandbConfig, description="W&B settings.")
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig, description="MLflow settings.")

    @field_validator("trackers")
    @classmethod
    def _installed(cls, trackers: list[str]) -> list[str]:
        if len(set(trackers)) != len(trackers):
            raise ValueError(f"a tracker is listed twice: {trackers}")
        missing = [name for name in trackers if importlib.util.find_spec(TRACKER_MODULES[name][0]) is None]
        if missing:
            extras = ",".join(TRACKER_MODULES[name][1] for name in missing)
            raise ValueError(
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: "
                f"pip install 'retrain[{extras}]'"
            )
        return trackers
