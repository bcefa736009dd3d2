"""Every algorithm TRL has trains a few steps on `retrain:tiny` through TRL's own trainer (GRPOTrainer, or
RLOOTrainer for rloo); the rest are validation errors naming verl (tests/parity/test_algorithms.py)."""

from __future__ import annotations

import pytest

from retrain.core.run import run_sync
from tests.algorithm_runs import algorithm_config, check_trained
from tests.tiny_runs import QUIET

# (name, options): dapo without dynamic sampling, which TRL does not have.
TRL_ALGORITHMS = [("dr_grpo", {}), ("dapo", {"dynamic_sampling": False}), ("gspo", {}), ("rloo", {}),
                  ("cispo", {}), ("sapo", {})]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "options"), TRL_ALGORITHMS, ids=[name for name, _ in TRL_ALGORITHMS])
def test_each_algorithm_trains_on_trl(tmp_path, name, options):
    records = check_trained(run_sync(algorithm_config(tmp_path, "trl", name, **options), console=QUIET))
    if name == "dapo":  # the overlong punishment is a reward component: every 16-token completion is cut off
        assert all(r["rewards/overlong/mean"] == pytest.approx(-1.0) for r in records)
