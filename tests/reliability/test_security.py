"""Configs are data: YAML's Python tags are refused, never executed."""

from __future__ import annotations

import subprocess
import sys


def test_python_tags_in_yaml_are_rejected_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(
        "model_to_train: retrain:tiny\n"
        f"example_prompts: !!python/object/apply:os.system ['touch {marker}']\n",
        encoding="utf-8",
    )
    result = subprocess.run([sys.executable, "-m", "retrain.cli", "validate", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path}:2" in result.stderr and "python/object/apply" in result.stderr
    assert not marker.exists()
