"""`retrain compare`: one config, trained on several backends, reported side by side.

Every backend gets the same config (same seed, data, rewards and algorithm options); only
`backend` changes. With `--set field=a,b` the comparison is a grid: every variant of the config on
every backend (e.g. `--set algorithm.name=grpo,rloo,dapo`), one run per cell, one report. Every
config is validated before any training starts, so an option one backend cannot honour costs
seconds, not a finished run on the other. A run that fails is reported as failed and the others
still run.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from retrain.core.config import TrainingConfig
from retrain.core.errors import ConfigError, ConfigIssue, RetrainError
from retrain.core.run import ConfigLike, load_config, run_sync
from retrain.core.run_dir import RunDir
from retrain.core.settings import SettingsRow, compare_configs, undeclared
from retrain.report import (
    RunData,
    comparison_rows,
    evaluation_columns,
    evaluation_rows,
    load_run,
    run_statistics,
    write_report,
)


@dataclass
class Comparison:
    """Where the comparison went and how each backend's run ended."""

    output_dir: Path
    report: Path
    runs: list[RunData]

    @property
    def failed(self) -> list[str]:
        return [run.label for run in self.runs if run.status != "completed"]


def parse_backends(text: str) -> list[str]:
    backends = [name.strip() for name in text.split(",") if name.strip()]
    if len(backends) < 1:
        raise ConfigError([ConfigIssue("--backends", None, "name at least one backend, e.g. --backends trl,verl")])
    if len(set(backends)) != len(backends):
        raise ConfigError([ConfigIssue("--backends", None, f"a backend is named twice in {text!r}")])
    return backends


@dataclass(frozen=True)
class Variant:
    """One cell of a `--set` grid: the fields it sets, and its name in labels ("" for the config as written)."""

    name: str = ""
    fields: dict[str, Any] = field(default_factory=dict)

    def label(self, backend: str) -> str:
        return f"{backend} {self.name}" if self.name else backend


def parse_sets(options: list[str]) -> list[Variant]:
    """`--set field=a,b,c` options -> the variants of their grid (every combination). Values are read as YAML
    scalars (1e-5, true, grpo); a label shows each variant's values, or field=value when several fields vary."""
    import yaml

    axes: list[tuple[str, list[Any], list[str]]] = []
    for option in options:
        dotted, equals, values = option.partition("=")
        dotted = dotted.strip()
        texts = [text.strip() for text in values.split(",") if text.strip()]
        if not equals or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", dotted) or not texts:
            raise ConfigError([ConfigIssue("--set", None, f"{option!r}: write a dotted field and its values, e.g. "
                                           "--set algorithm.name=grpo,rloo")])
        if any(dotted == other for other, _, _ in axes):
            raise ConfigError([ConfigIssue("--set", None, f"{dotted} is set twice; give its values in one --set")])
        if len(set(texts)) != len(texts):
            raise ConfigError([ConfigIssue("--set", None, f"{option!r} names a value twice")])
        axes.append((dotted, [_scalar(yaml.safe_load(text)) for text in texts], texts))
    if not axes:
        return [Variant()]
    # A field given one value applies to every variant and names none; the rest name each variant.
    naming = [axis for axis in axes if len(axis[1]) > 1]
    variants = []
    for combination in itertools.product(*[list(zip(values, texts, strict=True)) for _, values, texts in axes]):
        names = [text if len(naming) == 1 else f"{dotted.rsplit('.', 1)[-1]}={text}"
                 for (dotted, values, _), (_, text) in zip(axes, combination, strict=True) if len(values) > 1]
        variants.append(Variant(" ".join(names), {dotted: value for (dotted, _, _), (value, _) in
                                                  zip(axes, combination, strict=True)}))
    return variants


def _scalar(value: Any) -> Any:
    """YAML 1.1 reads 1e-5 (no dot) as a string; a value that is a number is one."""
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                continue
    return value


