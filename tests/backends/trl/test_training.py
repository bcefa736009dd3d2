"""Real TRL GRPO training on retrain:tiny: metrics, the reward bridge, checkpoints and resume, LoRA."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrain.config_models import TrainingConfig
from retrain.core.errors import ConfigError
from retrain.core.metrics import REQUIRED_KEYS
from retrain.core.run import run, run_sync
from retrain.models import resolve_model
from tests.tiny_runs import QUIET, tiny_config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> dict:
    tmp_path = tmp_path_factory.mktemp("trl")
    return run_sync(tiny_config(tmp_path), console=QUIET)


def test_a_run_completes_and_leaves_a_complete_run_dir(finished_run):
    run_dir = Path(finished_run["run_dir"])
    assert finished_run["status"] == "completed" and finished_run["steps"] == 2
    for name in ("config.yaml", "native_config.txt", "metrics.jsonl", "summary.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "model" / "model.safetensors").is_file()
    assert (run_dir / "checkpoints" / "checkpoint-2").is_dir()
    assert TrainingConfig.from_yaml(run_dir / "config.yaml").model.name == "retrain:tiny"


def test_metrics_have_one_neutral_record_per_step(finished_run):
    records = [json.loads(line) for line in (Path(finished_run["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for record in records:
        assert set(REQUIRED_KEYS) <= set(record)
        assert {"rewards/goal/mean", "verifiers/mentions_a_cat/pass_rate",
                "constraints/penalize_text_containing/mean", "entropy", "peak_memory_gb"} <= set(record)
        assert record["step_seconds"] > 0 and record["tokens_per_second"] > 0
        assert 0.0 <= record["verifiers/mentions_a_cat/pass_rate"] <= 1.0
        assert 0.0 <= record["reward/zero_spread_groups"] <= 1.0


def test_a_step_without_learning_signal_is_said_out_loud(tmp_path):
    """Every completion scores the same (a length reward no completion misses): no group has any spread, so
    nothing is learned. The record says so (the share of such groups is 1) and the run warns once."""
    from io import StringIO

    from rich.console import Console

    config = tiny_config(tmp_path, rewards={"functions": [{"function": "length", "params": {"max_words": 1000}}]})
    config.pop("verifiers")
    out = StringIO()
    summary = run_sync(config, console=Console(file=out, width=200))
    records = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert [r["reward/zero_spread_groups"] for r in records] == [1.0, 1.0]
    assert out.getvalue().count("no learning signal at step 1") == 1
    assert "no learning signal at step 2" not in out.getvalue()  # once: a person reads the first


def test_resume_continues_from_the_latest_checkpoint(tmp_path):
    first = run_sync(tiny_config(tmp_path), console=QUIET)
    run_dir = Path(first["run_dir"])
    shutil.rmtree(run_dir / "checkpoints" / "checkpoint-2")  # as if interrupted after step 1
    resumed = run_sync(tiny_config(tmp_path), resume=run_dir, max_steps=3, console=QUIET)
    assert resumed["run_dir"] == str(run_dir) and resumed["status"] == "completed"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(r["tokens_per_second"] > 0 for r in records)  # counted from the restored token total
    superseded = [json.loads(line) for line in (run_dir / "metrics.superseded.jsonl").read_text().splitlines()]
    assert [r["step"] for r in superseded] == [2]  # the redone step is kept, not lost
    assert (run_dir / "samples" / "superseded" / "step_000002.jsonl").is_file()
    assert len((run_dir / "samples" / "step_000002.jsonl").read_text().splitlines()) == 8  # redone, not appended
    state = json.loads((run_dir / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3


def test_lora_trains_adapters_through_peft(tmp_path):
    config = tiny_config(tmp_path, model={"name": "retrain:tiny", "lora": {"r": 4, "alpha": 8}})
    config.pop("model_to_train")
    summary = run_sync(config, max_steps=1, console=QUIET)
    assert summary["status"] == "completed"
    assert (Path(summary["model_dir"]) / "adapter_config.json").is_file()


def test_a_model_from_a_local_folder_trains_through_await_run_with_kl(tmp_path):
    """The hub path for real users is `from_pretrained(name)`; a local folder exercises the same loader."""
    folder = tmp_path / "my-model"
    shutil.copytree(resolve_model("retrain:tiny"), folder)
    config = tiny_config(tmp_path, model_to_train=str(folder))
    config["algorithm"]["kl_coef"] = 0.05
    summary = asyncio.run(run(config=config, max_steps=1, console=QUIET))
    assert summary["status"] == "completed" and summary["model"] == str(folder)
    (record,) = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert record["kl"] is not None and record["kl"] >= 0


def test_ctrl_c_keeps_a_resumable_checkpoint_of_the_last_finished_step(tmp_path, write_config):
    """A real interrupt of `retrain run`: exit 130, a checkpoint at the last step, then --resume finishes."""
    config = tiny_config(tmp_path)
    config["training"]["save_every"] = 1000  # only the interrupt handler saves
    path = write_config(json.dumps(config))  # JSON is YAML
    command = [sys.executable, "-m", "retrain.cli", "run", str(path), "--max-steps", "40"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "runs"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        metrics = list(runs.glob("*/metrics.jsonl"))
        if metrics and len(metrics[0].read_text().splitlines()) >= 2:
            break
        time.sleep(0.5)
    assert process.poll() is None, process.communicate()[1][-2000:]
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "interrupted" in stderr
    (run_dir,) = runs.iterdir()
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    (checkpoint,) = (run_dir / "checkpoints").glob("checkpoint-*")
    assert int(checkpoint.name.split("-")[1]) >= steps[-1] >= 2
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    resumed = run_sync(str(path), resume=run_dir, max_steps=steps[-1] + 1, console=QUIET)
    assert resumed["status"] == "completed" and resumed["steps"] == steps[-1] + 1


def test_resuming_with_a_different_experiment_is_refused(tmp_path):
    first = run_sync(tiny_config(tmp_path), max_steps=1, console=QUIET)
    changed = tiny_config(tmp_path)
    changed["algorithm"]["learning_rate"] = 0.5
    with pytest.raises(ConfigError) as info:
        run_sync(changed, resume=first["run_dir"], max_steps=2, console=QUIET)
    assert info.value.issues[0].field == "algorithm.learning_rate"
    assert "differs from the run being resumed" in info.value.issues[0].message
