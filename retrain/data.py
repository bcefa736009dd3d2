"""Prompt data: inline prompts, or rows from a JSONL/JSON/parquet file or a Hugging Face dataset.

Every backend receives the same rows: `prompt` as chat messages, `answer` when the config names
an answer column, and every other column of the source (rewards can ask for any of them by name).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.core.config import DataConfig
from retrain.core.errors import ConfigError, ConfigIssue

if TYPE_CHECKING:
    from retrain.core.config import TrainingConfig
    from retrain.core.progress import ProgressReporter


def _issue(field: str, message: str) -> ConfigError:
    return ConfigError([ConfigIssue(f"data.{field}", None, message)])


def _read_source(data: DataConfig, source: str, field: str) -> list[dict[str, Any]]:
    if source.startswith("hf:"):
        import datasets

        name = source[3:]
        try:
            return list(datasets.load_dataset(name, split=data.split))
        except Exception as exc:  # hub errors, unknown split, no network
            raise _issue(field, f"cannot load Hugging Face dataset '{name}' (split '{data.split}'): {exc}") from None
    try:
        return _read_file(Path(source).expanduser(), field)
    except (OSError, RuntimeError, ValueError) as exc:  # unreadable, not UTF-8, not parquet, '~user' unknown
        problem = str(exc).rstrip(".")
        raise _issue(field, f"cannot read '{source}': {problem}; give a readable .jsonl, .json or .parquet "
                            "file (UTF-8 text for JSON)") from None


def _read_file(path: Path, field: str) -> list[dict[str, Any]]:
    if not path.exists():
        raise _issue(field, f"file '{path}' does not exist; give a .jsonl, .json or .parquet file, or 'hf:<name>'")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _issue(field, f"{path}:{number}: not valid JSON ({exc.msg}); fix that line") from None
            if not isinstance(row, dict):
                raise _issue(field, f"{path}:{number}: each line must be a JSON object, like {{\"prompt\": ...}}")
            rows.append(row)
        return rows
    if suffix == ".json":
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise _issue(field, f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); fix the file") from None
        if not isinstance(loaded, list) or not all(isinstance(r, dict) for r in loaded):
            raise _issue(field, f"{path}: a .json source must be a list of objects, like [{{\"prompt\": \"...\"}}]")
        return loaded
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise _issue(field, f"unsupported file type '{suffix}'; use .jsonl, .json or .parquet")


_MISSING = object()


def _column(row: dict[str, Any], name: str) -> Any:
    """A column's value; `a.b` reads key b of mapping column a (verl's datasets keep the answer in
    reward_model.ground_truth)."""
    if name in row:
        return row[name]
    value: Any = row
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def check_source(data: DataConfig) -> None:
    """Read a local data source now, so that a missing file, a bad line or a missing column is reported
    before a run starts. 'hf:' datasets are left to the run: loading them may need the network."""
    if not any(source.startswith("hf:") for source in data.sources):
        load_rows(data)


def check_evaluation_source(config: TrainingConfig) -> None:
    """The held-out set's local files, read now (as `check_source`)."""
    if config.evaluation is not None and not any(s.startswith("hf:") for s in config.evaluation.sources):
        from retrain.evaluation import eval_rows

        eval_rows(config)


def load_rows(data: DataConfig) -> list[dict[str, Any]]:
    """The training rows, each with `prompt` as a list of chat messages."""
    if data.reasoning_gym is not None:
        from retrain.task_sets import generate, tasks_of

        spec = data.reasoning_gym
        return as_chat_rows(generate(tasks_of(spec.tasks), spec.size, spec.seed, "data.reasoning_gym"), data,
                            "reasoning_gym")
    if data.prompts is not None:
        raw: list[tuple[str, dict[str, Any]]] = [("prompts", {data.prompt_column: p}) for p in data.prompts]
    else:
        raw = []
        for i, source in enumerate(data.sources):
            field = "source" if isinstance(data.source, str) else f"source[{i}]"
            found = _read_source(data, source, field)
            if not found:
                raise _issue(field, f"the data source has no rows ('{source}')")
            raw += [(source, row) for row in found]
    rows = []
    for index, (source, row) in enumerate(raw):
        if data.prompt_column not in row:
            raise _issue("prompt_column", f"row {index} has no column '{data.prompt_column}' "
                                          f"(columns: {sorted(row)}); set data.prompt_column")
        if data.answer_column is not None and _column(row, data.answer_column) is _MISSING:
            raise _issue("answer_column", f"row {index} has no column '{data.answer_column}' "
                                          f"(columns: {sorted(row)}); set data.answer_column (a dotted name "
                                          "reads inside a mapping column, e.g. reward_model.ground_truth)")
        prompt = row[data.prompt_column]
        if isinstance(prompt, str):
            messages = [{"role": "user", "content": prompt}]
        elif isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m for m in prompt):
            messages = list(prompt)
        else:
            raise _issue("prompt_column", f"row {index}: '{data.prompt_column}' must be text or chat messages")
        messages = _with_system_prompt(messages, data, index, source)
        out = {k: v for k, v in row.items() if k not in (data.prompt_column,)}
        out["prompt"] = messages
        if data.answer_column is not None:
            out["answer"] = _column(row, data.answer_column)
        rows.append(out)
    return rows


