"""Reports that put runs side by side: `report.md`, `report.json` and PNG plots.

`retrain compare` writes one after training a config on several backends; `retrain report RUN_DIR...`
makes the same from run directories that already exist. Everything comes from what each run
wrote (its neutral `metrics.jsonl`, `summary.json`, `config.yaml`, `native_config.txt`), so runs of
any backend, including third-party ones, compare the same way.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from retrain.core.errors import RetrainError
from retrain.core.metrics import SCORE_PREFIXES, read_jsonl
from retrain.core.settings import SettingsRow, render_markdown, undeclared

PLOTS = ("reward.png", "components.png", "completion_length.png", "step_time.png")
EVAL_PLOT = "eval.png"  # when a run evaluated its held-out set at two steps or more (the baseline counts)
# Reward is averaged over the last steps as well as read at the last one: a single step is noisy.
TAIL_STEPS = 5


class ReportError(RetrainError):
    """A folder that is not a run directory, or nothing to report."""


@dataclass
class RunData:
    """One run as a report sees it: what the run directory holds."""

    label: str
    path: Path
    backend: str
    records: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    native_config: str = ""
    error: str | None = None
    evals: list[dict[str, Any]] = field(default_factory=list)  # eval.jsonl: held-out evaluations, by step

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "unknown"))

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """The steps that logged `key`, and its values (null and non-numbers skipped)."""
        steps, values = [], []
        for record in self.records:
            value = record.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                steps.append(int(record["step"]))
                values.append(float(value))
        return steps, values


def load_run(path: str | Path, label: str | None = None) -> RunData:
    """Read a run directory; a folder that is not one is a ReportError naming it."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: not a folder; give a run directory (runs/<name>-<time>/)")
    if not (path / "config.yaml").exists() and not (path / "metrics.jsonl").exists():
        raise ReportError(f"{path}: not a run directory (no config.yaml or metrics.jsonl in it)")
    summary: dict[str, Any] = {}
    if (path / "summary.json").exists():
        try:
            summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            summary = {}  # a run killed while writing its summary: the metrics still tell the story
    config: dict[str, Any] = {}
    if (path / "config.yaml").exists():
        config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
    native = (path / "native_config.txt").read_text(encoding="utf-8") if (path / "native_config.txt").exists() else ""
    backend = str(summary.get("backend") or config.get("backend") or "unknown")
    records = sorted(read_jsonl(path / "metrics.jsonl"), key=lambda r: r.get("step", 0))
    evals = sorted(read_jsonl(path / "eval.jsonl"), key=lambda r: r.get("step") or 0)
    return RunData(label or backend, path, backend, records, summary, config, native, evals=evals)


def _unique_labels(runs: Sequence[RunData]) -> None:
    """Runs of the same backend are told apart by their folder names (or whole paths)."""
    backends = [run.backend for run in runs]
    names = [run.path.name for run in runs]
    for run in runs:
        if backends.count(run.backend) > 1:
            where = run.path.name if names.count(run.path.name) == 1 else str(run.path)
            run.label = f"{run.backend} ({where})"


def component_keys(runs: Sequence[RunData]) -> list[str]:
    """Every reward, verifier and constraint key any of the runs logged, sorted."""
    return sorted({key for run in runs for record in run.records for key in record if key.startswith(SCORE_PREFIXES)})


def load_runs(paths: Sequence[str | Path]) -> list[RunData]:
    runs = [load_run(path) for path in paths]
    _unique_labels(runs)
    return runs


# -- the numbers --------------------------------------------------------------------------------


def _last(values: list[float]) -> float | None:
    return values[-1] if values else None


def run_statistics(run: RunData) -> dict[str, Any]:
    """The numbers of the comparison table, from the run's neutral metrics. None where not logged."""
    steps, rewards = run.series("reward/mean")
    stats: dict[str, Any] = {
        "steps": int(run.records[-1]["step"]) if run.records else 0,
        "reward_first": rewards[0] if rewards else None,
        "reward_final": _last(rewards),
        "reward_final_tail_mean": statistics.fmean(rewards[-TAIL_STEPS:]) if rewards else None,
        "reward_best": max(rewards) if rewards else None,
        "reward_best_step": steps[rewards.index(max(rewards))] if rewards else None,
    }
    stats["components"] = {}
    for key in component_keys([run]):
        values = run.series(key)[1]
        stats["components"][key] = {"first": values[0] if values else None, "final": _last(values)}
    stats["kl_final"] = _last(run.series("kl")[1])
    stats["completion_length_final"] = _last(run.series("completion_length/mean")[1])
    seconds = run.series("step_seconds")[1]
    # The median: the first step carries compilation and warm-up, and checkpoint steps run long.
    stats["seconds_per_step"] = statistics.median(seconds) if seconds else None
    rates = run.series("tokens_per_second")[1]
    stats["tokens_per_second"] = statistics.median(rates) if rates else None
    memory = run.series("peak_memory_gb")[1]
    stats["peak_memory_gb"] = max(memory) if memory else None
    stats["wall_seconds"] = run.summary.get("seconds")
    return stats


