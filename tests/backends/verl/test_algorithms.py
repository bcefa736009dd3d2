"""The algorithms that change verl's trainer flow (the advantage estimator, KL in the reward, the critic worker,
the replay buffer's dynamic sampling) train a few steps on `retrain:tiny` through verl's own trainer, on one
Ray cluster the module starts and stops.

gspo, cispo, sapo and dr_grpo change only the actor's loss function: they run through verl's own actor worker
in the step-parity harness (tests/parity/test_step.py, slow), which also compares the trained weights with
TRL's, at a tenth of a full run's minute. (Their full runs pass too: `RETRAIN_ALL_ALGORITHMS=1`.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from retrain.core.run import run_sync
from tests.algorithm_runs import algorithm_config, check_trained
from tests.ray_cluster import shared_cluster  # noqa: F401  (the `cluster` fixture: one per module)
from tests.tiny_runs import QUIET

VERL_ALGORITHMS = ["rloo", "reinforce_pp", "reinforce_pp_baseline", "ppo"]
if os.environ.get("RETRAIN_ALL_ALGORITHMS") == "1":  # a minute each; CI runs the list above
    VERL_ALGORITHMS += ["dr_grpo", "gspo", "cispo", "sapo"]


def on(cluster: str, config: dict) -> dict:
    return {**config, "resources": {"ray_address": cluster}}


@pytest.mark.slow
@pytest.mark.parametrize("name", VERL_ALGORITHMS)
def test_each_algorithm_trains_on_verl(tmp_path, cluster, name):
    records = check_trained(run_sync(on(cluster, algorithm_config(tmp_path, "verl", name)), console=QUIET))
    if name == "ppo":  # the critic trained beside the policy
        assert all(r["critic/value_loss"] > 0 for r in records)


@pytest.mark.slow
def test_dapo_drops_the_groups_without_signal_and_trains_on_full_batches(tmp_path, cluster):
    """Half the rows give every completion the same reward: verl's dynamic sampling drops those groups and
    refills; the metrics say how many, and the step's reward metrics are over the groups it trained on."""
    config = on(cluster, algorithm_config(tmp_path, "verl", "dapo", max_steps=3, overlong_buffer=2))
    records = check_trained(run_sync(config, console=QUIET), steps=3)
    assert all(r["dynamic_sampling/groups_kept"] == 2 for r in records)
    assert sum(r["dynamic_sampling/groups_dropped"] for r in records) > 0
    assert all(r["reward/zero_spread_groups"] == 0.0 for r in records)  # every group trained on has signal
    assert all(r["rewards/overlong/mean"] == pytest.approx(-1.0) for r in records)


@pytest.mark.slow
def test_importance_sampling_correction_runs_on_rollouts_with_the_updated_weights(tmp_path, cluster):
    """rollout.importance_sampling_correction needs the rollout's own log-probs (verl skipped the correction
    silently without them). They also show that retrain's CPU rollout server generates with the weights the
    actor has just trained: at step 2 the rollout's and the actor's log-perplexity of the same tokens agree.
    Measured: 7e-7 apart at step 2; with the server's weight loading switched off, 0.032 apart (and the
    rollout's and the actor's token probabilities correlate at 0.12 instead of 1.0)."""
    config = on(cluster, algorithm_config(tmp_path, "verl", "grpo", learning_rate=1e-2))
    config["rollout"] = {"importance_sampling_correction": True}
    summary = run_sync(config, console=QUIET)
    check_trained(summary)
    raw = [json.loads(line) for line in (Path(summary["run_dir"]) / "verl" / "metrics.raw.jsonl").open()]
    first, second = (entry["data"] for entry in raw)
    assert "rollout_corr/rollout_is_mean" in first and "rollout_corr/rollout_is_mean" in second
    assert second["rollout_corr/log_ppl_abs_diff"] < 1e-4
    assert second["training/rollout_actor_probs_pearson_corr"] > 0.999
