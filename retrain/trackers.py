"""Experiment trackers: the run's neutral records, as `metrics.jsonl` has them, in TensorBoard, W&B, MLflow and
Trackio (`logging.trackers`).

One code path for every backend: a feed thread in the process that started the run follows the run
directory — `metrics.jsonl` (one neutral record per step, written by whichever backend trained) and
`samples/step_N.jsonl` — and hands each new record to every tracker through the tracker's own client library.
So a TRL run and a verl run of one config put the same names at the same steps in every tracker, however
the backend lays out its processes (TRL's multi-GPU workers, verl's Ray actors).

Each tracker gets, at the start, the retrain config (flattened: `algorithm.learning_rate`, ...) and the
backend's effective native settings (`settings/...`, as `retrain translate --backends` shows them) as
parameters; per step, every numeric value of the record at `step`; per sampled step, a table of the
completions with their reward breakdowns (W&B Table, MLflow table artifact, TensorBoard text, Trackio Table).

A tracker that fails (its server gone, its disk full) is warned about once and dropped for the rest of the
run; training goes on and `metrics.jsonl` is complete whatever the trackers do. Run ids are kept in
`<run>/trackers.json`, so that `--resume` continues the same tracker runs.
"""

from __future__ import annotations

import abc
import functools
import json
import math
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from retrain.core.config import TrainingConfig
from retrain.core.metrics import read_jsonl
from retrain.core.run_dir import RunDir

POLL_SECONDS = 1.0
STATE_FILE = "trackers.json"
EVAL_FILE = "eval.jsonl"  # retrain.evaluation.EVAL_FILE (not imported: it loads the model stack)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{'algorithm': {'learning_rate': 1e-5}} -> {'algorithm.learning_rate': 1e-5}; lists as JSON text."""
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(data, list | tuple):
        return {prefix: json.dumps(data, default=str)}
    return {prefix: data}


def numeric(record: dict[str, Any]) -> dict[str, float]:
    """The record's numbers (not its step, not text, not None), as floats."""
    return {key: float(value) for key, value in record.items()
            if key != "step" and isinstance(value, int | float) and not isinstance(value, bool)}


SAMPLE_COLUMNS: list[Any] = ["step", "prompt", "completion", "total", "breakdown"]


def sample_rows(step: int, samples: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for sample in samples:
        breakdown = sample.get("breakdown") or {}
        rows.append([step, str(sample.get("prompt", "")), str(sample.get("completion", "")),
                     breakdown.get("total"), json.dumps(breakdown, default=str)])
    return rows


class Tracker(abc.ABC):
    """One tracker's client, made with (run dir, config, its state in trackers.json, the run's parameters): it
    records the parameters when its run is new. Subclasses use the tracker's own library; every method may
    raise (the feed drops a tracker that does)."""

    name = ""
    where = ""  # how a person opens what it wrote, shown at the start of the run

    @abc.abstractmethod
    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        """(each tracker says how)"""

    @abc.abstractmethod
    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        """(each tracker says how)"""

    @abc.abstractmethod
    def finish(self, status: str) -> None:
        """(each tracker says how)"""


class TensorBoardTracker(Tracker):
    """Event files under `<run>/tensorboard` (`tensorboard --logdir <run>/tensorboard`)."""

    name = "tensorboard"

    def __init__(self, run_dir: RunDir, config: TrainingConfig, state: dict[str, Any], params: dict[str, Any]):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = run_dir.path / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        state["log_dir"] = str(self.log_dir)
        self.where = f"tensorboard --logdir {self.log_dir}"
        if not state.get("params_logged"):
            text = "\n".join(f"| {key} | {escape_md(value)} |" for key, value in params.items())
            self.writer.add_text("config", "| parameter | value |\n|---|---|\n" + text, global_step=0)
            self.writer.flush()

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        lines = ["| " + " | ".join(SAMPLE_COLUMNS[1:]) + " |", "|" + "---|" * (len(SAMPLE_COLUMNS) - 1)]
        lines += ["| " + " | ".join(escape_md(cell) for cell in row[1:]) + " |" for row in sample_rows(step, samples)]
        self.writer.add_text("samples", "\n".join(lines), global_step=step)
        self.writer.flush()

    def finish(self, status: str) -> None:
        self.writer.close()


def escape_md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


class WandbTracker(Tracker):
    """A W&B run; offline by default, written under `<run>/wandb` for `wandb sync` later."""

    name = "wandb"

    def __init__(self, run_dir: RunDir, config: TrainingConfig, state: dict[str, Any], params: dict[str, Any]):
        import wandb

        settings = config.logging.wandb
        self.wandb = wandb
        state.setdefault("id", secrets.token_hex(4))  # W&B's own ids: 8 lowercase letters and digits
        self.run = wandb.init(
            project=config.logging.project, entity=settings.entity, name=run_dir.path.name,
            group=config.logging.group, dir=str(run_dir.path), mode=settings.mode, id=state["id"],
            resume="allow", reinit="create_new", config=params,
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, x_disable_meta=True),
        )
        self.where = (f"wandb sync {Path(self.run.dir).parent}" if settings.mode == "offline"
                      else str(self.run.url or "W&B"))

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        table = self.wandb.Table(columns=SAMPLE_COLUMNS, data=sample_rows(step, samples))
        self.run.log({"samples": table}, step=step)

    def finish(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "completed" else 1)
        if self.wandb.run is None:  # no other W&B run in this process: stop the wandb-core service it started
            self.wandb.teardown()