# -- the held-out evaluation --------------------------------------------------------------------------


def evaluation_columns(runs: Sequence[RunData]) -> list[tuple[str, dict[str, Any]]]:
    """(column title, eval record): the baseline (step 0, the base model; the same for every run of one
    config), then each run's last evaluation. Empty when no run evaluated."""
    columns: list[tuple[str, dict[str, Any]]] = []
    baseline = next((r for run in runs for r in run.evals if r.get("step") == 0), None)
    if baseline is not None:
        columns.append(("baseline (step 0)", baseline))
    for run in runs:
        later = [r for r in run.evals if r.get("step") != 0]
        if later:
            columns.append((f"{run.label} (step {later[-1].get('step')})", later[-1]))
    return columns


def evaluation_rows(columns: Sequence[tuple[str, dict[str, Any]]]) -> list[tuple[str, list[str]]]:
    from retrain.evaluation import metric_names

    names = metric_names([record for _, record in columns])
    return [(name.removeprefix("eval/"), [_fmt(record.get(name)) for _, record in columns]) for name in names]


def _evaluation_markdown(runs: Sequence[RunData]) -> list[str]:
    columns = evaluation_columns(runs)
    if not columns:
        return []
    first = columns[0][1]
    lines = ["## Held-out evaluation", "", "| metric | " + " | ".join(title for title, _ in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in evaluation_rows(columns)]
    lines += ["", f"retrain's evaluator, the same for every backend: {first.get('prompts')} held-out prompts x "
              f"{first.get('n')} completions; {first.get('correct')}; pass@k by the unbiased estimator. Weights as "
              "stored: " + ", ".join(f"{title} {record.get('weights_dtype')}" for title, record in columns) + ".", ""]
    return lines


# -- the report ---------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def comparison_rows(runs: Sequence[RunData], stats: Sequence[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(metric, one cell per run) rows: the table of report.md and of the console."""
    rows: list[tuple[str, list[str]]] = [
        ("status", [run.status for run in runs]),
        ("steps", [_fmt(s["steps"]) for s in stats]),
        ("reward, first step", [_fmt(s["reward_first"]) for s in stats]),
        ("reward, last step", [_fmt(s["reward_final"]) for s in stats]),
        (f"reward, mean of last {TAIL_STEPS} steps", [_fmt(s["reward_final_tail_mean"]) for s in stats]),
        ("reward, best (step)", [
            "–" if s["reward_best"] is None else f"{_fmt(s['reward_best'])} ({s['reward_best_step']})" for s in stats
        ]),
    ]
    for key in component_keys(runs):  # cells: first step → last step
        cells = []
        for s in stats:
            values = s["components"].get(key)
            cells.append("–" if values is None else f"{_fmt(values['first'])} → {_fmt(values['final'])}")
        rows.append((key, cells))
    rows += [
        ("kl, last step", [_fmt(s["kl_final"]) for s in stats]),
        ("completion length, last step (tokens)", [_fmt(s["completion_length_final"]) for s in stats]),
        ("seconds per step (median)", [_fmt(s["seconds_per_step"]) for s in stats]),
        ("tokens per second (median)", [_fmt(s["tokens_per_second"]) for s in stats]),
        ("peak memory (GB)", [_fmt(s["peak_memory_gb"]) for s in stats]),
        ("wall time (s)", [_fmt(s["wall_seconds"]) for s in stats]),
    ]
    return rows


def _markdown(runs: Sequence[RunData], stats: Sequence[dict[str, Any]], plots: Sequence[str], title: str,
              settings: Sequence[SettingsRow] | None = None) -> str:
    lines = [f"# {title}", "", f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} by `retrain`.", ""]
    models = sorted({str(run.summary.get("model") or run.config.get("model", {}).get("name", "?")) for run in runs})
    lines += [f"Model: {', '.join(f'`{m}`' for m in models)}.", ""]
    evaluation = _evaluation_markdown(runs)
    if evaluation:  # the question a comparison answers first: which model is better on held-out prompts
        lines += [*evaluation, "## Training", ""]
    lines += ["| metric | " + " | ".join(run.label for run in runs) + " |",
              "|---|" + "---:|" * len(runs)]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in comparison_rows(runs, stats)]
    lines += ["", "Each value is read from the run's neutral `metrics.jsonl`; components (rewards/, verifiers/, "
              "constraints/) show first step → last step; – means the backend did not log the value.", ""]
    for plot in plots:
        lines += [f"![{plot.removesuffix('.png')}]({plot})", ""]
    if settings:
        labels = [run.label for run in runs]
        different = undeclared(settings)
        lines += ["## Effective settings", "",
                  "What each library applied, read back from its composed config (`retrain translate CONFIG "
                  "--backends ...`). " + ("**These runs did not train the same way**: the settings marked "
                                          "DIFFERENT differ, so a difference in results may come from them."
                                          if different else "They differ only where the libraries do (reasons "
                                          "below the table)."), "",
                  render_markdown(list(settings), labels), ""]
    for run, s in zip(runs, stats, strict=True):
        lines += [f"## {run.label}", "", "| | |", "|---|---|",
                  f"| run directory | `{run.path}` |", f"| backend | {run.backend} |", f"| status | {run.status} |",
                  f"| steps | {s['steps']} |"]
        if run.error:
            error = " ".join(run.error.split()).replace("|", "\\|")
            lines.append(f"| error | {error} |")
        lines += ["", "<details><summary>Native config (what the backend received)</summary>", "", "```",
                  run.native_config.strip() or "(not recorded)", "```", "", "</details>", ""]
    return "\n".join(lines)


