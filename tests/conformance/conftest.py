"""Registers the test-only reference backend the way an installed package would: a dist-info
folder on sys.path whose entry_points.txt names it in the `retrain.backends` group. This is exactly
what `pip install` writes and what importlib.metadata reads; retrain's built-in table never names it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ENTRY_POINTS = """\
[retrain.backends]
reference = tests.reference_backend:backend
"""


@pytest.fixture(scope="package", autouse=True)
def reference_backend_installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site-packages")
    dist_info = site / "retrain_reference_backend-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: retrain-reference-backend\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS)
    sys.path.insert(0, str(site))
    yield site
    sys.path.remove(str(site))