class MlflowTracker(Tracker):
    """An MLflow run in experiment `logging.project`: a SQLite store in the run directory (`<run>/mlflow.db`,
    artifacts in `<run>/mlflow-artifacts`) unless `logging.mlflow.tracking_uri` names another."""

    name = "mlflow"

    def __init__(self, run_dir: RunDir, config: TrainingConfig, state: dict[str, Any], params: dict[str, Any]):
        import logging

        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its database migrations log at INFO
        given = config.logging.mlflow.tracking_uri
        uri = given or f"sqlite:///{run_dir.path / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri)
        state["tracking_uri"] = uri
        self.where = (f"{uri} (open with `mlflow ui --backend-store-uri {uri}`, from the full mlflow package)"
                      if uri.startswith("sqlite:") else uri)
        if "run_id" in state:
            self.run_id = state["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            experiment = self.client.get_experiment_by_name(config.logging.project)
            # Artifacts beside a SQLite store (MLflow's default would be ./mlruns, wherever the run was started);
            # a tracking server decides for itself.
            artifacts = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlflow-artifacts").as_uri() \
                if uri.startswith("sqlite:///") else None
            experiment_id = (experiment.experiment_id if experiment is not None
                             else self.client.create_experiment(config.logging.project, artifact_location=artifacts))
            tags = {"retrain.backend": config.backend, "retrain.run_dir": str(run_dir.path)}
            if config.logging.group:
                tags["retrain.group"] = config.logging.group
            run = self.client.create_run(experiment_id, run_name=run_dir.path.name, tags=tags)
            self.run_id = state["run_id"] = run.info.run_id
            from mlflow.entities import Param

            values = [Param(key[:250], str(value)[:6000]) for key, value in params.items()]
            for start in range(0, len(values), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(self.run_id, params=values[start:start + 100])

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in values.items()]
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        rows = sample_rows(step, samples)
        table = {column: [row[i] for row in rows] for i, column in enumerate(SAMPLE_COLUMNS)}
        self.client.log_table(self.run_id, data=table, artifact_file=f"samples/step_{step:06d}.json")

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status="FINISHED" if status == "completed" else "KILLED")


class TrackioTracker(Tracker):
    """A Trackio run in Trackio's local store: `$TRACKIO_DIR`, else `<training.output_dir>/trackio` (set before
    Trackio is first imported in the process: its store is one folder for all runs, which is how its dashboard,
    `TRACKIO_DIR=... trackio show`, puts them side by side)."""

    name = "trackio"

    def __init__(self, run_dir: RunDir, config: TrainingConfig, state: dict[str, Any], params: dict[str, Any]):
        import contextlib
        import io
        import sys

        if "trackio" not in sys.modules and "TRACKIO_DIR" not in os.environ:
            os.environ["TRACKIO_DIR"] = str(Path(config.training.output_dir).resolve() / "trackio")
            try:
                import trackio  # reads TRACKIO_DIR once, here
            finally:
                del os.environ["TRACKIO_DIR"]
        import trackio
        from trackio.utils import TRACKIO_DIR

        self.trackio = trackio
        state["store"] = str(TRACKIO_DIR)
        self.where = f"TRACKIO_DIR={TRACKIO_DIR} trackio show --project {config.logging.project}"
        with contextlib.redirect_stdout(io.StringIO()):  # its banner and dashboard hints
            self.run = trackio.init(project=config.logging.project, name=run_dir.path.name,
                                    group=config.logging.group, resume="allow", embed=False, config=params,
                                    auto_log_cpu=False, auto_log_gpu=False)

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        import pandas as pd

        table = self.trackio.Table(dataframe=pd.DataFrame(sample_rows(step, samples), columns=SAMPLE_COLUMNS))
        self.run.log({"samples": table}, step=step)

    def finish(self, status: str) -> None:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            self.run.finish()
        self.trackio.context_vars.current_run.set(None)  # finished: nothing left for its exit hook


TRACKERS: dict[str, Callable[[RunDir, TrainingConfig, dict[str, Any], dict[str, Any]], Tracker]] = {
    "tensorboard": TensorBoardTracker, "wandb": WandbTracker, "mlflow": MlflowTracker, "trackio": TrackioTracker,
}


