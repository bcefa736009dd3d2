"""examples/math.yaml as a user runs it: the answer column reaches math-verify on both backends.

retrain:tiny writes noise, so these check the plumbing (answers, the format verifier's reasons,
the reward names in metrics), not learning; docs/rewards.md and the issue note give SmolLM2's curve.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from retrain.config_models import TrainingConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "math.yaml"


def test_the_committed_problems_are_what_the_generator_makes():
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        from make_math_problems import make
    finally:
        sys.path.pop(0)
    rows = [json.loads(line) for line in (EXAMPLE.parent / "data" / "math_word_problems.jsonl").open()]
    assert rows == make(200, 0)
    assert all(row["answer"].lstrip("-").isdigit() for row in rows)


def run_example(tmp_path: Path, backend: str) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "retrain.cli", "run", str(EXAMPLE), "--backend", backend, "--model", "retrain:tiny",
         "--max-steps", "2", "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=EXAMPLE.parents[1],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    return run_dir


def check_run(run_dir: Path) -> None:
    config = TrainingConfig.from_yaml(run_dir / "config.yaml")
    assert config.data.answer_column == "answer"
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    assert [m["step"] for m in metrics] == [1, 2]
    for name in ("rewards/correct/mean", "rewards/length_penalty/mean", "verifiers/final_answer/pass_rate"):
        assert all(name in m for m in metrics), name
    samples = [json.loads(line) for path in sorted((run_dir / "samples").iterdir()) for line in path.open()]
    assert samples
    for sample in samples:
        breakdown = sample["breakdown"]
        assert not breakdown["errors"], breakdown["errors"]
        assert breakdown["rewards"]["correct"] in (0.0, 1.0)
        assert breakdown["verifiers"]["final_answer"]["reason"].startswith(("no final answer", "has final answer"))


def test_math_example_trains_on_trl(tmp_path):
    check_run(run_example(tmp_path, "trl"))


@pytest.mark.slow  # verl's trainer on a local Ray: ~2 minutes
def test_math_example_trains_on_verl(tmp_path):
    check_run(run_example(tmp_path, "verl"))