def _validate_all(config: ConfigLike, backends: list[str], overrides: dict[str, Any],
                  variants: list[Variant] | None = None) -> dict[str, TrainingConfig]:
    """Every (variant, backend) config validated, by label; every problem at once, each labelled."""
    issues: list[ConfigIssue] = []
    source = None
    resolved: dict[str, TrainingConfig] = {}
    for variant in variants or [Variant()]:
        for backend in backends:
            label = variant.label(backend)
            try:
                resolved[label] = load_config(config, backend=backend, fields=variant.fields, **overrides)
            except ConfigError as exc:
                source = exc.source
                where = f"backend {backend}" + (f", --set {variant.name}" if variant.name else "")
                issues += [ConfigIssue(i.field, i.line, f"({where}) {i.message}") for i in exc.issues]
    if issues:
        raise ConfigError(issues, source=source)
    return resolved


VARIED = "set by the --set variants (differs between them, not between the backends of one variant)"


def grid_settings(configs: dict[str, TrainingConfig], variants: list[Variant],
                  backends: list[str]) -> tuple[list[SettingsRow], list[SettingsRow]]:
    """The effective settings of every run side by side, and the undeclared differences between the backends of
    one variant. A row that differs only between variants is marked as the variants' doing, not as a bug."""
    rows = compare_configs(configs)
    within: dict[str, SettingsRow] = {}  # undeclared differences between the backends of a variant
    differing: set[str] = set()  # every key that differs between the backends of some variant
    for variant in variants:
        variant_rows = compare_configs({b: configs[variant.label(b)] for b in backends})
        differing |= {row.key for row in variant_rows if row.differs}
        for row in undeclared(variant_rows):
            within.setdefault(row.key, row)
    if len(variants) > 1:
        for row in rows:
            if row.differs and row.key not in differing:
                row.reason = VARIED
    return rows, list(within.values())


def _run_dir_of(parent: Path, backend: str) -> Path | None:
    """The run directory a failed run left (run_sync raises instead of returning its summary)."""
    found = sorted(parent.glob(f"{backend}-*"))
    return found[-1] if found else None


def compare(
    config: ConfigLike,
    backends: list[str],
    *,
    model: str | None = None,
    max_steps: int | None = None,
    output_dir: str | Path | None = None,
    console: Console | None = None,
    show_progress: bool = True,
    variants: list[Variant] | None = None,
    trackers: list[str] | None = None,
) -> Comparison:
    """Train `config` on each backend in turn (each variant of it, with `variants`: see `parse_sets`), then
    write the report into a new folder `<output_dir>/compare-<name>-<time>/` (output_dir defaults to the
    config's training.output_dir)."""
    console = console or Console(stderr=True)
    variants = variants or [Variant()]
    configs = _validate_all(config, backends, {"model": model, "max_steps": max_steps, "trackers": trackers}, variants)
    labels = list(configs)
    first = configs[labels[0]]
    name = first.training.run_name or (first.source_path.stem if first.source_path else "run")
    folder = RunDir.create(output_dir if output_dir is not None else first.training.output_dir, f"compare-{name}").path
    console.print(f"[bold]retrain compare[/]: {', '.join(labels)} -> {escape(str(folder))}")

    settings, different = grid_settings(configs, variants, backends)
    if different:
        names = ", ".join(row.key for row in different)
        console.print(f"[yellow]warning:[/] the backends will not train the same way: {names} differ (see the "
                      "report's effective settings, or `retrain translate CONFIG --backends ...`)", soft_wrap=True)
    runs: list[RunData] = []
    title = f"retrain compare: {name} on {', '.join(backends)}" + (
        f" x {', '.join(v.name for v in variants)}" if variants[0].name else "")
    common = {key: value for key, value in variants[0].fields.items()
              if all(v.fields.get(key) == value for v in variants)}
    if common and len(variants) > 1:
        title += " (" + ", ".join(f"{key}={value}" for key, value in common.items()) + " for all)"
    baseline = None
    if first.evaluation is not None and first.evaluation.before:
        # The base model, evaluated once: the same model, prompts and settings for every backend's run.
        from retrain.evaluation import evaluate, write_result

        baseline = evaluate(first, first.model.name, console=console if show_progress else None)
        write_result(folder, baseline, step=0)
    try:
        for label in labels:
            runs.append(_train_one(configs[label], folder, console, show_progress, baseline, label))
    except BaseException:
        if runs:  # interrupted: what finished is still reported
            console.print(f"report of the finished runs: "
                          f"{write_report(runs, folder, title=title, settings=settings)}")
        raise
    report_path = write_report(runs, folder, title=title, settings=settings)
    render_comparison(console, runs)
    console.print(f"report: {report_path}", soft_wrap=True, highlight=False)
    return Comparison(folder, report_path, runs)


