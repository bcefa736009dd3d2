"""OpenEnv environments on verl (retrain's agent loop in verl's agent-loop workers, on CPU), on one shared Ray
cluster. Needs the `openenv` extra: `make test-openenv` runs these in `.venv-openenv`."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from retrain.core.run import run_sync
from tests.ray_cluster import shared_cluster  # noqa: F401  (the `cluster` fixture: one per module)
from tests.tiny_runs import QUIET, metrics

pytestmark = [pytest.mark.slow, pytest.mark.openenv]
pytest.importorskip("openenv.core.env_server", reason="make test-openenv")

ROOT = Path(__file__).resolve().parents[3]


def servers() -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if "retrain.environments.openenv_server" in " ".join(p.info["cmdline"] or [])]


def test_the_same_walks_get_the_same_breakdowns_on_trl_and_verl(tmp_path, monkeypatch, cluster):
    """examples/openenv_grid.py's GridWalk, two seeded walks (one reached, one out of moves), four episodes each,
    walked by the same scripted player (tests/scripted_games.py): in this process on TRL, and as an OpenEnv server
    that the run starts on verl. Every episode's words and breakdown (the observations' rewards through
    `environment_reward`) are the same, and the servers the run started are gone when it ends."""
    from tests.environments.test_openenv import walks_config
    from tests.scripted_games import episodes_of, scripted_trl_run, walk_to_goal

    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # verl's workers import the example environment
    on_trl = episodes_of(scripted_trl_run(walks_config(tmp_path), tmp_path, walk_to_goal))
    before = set(servers())
    monkeypatch.setenv("VERL_USE_EXTERNAL_MODULES", "tests.backends.verl.scripted_rollout")
    (tmp_path / "verl").mkdir()
    config = walks_config(tmp_path / "verl", serve=True)
    config["backend_options"] = {"verl": {"actor_rollout_ref.rollout.name": "scripted"}}
    config["resources"] = {"ray_address": cluster}
    summary = run_sync(config, backend="verl", output_dir=tmp_path / "verl", console=QUIET)
    assert summary["status"] == "completed"
    on_verl = episodes_of(Path(summary["run_dir"]))
    assert on_verl == on_trl and len(on_verl) == 8
    assert sorted({round(json.loads(scores)["total"], 4) for _, scores in on_verl}) == [-0.15, 0.85]
    record = metrics(Path(summary["run_dir"]))[0]
    assert record["rewards/environment_reward/mean"] == pytest.approx((0.85 - 0.15) / 2)
    assert record["env/episode_error_rate"] == 0.0
    import time

    deadline = time.monotonic() + 15  # the workers' servers stop with them (atexit, or by noticing they are gone)
    while set(servers()) - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not set(servers()) - before, "OpenEnv servers left running after the run"


def test_the_openenv_example_trains_two_steps_on_verl(tmp_path, monkeypatch, cluster):
    from tests.environments.test_openenv import example_config

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    config = {**example_config(tmp_path, max_completion_tokens=32), "resources": {"ray_address": cluster}}
    summary = run_sync(config, backend="verl", max_steps=2, console=QUIET)
    records = metrics(Path(summary["run_dir"]))
    assert [r["step"] for r in records] == [1, 2]
    assert all("rewards/environment_reward/mean" in r and "env/episode_error_rate" in r for r in records)
