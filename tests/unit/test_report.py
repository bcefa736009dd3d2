"""`retrain report` and `retrain compare`: the numbers of the report, its files, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrain.compare import compare, parse_backends
from retrain.core.errors import ConfigError
from retrain.core.run_dir import RunDir
from retrain.report import PLOTS, ReportError, load_runs, run_statistics, write_report
from tests.tiny_runs import QUIET, tiny_config
from tests.unit.test_cli import retrain

PNG = b"\x89PNG\r\n\x1a\n"


def fake_run(root: Path, backend: str, rewards: list[float], seconds: list[float], extra: dict | None = None) -> Path:
    """A run directory as a backend leaves it: config, native config, metrics, summary."""
    run_dir = RunDir.create(root, backend)
    run_dir.write_config({"backend": backend, "model": {"name": "retrain:tiny"}, "data": {"prompts": ["Hi."]},
                          **(extra or {})}, f"# native config for {backend}")
    for step, (reward, second) in enumerate(zip(rewards, seconds, strict=True), start=1):
        run_dir.write_metrics({"step": step, "reward/mean": reward, "reward/std": 0.1,
                               "rewards/goal/mean": reward / 10, "verifiers/cat/pass_rate": step / len(rewards),
                               "completion_length/mean": 10.0 + step, "step_seconds": second,
                               "tokens_per_second": 100.0 * step, "peak_memory_gb": 1.0 + step / 10,
                               "kl": None if backend == "trl" else 0.01 * step})
    run_dir.close()
    run_dir.write_summary({"status": "completed", "backend": backend, "model": "retrain:tiny",
                           "seconds": sum(seconds)})
    return run_dir.path


def test_statistics_are_read_from_the_neutral_metrics(tmp_path):
    (run,) = load_runs([fake_run(tmp_path, "trl", [-3.0, -1.0, -2.0, 0.5, 0.25, 0.0], [9.0, 2.0, 3.0, 2.5, 2.0, 4.0])])
    stats = run_statistics(run)
    assert stats["steps"] == 6
    assert (stats["reward_first"], stats["reward_final"]) == (-3.0, 0.0)
    assert stats["reward_final_tail_mean"] == pytest.approx((-1.0 - 2.0 + 0.5 + 0.25 + 0.0) / 5)
    assert (stats["reward_best"], stats["reward_best_step"]) == (0.5, 4)
    assert stats["components"]["rewards/goal/mean"] == {"first": -0.3, "final": 0.0}
    assert stats["components"]["verifiers/cat/pass_rate"]["final"] == 1.0
    assert stats["seconds_per_step"] == 2.75  # the median: the slow first step does not dominate
    assert stats["tokens_per_second"] == 350.0 and stats["peak_memory_gb"] == pytest.approx(1.6)
    assert stats["kl_final"] is None  # not logged: no number is made up


def test_the_report_puts_runs_side_by_side_in_markdown_json_and_plots(tmp_path):
    runs = load_runs([fake_run(tmp_path, "trl", [-1.0, 0.0], [1.0, 1.0]),
                      fake_run(tmp_path, "verl", [-2.0, -0.5], [3.0, 3.0])])
    path = write_report(runs, tmp_path / "report")
    markdown = path.read_text()
    assert "| metric | trl | verl |" in markdown
    assert "| reward, last step | 0 | -0.5 |" in markdown
    assert "# native config for verl" in markdown
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [r["statistics"]["reward_final"] for r in report["runs"]] == [0.0, -0.5]
    for plot in PLOTS:
        assert (tmp_path / "report" / plot).read_bytes()[:8] == PNG, plot


def test_a_report_of_runs_on_two_backends_shows_their_effective_settings_and_any_difference(tmp_path):
    from retrain.compare import report

    same = [fake_run(tmp_path / "same", "trl", [-1.0, 0.0], [1.0, 1.0]),
            fake_run(tmp_path / "same", "verl", [-2.0, -0.5], [3.0, 3.0])]
    markdown = report(same, tmp_path / "same-report", console=QUIET).read_text()
    assert "## Effective settings" in markdown and "They differ only where the libraries do" in markdown
    assert "| optimizer.weight_decay | 0 | 0 |" in markdown and "clip.dual:" in markdown  # a declared reason
    different = [fake_run(tmp_path / "diff", "trl", [-1.0, 0.0], [1.0, 1.0],
                          extra={"backend_options": {"trl": {"mask_truncated_completions": True}}}),
                 fake_run(tmp_path / "diff", "verl", [-2.0, -0.5], [3.0, 3.0])]
    markdown = report(different, tmp_path / "diff-report", console=QUIET).read_text()
    assert "These runs did not train the same way" in markdown
    assert "| loss.masks_truncated | yes | no | **≠ DIFFERENT** |" in markdown


def test_two_runs_of_one_backend_are_told_apart_by_folder(tmp_path):
    first = fake_run(tmp_path, "trl", [0.0], [1.0])
    second = fake_run(tmp_path, "trl", [1.0], [1.0])  # a new folder name, even within the same second
    assert [run.label for run in load_runs([first, second])] == [f"trl ({first.name})", f"trl ({second.name})"]


def test_report_of_a_folder_that_is_not_a_run_is_a_message(tmp_path):
    with pytest.raises(ReportError, match="not a run directory"):
        load_runs([tmp_path])
    result = retrain("report", str(tmp_path))
    assert result.returncode == 1 and "not a run directory" in result.stderr and "Traceback" not in result.stderr


def test_report_cli_writes_into_the_run_dir_by_default(tmp_path):
    run_dir = fake_run(tmp_path, "trl", [-1.0, 0.0], [1.0, 1.0])
    result = retrain("report", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert (run_dir / "report" / "report.md").is_file() and "reward, last step" in result.stderr


def test_compare_validates_every_backend_before_training_any(write_config, tmp_path):
    path = write_config(f"model_to_train: retrain:tiny\nexample_prompts: [a]\nalgorithm:\n  reward_scaling: batch\n"
                        f"training:\n  output_dir: {tmp_path / 'runs'}\n")
    result = retrain("compare", str(path), "--backends", "trl,verl")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path}:4" in result.stderr and "(backend verl)" in result.stderr and "reward_scaling" in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written


def test_a_backend_named_twice_is_an_error():
    with pytest.raises(ConfigError, match="named twice"):
        parse_backends("trl,trl")


def test_a_failed_backend_is_reported_as_failed(tmp_path):
    config = tiny_config(tmp_path)
    config["rewards"]["functions"] = [{"function": "retrain.testing.conformance:broken_reward", "bounds": [0, 1]}]
    result = compare(config, ["trl"], output_dir=tmp_path / "out", console=QUIET, show_progress=False)
    assert result.failed == ["trl"]
    markdown = result.report.read_text()
    assert "| status | failed |" in markdown and "broken_reward" in markdown
