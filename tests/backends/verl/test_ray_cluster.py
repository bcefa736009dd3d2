"""verl on an existing Ray cluster (`resources.ray_address`): the way users scale out.

The test starts a one-node cluster of its own (`ray start --head --block` in a new process group,
declaring the stand-in GPU that verl's resource pool needs on a CPU), runs on it, checks the run
freed every resource it held while the cluster lives on, and stops the cluster by its process group.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrain.core.run import run_sync
from retrain.testing.openai_server import free_port
from tests.ray_cluster import CLUSTER
from tests.ray_cluster import ray_head as start_ray_head
from tests.tiny_runs import QUIET, metrics, tiny_config


@pytest.fixture
def ray_head(tmp_path, monkeypatch) -> Iterator[tuple[str, object]]:
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with start_ray_head(tmp_path / "head.log") as head:
        yield head


def _available_resources(address: str) -> dict[str, float]:
    import ray

    ray.init(address=address, log_to_driver=False)
    try:
        return {key: ray.available_resources().get(key, 0.0) for key in CLUSTER}
    finally:
        ray.shutdown()  # disconnects this driver; the cluster stays


@pytest.mark.slow
def test_verl_runs_on_an_existing_ray_cluster_and_leaves_it_running(tmp_path, ray_head):
    address, head = ray_head
    config = tiny_config(tmp_path, backend="verl")
    config["algorithm"]["max_steps"] = 1
    config["resources"] = {"ray_address": address}
    summary = run_sync(config, console=QUIET)
    assert summary["status"] == "completed"
    assert [r["step"] for r in metrics(Path(summary["run_dir"]))] == [1]
    assert head.poll() is None, "the run stopped a cluster it did not start"
    deadline = time.monotonic() + 30
    while (available := _available_resources(address)) != CLUSTER and time.monotonic() < deadline:
        time.sleep(2)
    assert available == CLUSTER, "the run's actors still hold cluster resources"


def test_an_unreachable_cluster_fails_in_seconds_naming_the_address(tmp_path):
    from retrain.core.errors import BackendError

    config = tiny_config(tmp_path, backend="verl")
    config["resources"] = {"ray_address": f"127.0.0.1:{free_port()}"}
    started = time.monotonic()
    with pytest.raises(BackendError, match="no Ray cluster answers at resources.ray_address"):
        run_sync(config, console=QUIET)
    assert time.monotonic() - started < 60