def _train_one(config: TrainingConfig, folder: Path, console: Console, show_progress: bool,
               baseline: Any = None, label: str | None = None) -> RunData:
    """One run, in `folder/<label>-<time>/` (label: the backend, and the variant in a grid); a failure is
    recorded, not raised."""
    backend = config.backend
    label = label or backend
    run_name = re.sub(r"[^\w.=-]+", "-", label)
    config.training.output_dir = str(folder)
    config.training.run_name = run_name
    if config.logging.trackers:  # the comparison's runs side by side: one group, one MLflow store
        config.logging.group = config.logging.group or folder.name
        if "mlflow" in config.logging.trackers and config.logging.mlflow.tracking_uri is None:
            config.logging.mlflow.tracking_uri = f"sqlite:///{folder.resolve() / 'mlflow.db'}"
    try:
        summary = run_sync(config, console=console, show_progress=show_progress, evaluation_baseline=baseline)
    except RetrainError as exc:
        console.print(f"[red]{label} failed:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        run_dir = _run_dir_of(folder, run_name)
        if run_dir is None:  # failed before its run directory existed
            return RunData(label, folder / run_name, backend, [], {"status": "failed"}, error=str(exc))
        failed = load_run(run_dir, label=label)
        failed.error = str(exc)
        return failed
    return load_run(summary["run_dir"], label=label)


def _settings_of(runs: list[RunData]) -> list[SettingsRow] | None:
    """The effective settings of existing runs, from each run's config.yaml (None for a single run, or when a
    config cannot be read any more: the report still shows the metrics)."""
    if len(runs) < 2:
        return None
    try:
        return compare_configs({run.label: TrainingConfig.from_yaml(run.path / "config.yaml") for run in runs})
    except RetrainError:
        return None


def render_comparison(console: Console, runs: list[RunData], title: str = "retrain compare") -> None:
    """The comparison tables on the console: the same rows as report.md (the held-out evaluation first)."""
    columns = evaluation_columns(runs)
    if columns:
        held_out = Table(title=f"{title}: held-out evaluation", title_justify="left")
        held_out.add_column("metric", overflow="fold")
        for name, _ in columns:
            held_out.add_column(name, justify="right")
        for name, cells in evaluation_rows(columns):
            held_out.add_row(name, *cells)
        console.print(held_out)
    table = Table(title=title, title_justify="left",
                  caption="a → b in the rows of verifiers, rewards and constraints: first step → last step",
                  caption_justify="left")
    table.add_column("metric", overflow="fold")
    for run in runs:
        table.add_column(run.label, justify="right")
    for name, cells in comparison_rows(runs, [run_statistics(run) for run in runs]):
        table.add_row(name, *cells)
    console.print(table)


def report(run_dirs: list[str | Path], output_dir: str | Path | None = None, console: Console | None = None) -> Path:
    """`retrain report`: the comparison report of runs that already exist. Written to `output_dir`,
    by default `<run dir>/report/` for one run and `report-<time>/` in the current folder for several."""
    from retrain.report import load_runs

    console = console or Console(stderr=True)
    runs = load_runs(run_dirs)
    if output_dir is None:
        output_dir = runs[0].path / "report" if len(runs) == 1 else Path(f"report-{time.strftime('%Y%m%d-%H%M%S')}")
    path = write_report(runs, output_dir, title="retrain report: " + ", ".join(run.label for run in runs),
                        settings=_settings_of(runs))
    render_comparison(console, runs, title="retrain report")
    console.print(f"report: {path}", soft_wrap=True, highlight=False)
    return path
