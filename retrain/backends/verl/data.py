"""Prompt rows -> the parquet file verl's RL dataset reads.

Each row: `prompt` (chat messages), `data_source` ("retrain"), `reward_model.ground_truth` (the
answer column, or ""), and `extra_info` with the row index and every other column as JSON, so the
Scorer sees the same dataset columns on verl as on TRL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retrain.core.rollout import Message

DATA_SOURCE = "retrain"


def verl_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    converted = []
    for index, row in enumerate(rows):
        columns = {k: v for k, v in row.items() if k != "prompt"}
        answer = columns.get("answer")
        converted.append({
            "prompt": row["prompt"],
            "data_source": DATA_SOURCE,
            "reward_model": {"style": "rule", "ground_truth": "" if answer is None else str(answer)},
            "extra_info": {
                "index": index,
                "prompt": next((m["content"] for m in reversed(row["prompt"]) if m["role"] == "user"), ""),
                "messages": json.dumps(row["prompt"], default=str),
                "columns": json.dumps(columns, default=str),
            },
        })
    return converted


def columns_from_extra_info(extra_info: dict[str, Any] | None) -> dict[str, Any]:
    """The dataset columns a row carried, as the Scorer's rollout metadata."""
    if not extra_info or "columns" not in extra_info:
        return {}
    return json.loads(extra_info["columns"])


def messages_from_extra_info(extra_info: dict[str, Any]) -> list[Message]:
    """Every prompt message of the row (system prompt and earlier turns included), as the Scorer sees them."""
    if "messages" in extra_info:
        return [Message(m["role"], m.get("content") or "") for m in json.loads(extra_info["messages"])]
    return [Message("user", str(extra_info.get("prompt", "")))]


def write_parquet(rows: list[dict[str, Any]], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(verl_rows(rows)), path)
    return path
