"""What the per-algorithm training tests share: a tiny run whose rewards spread within some groups and agree
within others (so that dynamic sampling has groups to drop), and the checks every algorithm's run passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tiny_runs import metrics

# Two prompts whose `length` reward is 1.0 for any completion (min_words 0: no signal), two whose reward
# depends on the completion (min_words 9: random 16-token text is sometimes that long, sometimes not).
ROWS = [
    {"prompt": "Say anything.", "min_words": 0},
    {"prompt": "Write a long sentence about the sea.", "min_words": 9},
    {"prompt": "Say something else.", "min_words": 0},
    {"prompt": "Write a long sentence about a forest.", "min_words": 9},
]


def algorithm_config(tmp_path: Path, backend: str, name: str, **algorithm) -> dict:
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return {
        "backend": backend,
        "model": "retrain:tiny",
        "data": {"source": str(data)},
        "rewards": {"functions": [{"function": "length"}]},  # min_words comes from each row's column
        "algorithm": {"name": name, "group_size": 4, "prompts_per_step": 2, "max_steps": 2,
                      "max_completion_tokens": 16, "learning_rate": 1e-3, **algorithm},
        "training": {"output_dir": str(tmp_path / "runs"), "samples_per_step": 8, "save_every": 2},
    }


def check_trained(summary: dict, steps: int = 2) -> list[dict]:
    """The run completed every step with the neutral metrics, its model is saved, and the reward components add
    up to the step's reward (the breakdowns are those of the completions the step trained on)."""
    assert summary["status"] == "completed", summary
    run_dir = Path(summary["run_dir"])
    records = metrics(run_dir)
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    for record in records:
        assert "loss" in record and "reward/mean" in record, sorted(record)
        components = sum(value for key, value in record.items()
                         if key.startswith("rewards/") and key.endswith("/mean"))
        assert components == pytest.approx(record["reward/mean"], abs=1e-5), record
    assert (run_dir / "model" / "config.json").exists()
    return records
