"""The effective settings, side by side: every example (and every recipe) gives TRL and verl the same training,
apart from the declared differences; an undeclared difference is caught and named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from retrain.core.settings import DECLARED, side_by_side, undeclared

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "examples").glob("*.yaml")) + sorted((ROOT / "examples" / "recipes").glob("*.yaml"))


# examples/openenv_grid.yaml needs OpenEnv, which has an environment of its own: `make test-openenv` runs it.
NEEDS_OPENENV = {"openenv_grid.yaml"}


@pytest.mark.parametrize("path", [
    pytest.param(path, id=str(path.relative_to(ROOT / "examples")),
                 marks=pytest.mark.openenv if path.name in NEEDS_OPENENV else ()) for path in CONFIGS
])
def test_every_example_trains_the_same_way_on_trl_and_verl(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    rows = side_by_side(path, ["trl", "verl"])
    assert {row.key for row in rows} >= {"optimizer.weight_decay", "batch.updates_per_step", "precision.weights",
                                         "sampling.seed", "data.order", "prompt.truncation"}
    assert [(row.key, row.values) for row in undeclared(rows)] == []
    for row in rows:
        if row.differs:
            assert row.reason == DECLARED[row.key]


def write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("model: retrain:tiny\nexample_prompts: [a, b]\n" + extra, encoding="utf-8")
    return path


def test_a_backend_option_that_changes_training_shows_as_a_difference(tmp_path):
    """mask_truncated_completions is TRL's own option (retrain has no field for it): allowed, and shown."""
    rows = side_by_side(write(tmp_path, "backend_options: {trl: {mask_truncated_completions: true}}\n"),
                        ["trl", "verl"])
    (row,) = undeclared(rows)
    assert row.key == "loss.masks_truncated" and row.values == {"trl": True, "verl": False}


def test_a_verl_option_that_changes_the_optimizer_shows_as_a_difference(tmp_path):
    rows = side_by_side(write(tmp_path, "backend_options: {verl: {actor_rollout_ref.actor.optim.optimizer: "
                                        "SGD}}\n"), ["trl", "verl"])
    assert [row.key for row in undeclared(rows)] == ["optimizer.name"]


def test_the_policy_loss_is_set_through_algorithm_policy_loss_not_a_raw_verl_option(tmp_path):
    from retrain.core.errors import ConfigError

    with pytest.raises(ConfigError, match="set this through `algorithm.policy_loss`"):
        side_by_side(write(tmp_path, "backend_options: {verl: {actor_rollout_ref.actor.policy_loss.loss_mode: "
                                     "gspo}}\n"), ["trl", "verl"])


def test_several_updates_per_step_are_the_same_on_both_and_the_schedule_difference_is_declared(tmp_path):
    rows = {row.key: row for row in side_by_side(write(tmp_path, (
        "algorithm: {prompts_per_step: 2, group_size: 4, mini_batches: 2, updates_per_batch: 2, max_steps: 10}\n"
        "optimizer: {warmup_ratio: 0.2, lr_scheduler: cosine, weight_decay: 0.1}\n"
        "training: {micro_batch_size: 2}\n")), ["trl", "verl"])}
    assert rows["batch.updates_per_step"].values == {"trl": 4, "verl": 4}
    assert rows["batch.steps"].values == {"trl": 10, "verl": 10}
    assert rows["batch.micro_batch"].values == {"trl": 2, "verl": 2}
    assert rows["schedule.warmup_steps"].values == {"trl": 2, "verl": 2}
    assert rows["optimizer.weight_decay"].values == {"trl": 0.1, "verl": 0.1}
    assert rows["schedule.moves_within_a_step"].reason and rows["batch.mini_batch_order"].reason
    assert rows["loss.token_mean_over"].reason  # dapo with several mini-batches (tests/parity/test_step.py)


def test_translate_backends_prints_the_table_and_exits_1_on_an_undeclared_difference(tmp_path):
    path = write(tmp_path, "backend_options: {trl: {mask_truncated_completions: true}}\n")
    result = subprocess.run([sys.executable, "-m", "retrain.cli", "translate", str(path), "--backends", "trl,verl"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "loss.masks_truncated" in result.stdout and "!= DIFFERENT" in result.stdout
    assert "1 undeclared difference(s)" in result.stdout
