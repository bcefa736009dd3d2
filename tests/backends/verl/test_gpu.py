"""verl on a GPU: vLLM rollouts, FSDP in bf16, SmolLM2-135M. Needs a CUDA GPU and `retrain[verl-gpu]`.

Run on a GPU machine with `pytest -m gpu tests/backends/verl/test_gpu.py`; the default suite skips it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from retrain.core.metrics import REQUIRED_KEYS
from retrain.core.run import run_sync
from tests.processes import assert_none_left
from tests.tiny_runs import QUIET, metrics, tiny_config

pytestmark = pytest.mark.gpu


def test_verl_trains_smollm2_with_vllm_on_a_gpu(tmp_path):
    import time

    torch = pytest.importorskip("torch")
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    config = tiny_config(tmp_path, backend="verl", penalty=-100.0)
    config["model_to_train"] = "retrain:smollm2-135m-instruct"
    config["algorithm"].update({"max_steps": 3, "max_completion_tokens": 64, "learning_rate": 3e-5, "kl_coef": 0.04})
    config["resources"] = {"gpus_per_node": 1}
    started = time.time()
    summary = run_sync(config, console=QUIET)
    assert summary["status"] == "completed"
    records = metrics(Path(summary["run_dir"]))
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(set(REQUIRED_KEYS) <= set(r) and r["grad_norm"] > 0 for r in records)
    assert Path(summary["model_dir"], "config.json").is_file()
    assert_none_left(since=started)
