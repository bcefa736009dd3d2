"""What the backend training tests share: one tiny cat-poem run config, and the bridge check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from retrain.config_models import TrainingConfig
from retrain.core.rollout import Message, Rollout
from retrain.core.scoring import Scorer

QUIET = Console(file=open("/dev/null", "w"))  # noqa: SIM115
BATCH = 8  # 2 prompts x 4 completions


def tiny_config(tmp_path: Path, backend: str = "trl", penalty: float = -1.0, **overrides) -> dict:
    base = {
        "backend": backend,
        "model_to_train": "retrain:tiny",
        "example_prompts": ["Compose a joyful feline lyric.", "Draft a cheerful ode to a purring companion."],
        "verifiers": [{"rule": "mentions_a_cat"}],
        "rewards": {"goal": "Poem is happy, creative, and about a cat.",
                    "constraints": [{"type": "penalize_text_containing", "text_to_avoid": "s",
                                     "penalty_score": penalty}]},
        "algorithm": {"group_size": 4, "prompts_per_step": 2, "max_steps": 2, "max_completion_tokens": 16,
                      "learning_rate": 1e-3},
        "training": {"output_dir": str(tmp_path / "runs"), "samples_per_step": BATCH, "save_every": 1},
    }
    base.update(overrides)
    return base


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_backend_trained_on_the_scorer_breakdown(run_dir: Path) -> None:
    """Each step's logged reward is the mean of the Scorer totals of its whole batch, and a fresh
    Scorer gives every saved completion the same total again."""
    scorer = Scorer.from_config(TrainingConfig.from_yaml(run_dir / "config.yaml"))
    for record in metrics(run_dir):
        lines = (run_dir / "samples" / f"step_{record['step']:06d}.jsonl").read_text().splitlines()
        samples = [json.loads(line) for line in lines]
        assert len(samples) == BATCH
        totals = [s["breakdown"]["total"] for s in samples]
        assert record["reward/mean"] == pytest.approx(sum(totals) / len(totals), rel=1e-5)
        rescored = scorer.score_sync([
            Rollout([Message("user", s["prompt"])], [Message("assistant", s["completion"])]) for s in samples
        ])
        assert [b.total for b in rescored] == pytest.approx(totals, abs=1e-5)


def broken_reward(completion: str) -> float:
    """A reward with a bug, for the failure tests."""
    raise ValueError("this reward is broken on purpose")
