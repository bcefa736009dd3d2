"""Every example as a user first runs it: valid, self-describing, and two steps with --model retrain:tiny."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from retrain.config_models import TrainingConfig
from retrain.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
# examples/math.yaml runs its two steps, on both backends, in tests/rewards/test_math_example.py, and
# examples/textarena_guess.yaml (with a shorter budget for the tiny model) in tests/environments/test_textarena.py,
# examples/openenv_grid.yaml in tests/environments/test_openenv.py (OpenEnv has an environment of its own), and
# examples/calculator_tools.yaml and examples/mcp_tools.yaml in tests/backends/trl/test_environment.py.
RUN_ELSEWHERE = ("math.yaml", "textarena_guess.yaml", "openenv_grid.yaml", "calculator_tools.yaml", "mcp_tools.yaml")
SMOKE = [path for path in EXAMPLES if path.name not in RUN_ELSEWHERE]
NEEDS_OPENENV = {"openenv_grid.yaml"}


def test_there_are_examples():
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid_and_says_what_it_teaches(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # examples name their data and modules relative to the repository root
    monkeypatch.syspath_prepend(str(ROOT))
    text = path.read_text(encoding="utf-8")
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert text.startswith("#") and len(header) >= 3, f"{path.name}: start with a comment saying what it teaches"
    assert any("teaches" in line or "What" in line for line in header), path.name
    assert "retrain:tiny" in text, f"{path.name}: the header should give the smoke-test command"
    if path.name in NEEDS_OPENENV and importlib.util.find_spec("openenv") is None:
        with pytest.raises(ConfigError, match=r"pip install 'retrain\[openenv\]'"):  # valid: make test-openenv
            TrainingConfig.from_yaml(path)
        return
    TrainingConfig.from_yaml(path)


@pytest.mark.parametrize("path", SMOKE, ids=lambda p: p.name)
def test_example_runs_two_steps_on_the_tiny_model(path, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "retrain.cli", "run", str(path), "--model", "retrain:tiny", "--max-steps", "2",
         "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 2


RECIPES = sorted((ROOT / "examples" / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_a_recipe_names_its_original_and_what_it_cannot_express_and_is_valid(path):
    """Recipes reproduce published runs (verl's GSM8K/MATH GRPO example, DAPO, Open-R1); they need their
    dataset and GPUs, so they are validated here and compared side by side in tests/parity/test_settings.py."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Recipe: "), f"{path.name}: start with '# Recipe: <the original>'"
    assert "# Not expressible" in text, f"{path.name}: say which original settings retrain cannot express"
    TrainingConfig.from_yaml(path)


def test_there_are_the_three_recipes_the_comparison_issue_names():
    assert {p.stem for p in RECIPES} >= {"verl_gsm8k_math_grpo", "dapo_qwen2.5_32b", "open_r1_grpo"}
