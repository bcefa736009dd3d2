"""Real verl training on CPU (verl's v1 trainer, Ray, FSDP2, the `hf` rollout) on retrain:tiny.

Each run starts and stops its own local Ray (about 50 s for 2 steps on 2 cores).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from retrain.config_models import TrainingConfig
from retrain.core.metrics import REQUIRED_KEYS
from retrain.core.run import run_sync
from tests.tiny_runs import QUIET, assert_backend_trained_on_the_scorer_breakdown, metrics, tiny_config


@pytest.fixture(scope="module")
def verl_run(tmp_path_factory) -> dict:
    config = tiny_config(tmp_path_factory.mktemp("verl"), backend="verl", penalty=-100.0)
    config["algorithm"]["learning_rate"] = 1e-4
    config["training"]["save_every"] = 2
    return run_sync(config, console=QUIET)


def test_verl_trains_and_writes_neutral_metrics(verl_run):
    run_dir = Path(verl_run["run_dir"])
    assert verl_run["status"] == "completed" and verl_run["steps"] == 2
    assert [r["step"] for r in metrics(run_dir)] == [1, 2]
    for record in metrics(run_dir):
        assert set(REQUIRED_KEYS) <= set(record)
        assert {"rewards/goal/mean", "verifiers/mentions_a_cat/pass_rate",
                "constraints/penalize_text_containing/mean", "entropy", "grad_norm"} <= set(record)
        assert record["grad_norm"] > 0  # a real update happened
    assert (run_dir / "checkpoints" / "global_step_2" / "actor").is_dir()


def test_verl_trained_on_exactly_the_scorer_breakdown(verl_run):
    """verl's own critic/score/mean is the mean of the Scorer totals of the step's batch."""
    assert_backend_trained_on_the_scorer_breakdown(Path(verl_run["run_dir"]))


def test_verl_resumes_from_its_checkpoint(verl_run):
    run_dir = Path(verl_run["run_dir"])
    config = TrainingConfig.from_yaml(run_dir / "config.yaml")
    resumed = run_sync(config, resume=run_dir, max_steps=3, console=QUIET)
    assert resumed["status"] == "completed"
    assert [r["step"] for r in metrics(run_dir)] == [1, 2, 3]
    assert (run_dir / "checkpoints" / "global_step_3").is_dir()
