"""Running the `retrain` command line as a user does: in a subprocess, or in-process (fast) through the same
entry point, with what it prints to stdout and stderr and its exit code."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run_cli(*args: str, timeout: float = 120) -> tuple[int, str]:
    """`python -m retrain.cli ARGS` from the repository root: (exit code, stdout + stderr)."""
    env = {**os.environ, "NO_COLOR": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "retrain.cli", *args], capture_output=True, text=True,
                            cwd=REPO, env=env, timeout=timeout)
    return result.returncode, _ANSI.sub("", result.stdout + result.stderr)


def run_cli_in_process(*args: str) -> tuple[int, str]:
    """`retrain.cli.main()` with ARGS, in this process (the caller chdirs to the repository root).

    An exception escaping `main` is what a user would see as a traceback: it is printed into the output
    (so "Traceback" is in it) and the exit code is 1, as Python's would be."""
    from retrain import cli

    buffer = io.StringIO()
    argv = sys.argv
    sys.argv = ["retrain", *args]
    code = 0
    try:
        with contextlib.redirect_stderr(buffer), contextlib.redirect_stdout(buffer):
            try:
                cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:  # noqa: BLE001 - this is exactly what the test looks for
                traceback.print_exc(file=buffer)
                code = 1
    finally:
        sys.argv = argv
    return code, _ANSI.sub("", buffer.getvalue())
