"""Real verl training on CPU (verl's v1 trainer, Ray, FSDP2, the `hf` rollout) on retrain:tiny.

Each run starts and stops its own local Ray (about 50 s for 2 steps on 2 cores).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from retrain.config_models import TrainingConfig
from retrain.core.metrics import REQUIRED_KEYS
from retrain.core.rollout import Message, Rollout
from retrain.core.run import run_sync
from retrain.core.scoring import Scorer

QUIET = Console(file=open("/dev/null", "w"))  # noqa: SIM115


def verl_config(tmp_path: Path) -> dict:
    return {
        "backend": "verl",
        "model_to_train": "retrain:tiny",
        "example_prompts": ["Compose a joyful feline lyric.", "Draft a cheerful ode to a purring companion."],
        "verifiers": [{"rule": "mentions_a_cat"}],
        "rewards": {"goal": "Poem is happy, creative, and about a cat.",
                    "constraints": [{"type": "penalize_text_containing", "text_to_avoid": "s",
                                     "penalty_score": -100.0}]},
        "algorithm": {"group_size": 4, "prompts_per_step": 2, "max_steps": 2, "max_completion_tokens": 16,
                      "learning_rate": 1e-4},
        "training": {"output_dir": str(tmp_path / "runs"), "samples_per_step": 8, "save_every": 2},
    }


@pytest.fixture(scope="module")
def verl_run(tmp_path_factory) -> dict:
    return run_sync(verl_config(tmp_path_factory.mktemp("verl")), console=QUIET)


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_verl_trains_and_writes_neutral_metrics(verl_run):
    run_dir = Path(verl_run["run_dir"])
    assert verl_run["status"] == "completed" and verl_run["steps"] == 2
    assert [r["step"] for r in records(run_dir)] == [1, 2]
    for record in records(run_dir):
        assert set(REQUIRED_KEYS) <= set(record)
        assert {"rewards/goal/mean", "verifiers/mentions_a_cat/pass_rate",
                "constraints/penalize_text_containing/mean", "entropy", "grad_norm"} <= set(record)
        assert record["grad_norm"] > 0  # a real update happened
    assert (run_dir / "checkpoints" / "global_step_2" / "actor").is_dir()


def test_verl_trained_on_exactly_the_scorer_breakdown(verl_run):
    """verl's own critic/score/mean equals the mean of the Scorer totals of the step's completions,
    and a fresh Scorer gives each completion the same total again."""
    run_dir = Path(verl_run["run_dir"])
    scorer = Scorer.from_config(TrainingConfig.from_yaml(run_dir / "config.yaml"))
    for record in records(run_dir):
        lines = (run_dir / "samples" / f"step_{record['step']:06d}.jsonl").read_text().splitlines()
        samples = [json.loads(line) for line in lines]
        assert len(samples) == 8
        totals = [s["breakdown"]["total"] for s in samples]
        assert record["reward/mean"] == pytest.approx(sum(totals) / len(totals), rel=1e-5)
        rescored = scorer.score_sync([
            Rollout([Message("user", s["prompt"])], [Message("assistant", s["completion"])]) for s in samples
        ])
        assert [b.total for b in rescored] == pytest.approx(totals, abs=1e-5)


def test_verl_resumes_from_its_checkpoint(verl_run):
    run_dir = Path(verl_run["run_dir"])
    config = TrainingConfig.from_yaml(run_dir / "config.yaml")
    resumed = run_sync(config, resume=run_dir, max_steps=3, console=QUIET)
    assert resumed["status"] == "completed"
    assert [r["step"] for r in records(run_dir)] == [1, 2, 3]
    assert (run_dir / "checkpoints" / "global_step_3").is_dir()
