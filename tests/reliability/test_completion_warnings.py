"""The warnings a person gets when a step's completions teach little: all empty, or all cut off.

The truncation warning comes from a real TRL run of `retrain:tiny` (its random weights never stop
within 8 tokens); both backends print it through the same ProgressReporter, fed their records.
An all-empty batch cannot be produced on demand from a real model, so that warning is shown on the
record a step would log (completion_length/mean == 0), through the same reporter.
"""

from __future__ import annotations

import io

from rich.console import Console

from retrain.core.progress import ProgressReporter
from retrain.core.run import run_sync
from tests.tiny_runs import tiny_config


def _reporter() -> tuple[ProgressReporter, io.StringIO]:
    out = io.StringIO()
    return ProgressReporter(Console(file=out, width=400), max_completion_tokens=8), out


def test_every_completion_empty_warns_once():
    reporter, out = _reporter()
    reporter.start(3)
    for step in (1, 2):
        reporter.step({"step": step, "reward/mean": 0.0, "completion_length/mean": 0.0})
    text = out.getvalue()
    assert text.count("every completion at step 1 was empty; check the prompts and the chat template") == 1
    assert "step 2 was empty" not in text  # once: a person reads the first, not the hundredth


def test_every_completion_cut_off_warns_in_a_real_run(tmp_path):
    config = tiny_config(tmp_path)
    config["algorithm"]["max_completion_tokens"] = 8
    out = io.StringIO()
    summary = run_sync(config, max_steps=1, console=Console(file=out, width=400))
    assert summary["status"] == "completed"
    assert ("every completion at step 1 was cut off at algorithm.max_completion_tokens (8); raise it or ask for "
            "shorter answers") in out.getvalue()


def test_a_normal_step_warns_of_nothing():
    reporter, out = _reporter()
    reporter.start(1)
    reporter.step({"step": 1, "reward/mean": 0.5, "completion_length/mean": 5.0})
    assert "warning" not in out.getvalue()
