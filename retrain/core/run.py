"""`run(config)`: resolve the backend, train, and leave a complete run directory behind."""

from __future__ import annotations

import asyncio
import copy
import time
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from retrain.core.config import TrainingConfig
from retrain.core.errors import ConfigError, ConfigIssue, RetrainError, TrainingFailed
from retrain.core.progress import ProgressReporter, render_summary, summarize_run
from retrain.core.provenance import provenance
from retrain.core.registry import load_backend
from retrain.core.run_dir import RunDir
from retrain.core.yaml_source import KeyPath, load_yaml_with_lines

ConfigLike = TrainingConfig | dict[str, Any] | str | Path


def _set_model_name(data: dict[str, Any], name: str) -> None:
    if "model_to_train" in data:
        data["model_to_train"] = name
    elif isinstance(data.get("model"), dict):
        data["model"] = {**data["model"], "name": name}
    else:
        data["model"] = name


def apply_overrides(
    data: dict[str, Any],
    *,
    backend: str | None = None,
    model: str | None = None,
    max_steps: int | None = None,
    output_dir: str | Path | None = None,
    fields: dict[str, Any] | None = None,
    trackers: list[str] | None = None,
) -> dict[str, Any]:
    """Command-line overrides on raw config data (before validation, so errors keep their lines). `fields`:
    dotted field paths and values (`retrain compare --set`), set as if written in the file."""
    data = copy.deepcopy(data)
    for dotted, value in (fields or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for part in parents:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError([ConfigIssue(dotted, None, f"`{part}` is not a section; check the --set path")])
            else:
                child = node[part] = dict(child)
            node = child
        node[last] = value
    if backend is not None:
        data["backend"] = backend
    if model is not None:
        _set_model_name(data, model)
    if max_steps is not None:
        data["algorithm"] = {**(data.get("algorithm") or {}), "max_steps": max_steps}
    if output_dir is not None:
        data["training"] = {**(data.get("training") or {}), "output_dir": str(output_dir)}
    if trackers is not None:
        data["logging"] = {**(data.get("logging") or {}), "trackers": trackers}
    return data


def load_config(config: ConfigLike, **overrides: Any) -> TrainingConfig:
    """A validated config from a TrainingConfig, a dict or a YAML path, with overrides applied."""
    source: str | None = None
    lines: dict[KeyPath, int] = {}
    source_path: Path | None = None
    if isinstance(config, TrainingConfig):
        data = config.to_yaml_dict()
        source_path = config.source_path
    elif isinstance(config, dict):
        data = config
    elif isinstance(config, str | Path):
        source_path = Path(config)
        source = str(config)
        loaded, lines = load_yaml_with_lines(config)
        if not isinstance(loaded, dict):
            return TrainingConfig.from_data(loaded, source=source)  # raises the "not a mapping" error
        data = loaded
    else:
        raise TypeError(f"config must be a TrainingConfig, a dict or a path, not {type(config).__name__}")
    resolved = TrainingConfig.from_data(apply_overrides(data, **overrides), source=source, lines=lines)
    resolved._source_path = source_path
    return resolved


# What may change between a run and its resumption: how long it goes on, and where it was started from.
_RESUMABLE_CHANGES = {("algorithm", "max_steps"), ("training", "resume"), ("training", "output_dir")} | {
    ("logging", key) for key in ("trackers", "project", "group", "wandb", "mlflow")  # where metrics go, not what
}


def _check_same_experiment(config: TrainingConfig, run_dir: RunDir) -> None:
    """Resuming with another model, data or reward would silently mix two experiments in one run."""
    saved_path = run_dir.path / "config.yaml"
    if not saved_path.exists():
        return
    saved = TrainingConfig.from_yaml(saved_path).to_yaml_dict()
    current = config.to_yaml_dict()
    changed = []
    for section in sorted(set(saved) | set(current)):
        before, after = saved.get(section), current.get(section)
        if isinstance(before, dict) and isinstance(after, dict):
            for key in sorted(set(before) | set(after)):
                if (section, key) not in _RESUMABLE_CHANGES and before.get(key) != after.get(key):
                    changed.append(f"{section}.{key}")
        elif before != after:
            changed.append(section)
    if changed:
        raise ConfigError([ConfigIssue(
            field, None,
            f"differs from the run being resumed ({saved_path}); resume with the same config "
            "(only algorithm.max_steps may change) or start a new run",
        ) for field in changed])


def _run_name(config: TrainingConfig) -> str:
    if config.training.run_name:
        return config.training.run_name
    if config.source_path is not None:
        return config.source_path.stem
    return "run"


def run_sync(
    config: ConfigLike,
    *,
    backend: str | None = None,
    model: str | None = None,
    max_steps: int | None = None,
    output_dir: str | Path | None = None,
    resume: str | Path | None = None,
    console: Console | None = None,
    show_progress: bool = True,
    evaluation_baseline: Any = None,
    trackers: list[str] | None = None,
) -> dict[str, Any]:
    """Train and return the run summary (also written to `<run dir>/summary.json`). With an `evaluation`
    section, the held-out set is evaluated before training and after it (`retrain.evaluation`);
    `evaluation_baseline`: the base model's evaluation when already made (`retrain compare`)."""
    console = console or Console(stderr=True)
    from retrain.data import check_evaluation_source, check_source  # the standard library's formats (and parquet)

    resolved = load_config(config, backend=backend, model=model, max_steps=max_steps, output_dir=output_dir,
                           trackers=trackers)
    check_source(resolved.data)  # a missing data file or column: an error now, before a run directory exists
    check_evaluation_source(resolved)
    resume = resume or resolved.training.resume
    engine = load_backend(resolved.backend)
    native = engine.translate(resolved)

    if resume is not None:
        run_dir = RunDir(Path(resume))
        if run_dir.latest_checkpoint() is None:
            raise ConfigError([ConfigIssue(
                "training.resume", None,
                f"no checkpoint in {run_dir.checkpoints_dir}; nothing to resume (start a new run without --resume)",
            )])
        _check_same_experiment(resolved, run_dir)
    else:
        run_dir = RunDir.create(resolved.training.output_dir, _run_name(resolved))
    run_dir.write_config(resolved.to_yaml_dict(), native.render())
    run_dir.append_provenance(provenance(resolved.source_path, resumed=resume is not None))
    console.print(f"[bold]retrain[/] {resolved.backend} run -> {escape(str(run_dir.path))}", soft_wrap=True)
    if resolved.task:
        console.print(f"task: {escape(resolved.task)}", highlight=False)
    for note in resolved.preflight_notes():
        console.print(escape(note), highlight=False)

    progress = ProgressReporter(
        console, enabled=show_progress, max_completion_tokens=resolved.algorithm.max_completion_tokens
    )
    started = time.monotonic()
    status = "failed"
    feed = None
    if resolved.logging.trackers:
        # The trackers follow the run directory from this process, whatever the backend's process layout
        # (above core, like the evaluator: imported only for a config that asks for trackers).
        from retrain.trackers import start_trackers

        feed = start_trackers(resolved, run_dir, console)
    try:
        summary = _train(resolved, engine, run_dir, console, progress, started, show_progress, evaluation_baseline)
        status = summary["status"]  # 'interrupted' too: a backend that stops at Ctrl-C returns normally
        return summary
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if feed is not None:
            feed.stop(status)


def _train(resolved: TrainingConfig, engine: Any, run_dir: RunDir, console: Console, progress: ProgressReporter,
           started: float, show_progress: bool, evaluation_baseline: Any) -> dict[str, Any]:
    status = "failed"
    result = None
    try:
        if resolved.evaluation is not None:
            # The evaluator loads models (above core, like the backends): imported only for a config that evaluates.
            from retrain.evaluation import evaluate_before

            evaluate_before(resolved, run_dir.path, console if show_progress else None, evaluation_baseline)
        result = engine.train(resolved, run_dir, progress)
        status = "interrupted" if result.interrupted else "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except RetrainError:
        raise
    except Exception as exc:
        # A library failing deep inside training: the person gets one line, the traceback is kept.
        error_log = run_dir.path / "error.log"
        error_log.write_text(traceback.format_exc(), encoding="utf-8")
        raise TrainingFailed(f"training failed: {type(exc).__name__}: {exc} (full traceback: {error_log})") from exc
    finally:
        progress.stop()
        run_dir.close()
        records = run_dir.metrics()
        summary = {
            "status": status,
            "backend": resolved.backend,
            "model": resolved.model.name,
            "task": resolved.task,
            "steps": records[-1]["step"] if records else 0,
            "seconds": time.monotonic() - started,
            "run_dir": str(run_dir.path),
            "model_dir": str(result.final_model_dir) if result and result.final_model_dir else None,
            "last_checkpoint": str(result.last_checkpoint) if result and result.last_checkpoint else None,
            "metrics": summarize_run(records),
        }
        run_dir.write_summary(summary)
        render_summary(console, summary)
        if status != "completed" and run_dir.latest_checkpoint() is not None:
            console.print(f"resume with: retrain run CONFIG --resume {run_dir.path}")
    if status == "completed" and resolved.evaluation is not None:
        # After the summary is written: an evaluation that fails never loses the trained run.
        from retrain.evaluation import evaluate_after

        summary["evaluation"] = evaluate_after(resolved, run_dir.path, console if show_progress else None)
        run_dir.write_summary(summary)
    return summary


async def run(config: ConfigLike, **options: Any) -> dict[str, Any]:
    """Train without blocking the caller's event loop: `summary = await run(config=...)`.

    Accepts a TrainingConfig, a dict or a YAML path, and the same overrides as `retrain run`
    (backend, model, max_steps, output_dir, resume).
    """
    return await asyncio.to_thread(run_sync, config, **options)
