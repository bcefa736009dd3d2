"""The run directory's disk fills up mid-run: a clear failure, no traceback, and what was written is kept.

Simulated with a 3 MB tmpfs (needs root to mount; skipped otherwise): the first checkpoint of
retrain:tiny (~40 MB with its optimizer state) cannot be written.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.tiny_runs import tiny_config


@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()}); needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_fails_the_run_with_a_message_not_a_traceback(tmp_path, small_disk, write_config):
    config = tiny_config(tmp_path)
    config["training"]["output_dir"] = str(small_disk)
    path = write_config(json.dumps(config))
    result = subprocess.run([sys.executable, "-m", "retrain.cli", "run", str(path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "No space left on device" in result.stderr, result.stderr[-3000:]
    (run_dir,) = small_disk.iterdir()
    assert (run_dir / "config.yaml").is_file()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records and records[0]["step"] == 1  # the step trained before the disk filled is kept
    assert "resume with" not in result.stderr  # the half-written checkpoint is not offered for resuming
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"
