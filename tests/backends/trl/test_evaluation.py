"""Held-out evaluation around a TRL run, and `retrain eval` on what the run left: the same numbers through
every path (in the run, on the base model, on the run directory, on a checkpoint)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from retrain.compare import compare
from retrain.core.metrics import read_jsonl
from retrain.core.run import run_sync
from tests.tiny_runs import QUIET

ROOT = Path(__file__).parents[3]
HELD_OUT = ["Name a colour.", "Say hello.", "Describe the sea."]


def eval_config(tmp_path: Path) -> dict:
    return {
        "backend": "trl",
        "model": "retrain:tiny",
        "example_prompts": ["Write a sentence.", "Say something nice."],
        "rewards": {"functions": [{"function": "examples.letters:avoid_letters", "name": "rare_letters"}]},
        # a large learning rate at temperature 1: the two steps visibly change what the model writes
        "algorithm": {"group_size": 4, "prompts_per_step": 2, "max_steps": 2, "max_completion_tokens": 8,
                      "learning_rate": 0.05, "temperature": 1.0},
        "training": {"output_dir": str(tmp_path / "runs"), "save_every": 1, "samples_per_step": 0},
        "evaluation": {"prompts": HELD_OUT, "n": 4, "temperature": 1.0, "pass_at": [1, 2, 4], "every_steps": 1,
                       "max_completion_tokens": 8, "correct": {"rewards": {"rare_letters": -0.5}}},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("eval")
    config = eval_config(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))
    summary = run_sync(path, console=QUIET)
    return path, Path(summary["run_dir"]), summary


def by_step(run_dir: Path) -> dict[int, dict]:
    return {record["step"]: record for record in read_jsonl(run_dir / "eval.jsonl")}


def metrics_of(record: dict) -> dict:
    return {k: v for k, v in record.items() if k.startswith("eval/")}


def test_a_run_evaluates_the_baseline_every_checkpoint_and_the_final_model(trained):
    _, run_dir, summary = trained
    records = by_step(run_dir)
    assert sorted(records) == [0, 1, 2]
    assert [r["step"] for r in summary["evaluation"]] == [0, 1, 2]
    for record in records.values():
        assert record["prompts"] == 3 and record["n"] == 4 and record["weights_dtype"] == "float32"
        assert record["compute"] == "float32 on cpu"
        assert record["correct"] == "correct when rare_letters >= -0.5"
        for key in ("eval/reward/mean", "eval/rewards/rare_letters/mean", "eval/correct_rate", "eval/pass@1",
                    "eval/pass@2", "eval/pass@4", "eval/completion_length/mean"):
            assert key in record, key
        assert record["eval/pass@1"] <= record["eval/pass@2"] <= record["eval/pass@4"]
    samples = {step: read_jsonl(run_dir / "eval_samples" / f"step_{step:06d}.jsonl") for step in records}
    assert all(len(found) == 12 for found in samples.values())  # 3 prompts x 4, each with its breakdown
    assert {"prompt", "completion", "breakdown", "correct"} <= set(samples[2][0])
    # training changed the model, so the final model writes something else than the base model
    assert [s["completion"] for s in samples[0]] != [s["completion"] for s in samples[2]]


def test_retrain_eval_gives_the_same_numbers_on_the_base_model_the_run_and_a_checkpoint(trained, tmp_path):
    path, run_dir, _ = trained
    checkpoint = run_dir / "checkpoints" / "checkpoint-1"
    done = subprocess.run(
        [sys.executable, "-m", "retrain.cli", "eval", str(path), "--model", "retrain:tiny", "--model", str(run_dir),
         "--model", str(checkpoint), "--output-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "retrain eval" in done.stderr and "pass@4" in done.stderr
    (folder,) = tmp_path.glob("eval-config-*")
    base, final, step_1 = read_jsonl(folder / "eval.jsonl")
    in_run = by_step(run_dir)
    assert metrics_of(base) == metrics_of(in_run[0])
    assert metrics_of(final) == metrics_of(in_run[2])
    assert metrics_of(step_1) == metrics_of(in_run[1])
    assert (base["step"], final["step"], step_1["step"]) == (0, 2, 1)
    markdown = (folder / "eval.md").read_text()
    assert "| pass@1 |" in markdown and "unbiased estimator" in markdown


def test_retrain_eval_with_more_samples_is_checked_against_pass_at(trained):
    path, _, _ = trained
    done = subprocess.run([sys.executable, "-m", "retrain.cli", "eval", str(path), "--model", "retrain:tiny",
                           "--n", "2"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert "evaluation.pass_at" in done.stderr and "raise evaluation.n (now 2)" in done.stderr


def test_a_run_directory_without_a_final_model_names_its_checkpoints(trained, tmp_path):
    path, run_dir, _ = trained
    from retrain.core.run import load_config
    from retrain.evaluation import EvaluationError, evaluate

    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.yaml", "summary.json"):
        (broken / name).write_text((run_dir / name).read_text())
    with pytest.raises(EvaluationError, match="has no final model"):
        evaluate(load_config(path), broken)


def test_compare_evaluates_the_base_model_once_and_reports_the_held_out_table_first(tmp_path):
    config = eval_config(tmp_path)
    config["algorithm"]["max_steps"] = 1
    config["evaluation"]["every_steps"] = None
    result = compare(config, ["trl"], output_dir=tmp_path, console=QUIET, show_progress=False)
    assert result.failed == []
    (baseline,) = read_jsonl(result.output_dir / "eval.jsonl")
    (run,) = result.runs
    assert metrics_of(by_step(run.path)[0]) == metrics_of(baseline)
    markdown = (result.output_dir / "report.md").read_text()
    assert markdown.index("## Held-out evaluation") < markdown.index("## Training")
    assert "| metric | baseline (step 0) | trl (step 1) |" in markdown
    report = json.loads((result.output_dir / "report.json").read_text())
    assert [column["column"] for column in report["evaluation"]] == ["baseline (step 0)", "trl (step 1)"]
    assert "eval.png" in report["plots"] and (result.output_dir / "eval.png").is_file()
