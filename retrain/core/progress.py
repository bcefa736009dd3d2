"""What a person sees while a run trains, and the summary at the end."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from retrain.core.metrics import SCORE_PREFIXES


class ProgressReporter:
    """A progress bar (step, reward, time left) on a terminal; one line per step elsewhere (logs, CI)."""

    def __init__(self, console: Console | None = None, enabled: bool = True, max_completion_tokens: int | None = None):
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: Any = None
        self.total = 0
        self.max_completion_tokens = max_completion_tokens  # to say when every completion was cut off at it
        self._warned: set[str] = set()

    def start(self, total_steps: int, completed: int = 0, description: str = "training") -> None:
        self.total = total_steps
        if not self.enabled:
            return
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("reward {task.fields[reward]}"),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.start()
            self._task = self._progress.add_task(description, total=total_steps, completed=completed, reward="-")
        else:
            self.console.print(f"{description}: {total_steps} steps (starting at {completed})")

    def step(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        reward = record.get("reward/mean")
        reward_text = "-" if reward is None or (isinstance(reward, float) and math.isnan(reward)) else f"{reward:.3f}"
        if self._progress is not None:
            self._progress.update(self._task, completed=record["step"], reward=reward_text)
        else:
            seconds = record.get("step_seconds")
            timing = f"  {seconds:.1f}s/step" if isinstance(seconds, float) else ""
            self.console.print(f"step {record['step']}/{self.total}  reward {reward_text}{timing}")
        for key, message in self.warnings(record):
            if key not in self._warned:  # each kind once: a person reads the first, not the hundredth
                self._warned.add(key)
                self.console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)

    def note(self, message: str) -> None:
        """Something about the run a person should know before it trains (printed once, as a warning)."""
        if self.enabled:
            self.console.print(f"[yellow]note:[/] {escape(message)}", soft_wrap=True)

    def warnings(self, record: dict[str, Any]) -> list[tuple[str, str]]:
        """What in a step's record a person should know about: rules that failed, and completions that
        were all empty or all cut off at the length limit (training on them teaches little)."""
        found = []
        step = record.get("step")
        for key, value in record.items():
            if key.startswith("errors/") and isinstance(value, int | float) and value > 0:
                name = key.split("/")[1]
                found.append((key, f"'{name}' failed on {value:g} completion(s) at step {step}; they were scored "
                                   "rewards.error_penalty (the reasons are in samples/)"))
        flat = record.get("reward/zero_spread_groups")
        if isinstance(flat, int | float) and flat >= 1.0:
            found.append(("no_signal", f"no learning signal at step {step}: in every group all completions got the "
                                       "same reward, so every advantage is 0 and the step learned nothing; give "
                                       "partial credit (a format reward), easier prompts, or more samples per prompt "
                                       "(algorithm.group_size, temperature)"))
        length = record.get("completion_length/mean")
        if isinstance(length, int | float) and not math.isnan(length):
            if length == 0:
                found.append(("empty", f"every completion at step {step} was empty; check the prompts and the chat "
                                       "template, or penalise empty answers"))
            elif self.max_completion_tokens and length >= self.max_completion_tokens:
                found.append(("truncated", f"every completion at step {step} was cut off at "
                                           f"algorithm.max_completion_tokens ({self.max_completion_tokens}); raise it "
                                           "or ask for shorter answers"))
        return found

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _first_last(records: list[dict[str, Any]], key: str) -> tuple[float | None, float | None]:
    values = [r[key] for r in records if isinstance(r.get(key), int | float)]
    return (values[0], values[-1]) if values else (None, None)


def summarize_run(records: list[dict[str, Any]]) -> dict[str, Any]:
    """First vs last value of the reward and of each component, over the run's metrics."""
    keys = ["reward/mean"]
    keys += sorted({k for r in records for k in r if k.startswith(SCORE_PREFIXES)})
    keys += ["env/turns/mean", "env/tool_calls/mean", "env/tool_error_rate", "completion_length/mean", "kl"]
    table = {}
    for key in keys:
        first, last = _first_last(records, key)
        if first is not None:
            table[key] = {"first": first, "last": last}
    return table


def render_summary(console: Console, summary: dict[str, Any]) -> None:
    table = Table(title=f"retrain run: {summary['status']}", title_justify="left")
    table.add_column("metric")
    table.add_column("first step", justify="right")
    table.add_column("last step", justify="right")
    for key, values in summary["metrics"].items():
        table.add_row(key, f"{values['first']:.4g}", f"{values['last']:.4g}")
    console.print(table)
    minutes, seconds = divmod(int(summary["seconds"]), 60)
    console.print(f"steps: {summary['steps']}   time: {minutes}m{seconds:02d}s   backend: {summary['backend']}")
    console.print(f"outputs: {summary['run_dir']}", soft_wrap=True, highlight=False)
    if summary.get("model_dir"):
        console.print(f"model:   {summary['model_dir']}", soft_wrap=True, highlight=False)
