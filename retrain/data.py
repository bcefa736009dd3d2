"""Prompt data: inline prompts, or rows from a JSONL/JSON/parquet file or a Hugging Face dataset.

Every backend receives the same rows: `prompt` as chat messages, `answer` when the config names
an answer column, and every other column of the source (rewards can ask for any of them by name).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retrain.core.config import DataConfig
from retrain.core.errors import ConfigError, ConfigIssue


def _issue(field: str, message: str) -> ConfigError:
    return ConfigError([ConfigIssue(f"data.{field}", None, message)])


def _read_source(data: DataConfig) -> list[dict[str, Any]]:
    assert data.source is not None
    if data.source.startswith("hf:"):
        import datasets

        name = data.source[3:]
        try:
            return list(datasets.load_dataset(name, split=data.split))
        except Exception as exc:  # hub errors, unknown split, no network
            raise _issue("source", f"cannot load Hugging Face dataset '{name}' (split '{data.split}'): {exc}") from None
    try:
        return _read_file(Path(data.source).expanduser())
    except (OSError, RuntimeError, ValueError) as exc:  # unreadable, not UTF-8, not parquet, '~user' unknown
        problem = str(exc).rstrip(".")
        raise _issue("source", f"cannot read '{data.source}': {problem}; give a readable .jsonl, .json or .parquet "
                               "file (UTF-8 text for JSON)") from None


def _read_file(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise _issue("source", f"file '{path}' does not exist; give a .jsonl, .json or .parquet file, or 'hf:<name>'")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _issue("source", f"{path}:{number}: not valid JSON ({exc.msg}); fix that line") from None
            if not isinstance(row, dict):
                raise _issue("source", f"{path}:{number}: each line must be a JSON object, like {{\"prompt\": ...}}")
            rows.append(row)
        return rows
    if suffix == ".json":
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise _issue("source", f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); fix the file") from None
        if not isinstance(loaded, list) or not all(isinstance(r, dict) for r in loaded):
            raise _issue("source", f"{path}: a .json source must be a list of objects, like [{{\"prompt\": \"...\"}}]")
        return loaded
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise _issue("source", f"unsupported file type '{suffix}'; use .jsonl, .json or .parquet")


def check_source(data: DataConfig) -> None:
    """Read a local data source now, so that a missing file, a bad line or a missing column is reported
    before a run starts. 'hf:' datasets are left to the run: loading them may need the network."""
    if data.source is None or not data.source.startswith("hf:"):
        load_rows(data)


def load_rows(data: DataConfig) -> list[dict[str, Any]]:
    """The training rows, each with `prompt` as a list of chat messages."""
    if data.prompts is not None:
        raw: list[dict[str, Any]] = [{data.prompt_column: p} for p in data.prompts]
    else:
        raw = _read_source(data)
    if not raw:
        raise _issue("source", "the data source has no rows")
    rows = []
    for index, row in enumerate(raw):
        if data.prompt_column not in row:
            raise _issue("prompt_column", f"row {index} has no column '{data.prompt_column}' "
                                          f"(columns: {sorted(row)}); set data.prompt_column")
        if data.answer_column is not None and data.answer_column not in row:
            raise _issue("answer_column", f"row {index} has no column '{data.answer_column}' "
                                          f"(columns: {sorted(row)}); set data.answer_column")
        prompt = row[data.prompt_column]
        if isinstance(prompt, str):
            messages = [{"role": "user", "content": prompt}]
        elif isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m for m in prompt):
            messages = list(prompt)
        else:
            raise _issue("prompt_column", f"row {index}: '{data.prompt_column}' must be text or chat messages")
        if data.system_prompt:
            messages = [{"role": "system", "content": data.system_prompt}, *messages]
        out = {k: v for k, v in row.items() if k not in (data.prompt_column,)}
        out["prompt"] = messages
        if data.answer_column is not None:
            out["answer"] = row[data.answer_column]
        rows.append(out)
    return rows
