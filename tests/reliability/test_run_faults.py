"""Rewards that raise, return NaN/inf, return the wrong number of values or hang, on both backends.

`rewards.on_error: penalize`: the run completes, each failure is scored `error_penalty` and counted
under `errors/<name>/count`. `rewards.on_error: fail` (the default): the run stops at the first one,
naming the rule and the sample, with the run directory kept (status 'failed').
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from retrain.core.errors import RetrainError
from retrain.core.metrics import read_jsonl
from retrain.core.run import run_sync
from tests.tiny_runs import QUIET, tiny_config

FAULTS = ["raises_sometimes", "nan_sometimes", "wrong_length", "hangs_sometimes"]


def fault_config(tmp_path: Path, backend: str, on_error: str, faults: list[str]) -> dict:
    config = tiny_config(tmp_path, backend=backend)
    config["rewards"] = {
        "functions": [{"function": f"retrain.testing.faults:{name}", "name": name} for name in faults],
        "on_error": on_error, "error_penalty": -5.0, "timeout_seconds": 2.0,
    }
    config["algorithm"]["max_steps"] = 1
    return config


def check_penalized(summary: dict) -> None:
    assert summary["status"] == "completed"
    run_dir = Path(summary["run_dir"])
    (record,) = read_jsonl(run_dir / "metrics.jsonl")
    for name in FAULTS:
        assert record[f"errors/{name}/count"] > 0, name
    assert math.isfinite(record["reward/mean"])
    samples = [json.loads(line) for path in (run_dir / "samples").iterdir() for line in path.open()]
    reasons = " ".join(error for sample in samples for error in sample["breakdown"]["errors"].values())
    assert "this reward fails on purpose" in reasons and "returned nan" in reasons
    assert "wrong length" in reasons and "timed out after 2s" in reasons
    assert all(sample["breakdown"]["total"] == -5.0 for sample in samples)  # wrong_length fails every one


def check_failed(tmp_path: Path, backend: str) -> None:
    with pytest.raises(RetrainError) as info:
        run_sync(fault_config(tmp_path, backend, "fail", ["nan_sometimes"]), console=QUIET)
    message = str(info.value)
    assert "nan_sometimes" in message and "returned nan" in message and "on_error: penalize" in message
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"


def test_trl_penalizes_and_counts_every_kind_of_faulty_reward(tmp_path):
    check_penalized(run_sync(fault_config(tmp_path, "trl", "penalize", FAULTS), console=QUIET))


def test_trl_fails_fast_naming_the_reward(tmp_path):
    check_failed(tmp_path, "trl")


@pytest.mark.slow  # verl's trainer on a local Ray, twice (~4 minutes)
def test_verl_penalizes_and_fails_like_trl(tmp_path):
    check_penalized(run_sync(fault_config(tmp_path / "a", "verl", "penalize", FAULTS), console=QUIET))
    check_failed(tmp_path / "b", "verl")