def _plot_lines(ax: Any, runs: Sequence[RunData], key: str, band: str | None = None) -> bool:
    drawn = False
    for run in runs:
        steps, values = run.series(key)
        if not steps:
            continue
        (line,) = ax.plot(steps, values, marker="o" if len(steps) < 20 else None, markersize=3, label=run.label)
        if band is not None:
            band_steps, spread = run.series(band)
            spread_at = dict(zip(band_steps, spread, strict=True))
            pairs = [(s, v, spread_at[s]) for s, v in zip(steps, values, strict=True) if s in spread_at]
            if pairs:
                xs, ys, ds = zip(*pairs, strict=True)
                ax.fill_between(xs, [y - d for y, d in zip(ys, ds, strict=True)],
                                [y + d for y, d in zip(ys, ds, strict=True)], alpha=0.15, color=line.get_color())
        drawn = True
    return drawn


def write_plots(runs: Sequence[RunData], output_dir: Path) -> list[str]:
    """reward.png (mean ± std per run), components.png (one panel per reward, verifier and constraint),
    completion_length.png and step_time.png. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    written = []

    def save(fig: Any, ax: Any, name: str, xlabel: str, ylabel: str, title: str) -> None:
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(output_dir / name, dpi=110)
        written.append(name)

    def single(name: str, key: str, ylabel: str, title: str, band: str | None = None) -> None:
        fig, ax = plt.subplots(figsize=(7, 4))
        if _plot_lines(ax, runs, key, band):
            save(fig, ax, name, "step", ylabel, title)
        plt.close(fig)

    single("reward.png", "reward/mean", "reward (mean ± std over the step's completions)", "Reward", band="reward/std")
    components = component_keys(runs)
    if components:
        columns = min(3, len(components))
        rows = math.ceil(len(components) / columns)
        fig, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.2 * rows), squeeze=False)
        for ax, key in zip(axes.flat, components, strict=False):
            _plot_lines(ax, runs, key)
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(components):]:
            ax.set_visible(False)
        axes.flat[0].legend(fontsize=8)
        fig.suptitle("Reward components")
        fig.tight_layout()
        fig.savefig(output_dir / "components.png", dpi=110)
        written.append("components.png")
        plt.close(fig)
    single("completion_length.png", "completion_length/mean", "tokens (mean)", "Completion length")
    if any(len(run.evals) > 1 for run in runs):
        fig, ax = plt.subplots(figsize=(7, 4))
        for run in runs:
            points = [(r["step"], r["eval/reward/mean"]) for r in run.evals
                      if isinstance(r.get("step"), int) and isinstance(r.get("eval/reward/mean"), int | float)]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", markersize=4, label=run.label)
        save(fig, ax, EVAL_PLOT, "step (0: before training)", "held-out reward (mean)", "Held-out evaluation")
        plt.close(fig)
    single("step_time.png", "step_seconds", "seconds", "Step time")
    return written


def write_report(runs: Sequence[RunData], output_dir: str | Path, title: str = "retrain comparison",
                 settings: Sequence[SettingsRow] | None = None) -> Path:
    """Write report.md, report.json and the plots into `output_dir`; returns the report.md path. `settings`:
    the runs' effective settings side by side (`retrain.core.settings`), shown when given."""
    if not runs:
        raise ReportError("no runs to report on")
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    stats = [run_statistics(run) for run in runs]
    plots = write_plots(runs, output)
    report = {
        "title": title,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "runs": [
            {"label": run.label, "backend": run.backend, "run_dir": str(run.path), "status": run.status,
             "error": run.error, "model": run.summary.get("model"), "statistics": s,
             "native_config": run.native_config}
            for run, s in zip(runs, stats, strict=True)
        ],
        "plots": plots,
        "evaluation": [{"column": title, **record} for title, record in evaluation_columns(runs)],
        "effective_settings": [
            {"key": row.key, "values": row.values, "differs": row.differs, "declared": row.reason}
            for row in settings or []
        ],
    }
    (output / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    path = output / "report.md"
    path.write_text(_markdown(runs, stats, plots, title, settings) + "\n", encoding="utf-8")
    return path
