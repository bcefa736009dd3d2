"""TRL on a GPU: bf16, vLLM rollouts (colocate and server), LoRA, and the Unsloth loader, on SmolLM2-135M.

Needs a CUDA GPU; each test skips what its machine lacks (vllm, unsloth, a second GPU for server mode).
Run on a GPU machine with `pytest -m gpu tests/backends/trl/test_gpu.py`; the default suite skips it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrain.core.metrics import REQUIRED_KEYS
from retrain.core.run import run_sync
from tests.tiny_runs import QUIET, metrics, tiny_config

pytestmark = pytest.mark.gpu

SMOLLM2 = "retrain:smollm2-135m-instruct"


def cuda_count() -> int:
    torch = pytest.importorskip("torch")
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.fixture
def gpu():
    if cuda_count() == 0:
        pytest.skip("no CUDA GPU")


def smollm2_config(tmp_path: Path, **rollout) -> dict:
    config = tiny_config(tmp_path, penalty=-100.0)
    config["model_to_train"] = SMOLLM2
    config["algorithm"].update({"max_steps": 3, "max_completion_tokens": 64, "learning_rate": 3e-5})
    config["resources"] = {"gpus_per_node": 1}
    if rollout:
        config["rollout"] = rollout
    return config


def assert_trained(summary: dict, steps: int = 3) -> list[dict]:
    assert summary["status"] == "completed", summary
    records = metrics(Path(summary["run_dir"]))
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    assert all(set(REQUIRED_KEYS) <= set(r) and r["grad_norm"] > 0 for r in records)
    return records


def test_bf16_with_transformers_generation(gpu, tmp_path):
    config = smollm2_config(tmp_path, engine="transformers")
    summary = run_sync(config, console=QUIET)
    assert_trained(summary)
    native = Path(summary["run_dir"], "native_config.txt").read_text()
    assert '"bf16": true' in native and '"use_vllm": false' in native
    assert Path(summary["model_dir"], "config.json").is_file()


def test_vllm_colocated_is_what_auto_picks_on_a_gpu(gpu, tmp_path):
    pytest.importorskip("vllm")
    summary = run_sync(smollm2_config(tmp_path, gpu_memory_utilization=0.3), console=QUIET)
    assert_trained(summary)
    native = Path(summary["run_dir"], "native_config.txt").read_text()
    assert '"use_vllm": true' in native and '"vllm_mode": "colocate"' in native


def test_lora_with_vllm_colocated(gpu, tmp_path):
    pytest.importorskip("vllm")
    config = smollm2_config(tmp_path, engine="vllm", gpu_memory_utilization=0.3)
    config.pop("model_to_train")
    config["model"] = {"name": SMOLLM2, "lora": {"r": 8, "alpha": 16}}
    summary = run_sync(config, console=QUIET)
    assert_trained(summary)
    assert Path(summary["model_dir"], "adapter_config.json").is_file()


def test_vllm_server_mode(tmp_path):
    """`trl vllm-serve` on GPU 1, the trainer (`retrain run`, a child process) on GPU 0: NCCL's weight sync
    cannot join two ranks on one device."""
    if cuda_count() < 2:
        pytest.skip("server mode needs two GPUs: one for the server, one for the trainer")
    pytest.importorskip("vllm")
    import httpx
    import yaml

    from retrain.models import resolve_model
    from retrain.testing.openai_server import free_port

    port, group_port = free_port(), free_port()
    log_path = tmp_path / "vllm-serve.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "trl.cli.main", "vllm-serve", "--model", resolve_model(SMOLLM2),
             "--port", str(port), "--gpu_memory_utilization", "0.3"],
            env={**os.environ, "CUDA_VISIBLE_DEVICES": "1"}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.time() + 300
        while True:
            try:
                if httpx.get(f"http://localhost:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.time() < deadline, log_path.read_text()[-3000:]
            time.sleep(2)
        config = smollm2_config(tmp_path, vllm_mode="server", server_url=f"http://localhost:{port}")
        config["backend_options"] = {"trl": {"vllm_group_port": group_port}}
        (tmp_path / "server.yaml").write_text(yaml.safe_dump(config))
        done = subprocess.run(
            [sys.executable, "-m", "retrain.cli", "run", str(tmp_path / "server.yaml")],
            env={**os.environ, "CUDA_VISIBLE_DEVICES": "0"}, capture_output=True, text=True, timeout=900,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        (run_dir,) = (tmp_path / "runs").iterdir()
        records = metrics(run_dir)
        assert [r["step"] for r in records] == [1, 2, 3] and all(r["grad_norm"] > 0 for r in records)
    finally:
        os.killpg(server.pid, 15)  # the server's own process group: it and its workers, nothing else
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()


def test_unsloth_loader_with_lora(gpu, tmp_path):
    pytest.importorskip("unsloth")
    config = smollm2_config(tmp_path, engine="transformers")
    config.pop("model_to_train")
    config["model"] = {"name": SMOLLM2, "loader": "unsloth", "lora": {"r": 8, "alpha": 16}}
    summary = run_sync(config, console=QUIET)
    assert_trained(summary)
    assert Path(summary["model_dir"], "adapter_config.json").is_file()


def test_two_gpus_train_in_two_processes_and_resume(tmp_path):
    if cuda_count() < 2:
        pytest.skip("needs two GPUs")
    config = smollm2_config(tmp_path, engine="transformers")
    config["resources"] = {"gpus_per_node": 2}
    config["training"]["save_every"] = 2
    first = run_sync(config, console=QUIET)
    assert_trained(first)
    config["algorithm"]["max_steps"] = 4
    resumed = run_sync(config, resume=first["run_dir"], console=QUIET)
    assert resumed["status"] == "completed"
    assert [r["step"] for r in metrics(Path(first["run_dir"]))] == [1, 2, 3, 4]


def test_the_held_out_evaluation_runs_on_the_gpu_and_gives_its_memory_back(tmp_path, gpu):
    """The baseline is evaluated in the training process before TRL loads its model: on the GPU in bfloat16,
    then freed; the final model the same way."""
    import torch

    config = smollm2_config(tmp_path)
    config["evaluation"] = {"prompts": ["Write about a cat.", "A poem about kittens."], "n": 4, "temperature": 1.0,
                            "pass_at": [1, 4], "max_completion_tokens": 32}
    summary = run_sync(config, console=QUIET)
    assert summary["status"] == "completed"
    records = summary["evaluation"]
    assert [r["step"] for r in records] == [0, 3]
    assert all(r["compute"] == "bfloat16 on cuda" and "eval/pass@4" in r for r in records)
    assert torch.cuda.memory_allocated() < 2**30  # the evaluator's copies are gone