def as_chat_rows(rows: list[dict[str, Any]], data: DataConfig, source: str) -> list[dict[str, Any]]:
    """Generated rows (`prompt` as text) with `prompt` as chat messages, after data.system_prompt."""
    return [{**row, "prompt": _with_system_prompt([{"role": "user", "content": row["prompt"]}], data, index, source)}
            for index, row in enumerate(rows)]


def _with_system_prompt(messages: list[dict[str, Any]], data: DataConfig, index: int, source: str
                        ) -> list[dict[str, Any]]:
    if not data.system_prompt:
        return messages
    if messages and messages[0].get("role") == "system":
        raise _issue("system_prompt", f"row {index} ({source}) starts with its own system message; remove "
                                      "data.system_prompt, or the rows' system messages")
    return [{"role": "system", "content": data.system_prompt}, *messages]


def step_order(rows: list[dict[str, Any]], seed: int, prompts_per_step: int, steps: int) -> list[dict[str, Any]]:
    """The prompts in the order the steps take them, prompts_per_step at a time: epochs of the rows, each
    shuffled with `seed`, one after another. Every backend reads this list in order (their own samplers'
    shuffling off), so the same seed gives the same prompts at the same step on TRL and on verl."""
    import random

    rng = random.Random(seed)
    needed = prompts_per_step * steps
    ordered: list[dict[str, Any]] = []
    while len(ordered) < needed:
        epoch = list(rows)
        rng.shuffle(epoch)
        ordered += epoch
    return ordered[:needed]


def prompt_token_counts(rows: list[dict[str, Any]], tokenizer: Any, chat_template_kwargs: dict[str, Any]) -> list[int]:
    """Each row's prompt length in tokens, after the chat template with the generation prompt (what both
    backends feed the model)."""
    return [
        len(tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False,
                                          **chat_template_kwargs))
        for row in rows
    ]


def limit_prompt_length(
    rows: list[dict[str, Any]], data: DataConfig, tokenizer: Any
) -> tuple[list[dict[str, Any]], int, int]:
    """Apply data.max_prompt_tokens and data.overlong_prompts, the same way for every backend: (the rows kept,
    the longest kept prompt in tokens, how many were left out). No backend truncates a prompt."""
    counts = prompt_token_counts(rows, tokenizer, data.chat_template_kwargs)
    limit = data.max_prompt_tokens
    if limit is None:
        return rows, max(counts), 0
    over = [i for i, count in enumerate(counts) if count > limit]
    if over and data.overlong_prompts == "error":
        first = over[0]
        raise _issue("max_prompt_tokens", f"{len(over)} prompt(s) are longer than {limit} tokens, the first row "
                                          f"{first} ({counts[first]} tokens); raise data.max_prompt_tokens, or set "
                                          "data.overlong_prompts: filter to leave them out")
    skipped = set(over)
    kept = [row for i, row in enumerate(rows) if i not in skipped]
    if not kept:
        raise _issue("max_prompt_tokens", f"every prompt is longer than {limit} tokens; raise data.max_prompt_tokens")
    return kept, limit, len(over)


def training_rows(config: TrainingConfig, tokenizer: Any, progress: ProgressReporter | None = None
                  ) -> tuple[list[dict[str, Any]], int]:
    """The rows a run trains on, in step order, and the longest prompt in tokens: what every backend
    receives (see `limit_prompt_length` and `step_order`)."""
    rows = load_rows(config.data)
    kept, longest, left_out = limit_prompt_length(rows, config.data, tokenizer)
    if left_out and progress is not None:
        progress.note(f"{left_out} of {len(rows)} prompts are longer than data.max_prompt_tokens "
                      f"({config.data.max_prompt_tokens}) and were left out (data.overlong_prompts: filter)")
    algorithm = config.algorithm
    return step_order(kept, config.training.seed, algorithm.prompts_per_step, algorithm.max_steps), longest
