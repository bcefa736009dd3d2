"""Generated task sets: rows from reasoning-gym's procedural, seeded, verifiable tasks (the `reasoning-gym` extra).

`data.reasoning_gym` generates the training rows and `evaluation.reasoning_gym` a held-out set (the same
tasks with another seed; a held-out row whose question is also a training row is left out, so the two
never overlap). Each row has `prompt` (the task's question), `answer` (its reference answer, for the
answer rewards), `task` (the task's name) and `reasoning_gym_entry`: the whole reasoning-gym entry as a
JSON string (nested mixed-task metadata does not survive `datasets.Dataset.from_list`), which the
built-in reward `reasoning_gym` hands to the task's own `score_answer`.
"""

from __future__ import annotations

import json
from typing import Any

from retrain.core.config.data import ReasoningGymTask
from retrain.core.errors import ConfigError, ConfigIssue

ENTRY_COLUMN = "reasoning_gym_entry"
EXTRA = "pip install 'retrain[reasoning-gym]'"


def _issue(field: str, message: str) -> ConfigError:
    return ConfigError([ConfigIssue(field, None, message)])


def _library(field: str) -> Any:
    try:
        import reasoning_gym
    except ImportError:
        raise _issue(field, f"reasoning-gym is not installed here: {EXTRA}") from None
    return reasoning_gym


def tasks_of(tasks: list[ReasoningGymTask | str]) -> list[ReasoningGymTask]:
    return [task if isinstance(task, ReasoningGymTask) else ReasoningGymTask(name=task) for task in tasks]


def generate(tasks: list[ReasoningGymTask], size: int, seed: int, field: str) -> list[dict[str, Any]]:
    """`size` rows of the tasks (mixed by weight when several), as retrain rows; errors name `field`."""
    rg = _library(field)
    from reasoning_gym.factory import DATASETS

    for index, task in enumerate(tasks):
        if task.name not in DATASETS:
            import difflib

            close = difflib.get_close_matches(task.name, list(DATASETS), n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"{len(DATASETS)} tasks: see reasoning-gym's list"
            raise _issue(f"{field}.tasks[{index}].name", f"reasoning-gym has no task '{task.name}'; {hint}")
    try:
        if len(tasks) == 1:
            dataset = rg.create_dataset(tasks[0].name, seed=seed, size=size, **tasks[0].config)
        else:
            from reasoning_gym.composite import DatasetSpec

            specs = [DatasetSpec(task.name, task.weight, dict(task.config)) for task in tasks]
            dataset = rg.create_dataset("composite", seed=seed, size=size, datasets=specs)
        entries = list(dataset)
    except (TypeError, ValueError, AssertionError, KeyError) as exc:  # a setting the task does not have, or a bad value
        names = ", ".join(task.name for task in tasks)
        raise _issue(f"{field}.tasks", f"reasoning-gym cannot make {names} with these settings: "
                                       f"{type(exc).__name__}: {exc}; check each task's config") from None
    return [{"prompt": entry["question"], "answer": str(entry["answer"]),
             "task": entry.get("metadata", {}).get("source_dataset", tasks[0].name),
             ENTRY_COLUMN: json.dumps(entry, default=str)} for entry in entries]


def held_out(training: list[dict[str, Any]] | None, tasks: list[ReasoningGymTask], size: int, seed: int,
             field: str) -> tuple[list[dict[str, Any]], int]:
    """The held-out rows and how many were left out because the training rows ask the same question."""
    rows = generate(tasks, size, seed, field)
    if not training:
        return rows, 0
    seen = {json.loads(row[ENTRY_COLUMN])["question"] for row in training}
    kept = [row for row in rows if row["prompt"] not in seen]
    if not kept:
        raise _issue(field, f"every held-out row is also a training row ({size} generated); these tasks have too few "
                            "distinct questions at this difficulty: raise it, or evaluate on fewer training rows")
    return kept, len(rows) - len(kept)
