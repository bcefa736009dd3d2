"""What produced a run: package versions, Python, machine, command line and git commits.

Appended to `<run dir>/provenance.jsonl` each time the run starts (once, plus once per resume), so
a result can be traced to the exact code that made it. Versions come from package metadata:
nothing here imports an ML library.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PACKAGES = (
    "retrain", "torch", "transformers", "trl", "accelerate", "peft", "datasets", "verl", "ray", "vllm",
    "sentence-transformers", "math-verify", "jsonschema", "httpx", "mcp", "pydantic",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package, None when it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(folder: Path) -> dict[str, Any] | None:
    """The commit checked out in the git work tree holding `folder`, and whether it has uncommitted
    changes; None outside a work tree or without git."""
    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"root": git("rev-parse", "--show-toplevel"), "commit": commit, "dirty": bool(status)}


def provenance(config_path: Path | None, resumed: bool) -> dict[str, Any]:
    package_dir = Path(__file__).resolve().parents[2]
    config_folder = (config_path.resolve().parent if config_path is not None else Path.cwd())
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "resumed": resumed,
        "command": sys.argv,
        "cwd": os.getcwd(),
        "config_file": str(config_path.resolve()) if config_path is not None else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "packages": package_versions(),
        "git": {"config": git_state(config_folder), "retrain": git_state(package_dir)},
    }
