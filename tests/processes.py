"""Which processes a run left behind: every process of this user started since a time, whose command
line is Ray's, verl's or retrain's (raylet, GCS, workers, actors, the model merger)."""

from __future__ import annotations

import os
import time

import psutil

MARKERS = ("ray", "verl", "retrain")


def started_since(since: float) -> list[str]:
    me = os.getpid()
    uid = os.getuid()
    found = []
    for process in psutil.process_iter(["pid", "create_time", "cmdline", "uids", "status"]):
        info = process.info
        if info["pid"] == me or info["create_time"] is None or info["create_time"] < since:
            continue
        if info["uids"] is None or info["uids"].real != uid or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        command = " ".join(info["cmdline"] or [])
        if any(marker in command for marker in MARKERS):
            found.append(f"{info['pid']}: {command[:200]}")
    return found


def assert_none_left(since: float, grace_seconds: float = 15.0) -> None:
    """Processes get a moment to exit after a shutdown; after that, any left is a leak."""
    deadline = time.monotonic() + grace_seconds
    while (left := started_since(since)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, "processes left behind by the run:\n" + "\n".join(left)
