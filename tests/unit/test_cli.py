"""The command line as a user runs it: clear errors, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys


def retrain(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "retrain.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_validate_accepts_the_example():
    result = retrain("validate", "examples/cat_poem.yaml")
    assert result.returncode == 0, result.stderr
    assert "is valid for backend 'trl'" in result.stderr


def test_a_config_error_exits_2_with_the_line_and_no_traceback(write_config):
    path = write_config("model_to_train: retrain:tiny\nexample_prompts: [a]\nalgorithm:\n  lerning_rate: 1\n")
    result = retrain("validate", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{path}:4" in result.stderr and "did you mean 'learning_rate'" in result.stderr


def test_a_missing_file_is_a_message(tmp_path):
    result = retrain("run", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "file not found" in result.stderr and "Traceback" not in result.stderr


def test_translate_prints_the_native_config_with_overrides(write_config):
    path = write_config("model_to_train: retrain:tiny\nexample_prompts: [a]\n"
                        "backend_options:\n  trl:\n    mask_truncated_completions: true\n")
    result = retrain("translate", str(path))
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout[result.stdout.index("{"):])
    assert settings["GRPOConfig"]["mask_truncated_completions"] is True
    assert settings["GRPOConfig"]["num_generations"] == 8


def test_run_smoke_tests_any_config_with_the_tiny_model(tmp_path):
    result = retrain("run", "examples/cat_poem.yaml", "--model", "retrain:tiny", "--max-steps", "1",
                     "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "retrain run: completed" in result.stderr
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith("cat_poem-")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 1 and "reward/mean" in summary["metrics"]
    (provenance,) = [json.loads(line) for line in (run_dir / "provenance.jsonl").open()]
    assert provenance["packages"]["trl"] and provenance["packages"]["torch"] and not provenance["resumed"]
    assert provenance["config_file"].endswith("examples/cat_poem.yaml")
    git = provenance["git"]["retrain"]
    assert git is None or len(git["commit"]) == 40  # a git checkout here; an installed wheel has none


def test_run_never_overwrites_an_earlier_run_dir(tmp_path):
    from retrain.core.run_dir import RunDir

    first = RunDir.create(tmp_path, "same")
    second = RunDir.create(tmp_path, "same")
    assert first.path != second.path and first.path.is_dir() and second.path.is_dir()