class TrackerFeed(threading.Thread):
    """Follows the run directory and feeds the trackers; `stop(status)` sends what is left and closes them."""

    def __init__(self, run_dir: RunDir, config: TrainingConfig, console: Console, params: dict[str, Any]):
        super().__init__(daemon=True, name="retrain-trackers")
        self.run_dir, self.config, self.console = run_dir, config, console
        self.state_path = run_dir.path / STATE_FILE
        self.state: dict[str, dict[str, Any]] = (json.loads(self.state_path.read_text())
                                                 if self.state_path.exists() else {})
        self.trackers: list[Tracker] = []
        self.failed: dict[str, str] = {}
        for name in config.logging.trackers:
            state = self.state.setdefault(name, {})
            self._guard(name, functools.partial(self._open, name, state, params))
            if name not in self.failed:
                state["params_logged"] = True
        self._save_state()
        # Steps already in metrics.jsonl (a resumed run) were sent by the run that wrote them.
        done = read_jsonl(run_dir.metrics_path) if run_dir.metrics_path.exists() else []
        self.last_step = max((record.get("step", 0) for record in done), default=0)
        self.eval_path = run_dir.path / EVAL_FILE
        # Byte offsets of what has been read: each poll reads only the lines added since.
        self.offsets = {run_dir.metrics_path: 0,
                        self.eval_path: self.eval_path.stat().st_size if self.eval_path.exists() else 0}
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    def _open(self, name: str, state: dict[str, Any], params: dict[str, Any]) -> None:
        self.trackers.append(TRACKERS[name](self.run_dir, self.config, state, params))

    def _save_state(self) -> None:
        self.state_path.write_text(json.dumps(self.state, indent=2) + "\n", encoding="utf-8")

    def _guard(self, name: str, action: Callable[[], Any]) -> None:
        if name in self.failed:
            return
        try:
            action()
        except Exception as exc:  # a tracker never stops the run
            self.failed[name] = f"{type(exc).__name__}: {exc}"
            self.trackers = [tracker for tracker in self.trackers if tracker.name != name]
            self.console.print(f"[yellow]warning:[/] tracker '{name}' failed and is left out for the rest of the run "
                               f"({escape(self.failed[name][:300])}); training goes on, metrics.jsonl is complete",
                               soft_wrap=True)

    def _each(self, method: str, *args: Any) -> None:
        """tracker.<method>(*args) on every tracker still in, each guarded."""
        for tracker in list(self.trackers):
            self._guard(tracker.name, functools.partial(getattr(tracker, method), *args))

    def run(self) -> None:
        while not self.stop_event.wait(POLL_SECONDS):
            self.poll()

    def poll(self) -> None:
        with self.lock:
            if self.trackers:
                self._poll_evaluations()
            if not self.trackers:
                return
            for record in self._new_records(self.run_dir.metrics_path):
                step = record.get("step")
                if not isinstance(step, int) or step <= self.last_step:
                    continue
                values = {key: value for key, value in numeric(record).items() if math.isfinite(value)}
                self._each("log_metrics", step, values)
                self.last_step = step
                samples_path = self.run_dir.samples_dir / f"step_{step:06d}.jsonl"
                if samples_path.exists():
                    samples = read_jsonl(samples_path)
                    if samples:
                        self._each("log_samples", step, samples)

    def _poll_evaluations(self) -> None:
        """The held-out evaluations (`eval/...`, `eval.jsonl`), at the step of the model evaluated (0: the base)."""
        for record in self._new_records(self.eval_path):
            step = record.get("step")
            if isinstance(step, int):
                values = {key: value for key, value in numeric(record).items()
                          if key.startswith("eval/") and math.isfinite(value)}
                self._each("log_metrics", step, values)

    def _new_records(self, path: Path) -> list[dict[str, Any]]:
        """The complete lines added to `path` since the last read. A file rewritten shorter (a resume that sets
        steps aside) is read from its start again; the step filter keeps a step from being sent twice."""
        try:
            size = path.stat().st_size
        except OSError:
            return []
        offset = self.offsets[path] if self.offsets[path] <= size else 0
        with path.open("rb") as file:
            file.seek(offset)
            data = file.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line being written is read whole at the next poll
        self.offsets[path] = offset + len(complete)
        records = []
        for line in complete.decode("utf-8", "replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def stop(self, status: str) -> None:
        self.stop_event.set()
        if self.is_alive():
            self.join(timeout=30)
        self.poll()
        self._each("finish", status)
        self._save_state()


def start_trackers(config: TrainingConfig, run_dir: RunDir, console: Console) -> TrackerFeed | None:
    """The feed for `config.logging.trackers` (None when there are none), started."""
    if not config.logging.trackers:
        return None
    params = {**flatten(config.to_yaml_dict())}
    try:
        from retrain.core.registry import load_backend

        reader = getattr(load_backend(config.backend), "effective_settings", None)
        if reader is not None:
            params.update({f"settings/{key}": value for key, value in flatten(reader(config)).items()})
    except Exception as exc:  # the settings are a courtesy to the tracker, never a reason to stop
        console.print(f"[yellow]warning:[/] could not read the effective settings for the trackers: {escape(str(exc))}")
    os.environ.setdefault("WANDB_SILENT", "true")
    feed = TrackerFeed(run_dir, config, console, params)
    for tracker in feed.trackers:
        console.print(f"tracker {tracker.name}: {escape(tracker.where)}", highlight=False, soft_wrap=True)
    feed.start()
    return feed
