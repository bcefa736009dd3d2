"""A one-node Ray cluster of a test's own (`ray start --head --block` in a new process group, declaring the
stand-in GPU verl's resource pool needs on a CPU), stopped by that process group: for the tests of
`resources.ray_address`, and for slow verl tests that share one cluster instead of starting Ray per run."""

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

from retrain.testing.openai_server import free_port

CLUSTER = {"CPU": 16.0, "GPU": 1.0}


@contextlib.contextmanager
def ray_head(log_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """(address, head process) of a new cluster; stopped on exit, however the block ends. Ray 2.60 clusters
    use token authentication: the caller sets RAY_AUTH_MODE=token so that drivers send the token."""
    port = free_port()
    # Ray's socket paths must fit in 107 bytes: pytest's tmp_path is too deep for its temp dir.
    ray_tmp = tempfile.mkdtemp(prefix="rt-ray-")
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}",
               f"--num-cpus={int(CLUSTER['CPU'])}", f"--num-gpus={int(CLUSTER['GPU'])}",
               "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={ray_tmp}"]
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


@pytest.fixture(scope="module", name="cluster")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`cluster`: one cluster for a test module's verl runs (token authentication on for its drivers), its
    address. A module that imports this fixture gets it."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    try:
        with ray_head(tmp_path_factory.mktemp("ray") / "head.log") as (address, _):
            yield address
    finally:
        monkeypatch.undo()
