"""Multi-GPU TRL: `resources.gpus_per_node: N` trains in N processes through `accelerate launch`.

This machine has no GPU, so the processes run on the CPU and talk over gloo
(RETRAIN_TRL_PROCESSES_ON_CPU=1, the launcher's switch for exactly this test). Everything else is
the real path: the generated accelerate config, torch's elastic launcher, DDP across two
processes, rank 0 writing the run directory, the parent's progress and error reporting.

Resuming is not tested here: on several CPU processes transformers loads the optimizer state with
map_location "cpu:1", which torch cannot restore (on GPUs it is "cuda:1"); test_gpu.py resumes on two GPUs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from retrain.backends.trl.launch import CPU_PROCESSES_VARIABLE
from retrain.core.errors import BackendError
from retrain.core.metrics import REQUIRED_KEYS
from retrain.core.run import run_sync
from tests.processes import assert_none_left
from tests.tiny_runs import QUIET, metrics, no_gpu, tiny_config


@pytest.fixture
def cpu_processes(monkeypatch):
    monkeypatch.setenv(CPU_PROCESSES_VARIABLE, "1")


def two_process_config(tmp_path: Path, **overrides) -> dict:
    config = tiny_config(tmp_path, **overrides)
    config["algorithm"]["max_steps"] = 3
    config["training"]["save_every"] = 2
    config["resources"] = {"gpus_per_node": 2}
    return config


def test_two_processes_train_one_run(tmp_path, cpu_processes):
    started = time.time()
    summary = run_sync(two_process_config(tmp_path), console=QUIET)
    assert summary["status"] == "completed"
    run_dir = Path(summary["run_dir"])
    records = metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3]  # one record per step: rank 0 alone writes
    assert all(set(REQUIRED_KEYS) <= set(r) and r["grad_norm"] > 0 for r in records)
    # 2 prompts x 4 completions per step, split 4 + 4 over the processes: TRL counts both halves' tokens.
    accelerate = yaml.safe_load((run_dir / "trl" / "accelerate.yaml").read_text())
    assert (accelerate["num_processes"], accelerate["distributed_type"]) == (2, "MULTI_GPU")
    assert "per_device_train_batch_size" in (run_dir / "native_config.txt").read_text()
    assert Path(summary["model_dir"], "model.safetensors").is_file()
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert (run_dir / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "3"
    assert (run_dir / "trl" / "processes.log").is_file()  # the processes' own output, kept off the console
    assert_none_left(since=started)


def test_a_failing_reward_stops_every_process_with_one_message(tmp_path, cpu_processes):
    started = time.time()
    config = two_process_config(tmp_path)
    config["rewards"] = {"functions": [{"function": "retrain.testing.faults:raises_sometimes"}], "on_error": "fail"}
    with pytest.raises(BackendError) as info:
        run_sync(config, console=QUIET)
    message = str(info.value)
    assert "raises_sometimes" in message and "processes.log" in message
    assert "Traceback" not in message
    assert_none_left(since=started)


@no_gpu
def test_gpus_asked_for_where_there_are_none_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(CPU_PROCESSES_VARIABLE, raising=False)
    with pytest.raises(BackendError, match="gpus_per_node is 2 but PyTorch sees no CUDA GPU here"):
        run_sync(two_process_config(tmp_path), console=QUIET)


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_every_process_and_keeps_a_checkpoint(tmp_path, cpu_processes, stop):
    """Ctrl-C, or a scheduler's SIGTERM: every process checkpoints the step it is in, together, and stops."""
    import json
    import signal
    import subprocess
    import sys

    import psutil

    from retrain.core.run_dir import RunDir

    config = two_process_config(tmp_path)
    config["algorithm"]["max_steps"] = 50
    config["training"]["save_every"] = 50
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen([sys.executable, "-m", "retrain.cli", "run", str(path)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    output_dir = tmp_path / "runs"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        run_dirs = list(output_dir.iterdir()) if output_dir.is_dir() else []
        if run_dirs and len(metrics(run_dirs[0]) if (run_dirs[0] / "metrics.jsonl").exists() else []) >= 2:
            break
        time.sleep(0.2)
    assert process.poll() is None, process.stderr.read()[-3000:]
    family = psutil.Process(process.pid).children(recursive=True)
    assert len(family) >= 3  # the launcher and the two training processes
    process.send_signal(getattr(signal, stop))
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "resume with" in stderr
    gone, alive = psutil.wait_procs(family, timeout=30)
    for leftover in alive:  # stop them (by pid) before failing, so that no test leaks processes
        leftover.kill()
    assert not alive, f"left running after Ctrl-C: {[p.pid for p in alive]}"
    (run_dir,) = output_dir.iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    saved = RunDir(run_dir).latest_checkpoint()
    assert saved is not None and RunDir.checkpoint_step(saved) >= 2  # the steps done before Ctrl-C are kept


def test_fsdp_and_deepspeed_need_several_processes():
    from retrain.config_models import TrainingConfig
    from retrain.core.errors import ConfigError

    base = {"model": "retrain:tiny", "example_prompts": ["p"]}
    for option, value in (("fsdp", "full_shard auto_wrap"), ("deepspeed", "ds_zero3.json")):
        with pytest.raises(ConfigError) as info:
            TrainingConfig.from_data({**base, "backend_options": {"trl": {option: value}}})
        assert [issue.field for issue in info.value.issues] == [f"backend_options.trl.{option}"]
        TrainingConfig.from_data({**base, "backend_options": {"trl": {option: value}},
                                  "resources": {"gpus_per_node": 2}})


def test_translate_shows_the_launch_for_several_gpus():
    from retrain.backends.trl.translate import translate_config
    from retrain.config_models import TrainingConfig

    native = translate_config(TrainingConfig.from_data(
        {"model": "retrain:tiny", "example_prompts": ["p"], "resources": {"gpus_per_node": 4},
         "algorithm": {"prompts_per_step": 4}}), cuda=True, bf16_supported=True)
    launch = native.settings["launch"]
    assert launch["accelerate.yaml"]["num_processes"] == 4 and launch["accelerate.yaml"]["use_cpu"] is False
    assert "accelerate launch" in launch["command"]
    assert native.settings["GRPOConfig"]["per_device_train_batch_size"] == 4 * 8 // 4
