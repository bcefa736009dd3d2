"""verl on an existing Ray cluster (`resources.ray_address`): the way users scale out.

The test starts a one-node cluster of its own (`ray start --head --block` in a new process group,
declaring the stand-in GPU that verl's resource pool needs on a CPU), runs on it, checks the run
freed every resource it held while the cluster lives on, and stops the cluster by its process group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrain.core.run import run_sync
from retrain.testing.openai_server import free_port
from tests.tiny_runs import QUIET, metrics, tiny_config

CLUSTER = {"CPU": 16.0, "GPU": 1.0}


@pytest.fixture
def ray_head(tmp_path, monkeypatch) -> Iterator[tuple[str, subprocess.Popen]]:
    # Ray 2.60 clusters use token authentication; a driver given an explicit address sends the
    # token (~/.ray/auth_token, which the head creates) only when told to.
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    port = free_port()
    # Ray's socket paths must fit in 107 bytes: pytest's tmp_path is too deep for its temp dir.
    ray_tmp = tempfile.mkdtemp(prefix="rt-ray-")
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}",
               f"--num-cpus={int(CLUSTER['CPU'])}", f"--num-gpus={int(CLUSTER['GPU'])}",
               "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={ray_tmp}"]
    log_path = tmp_path / "head.log"
    with log_path.open("w") as log:
        head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "Ray runtime started" not in log_path.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not start:\n{log_path.read_text()}")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", head
    finally:
        _stop_group(head)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _stop_group(head: subprocess.Popen) -> None:
    """Ours alone: the head and everything it started share the process group it leads."""
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass  # Ray drains for up to 30 s on SIGTERM; the test cluster holds nothing worth waiting for
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    head.wait(timeout=10)


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
