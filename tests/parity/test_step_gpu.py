"""Step parity on a GPU, in bfloat16: the same config, completions and starting weights through TRL's own
`GRPOTrainer.train()` and verl's own actor worker (FSDP on NCCL, verl's CUDA platform), as tests/parity/test_step.py
does in float32 on a CPU. Part of the GPU check (benchmarks/gpu_check, docs/benchmarks.md); skipped without CUDA.

bfloat16 keeps 8 bits of mantissa: the float32 tolerances (2e-3 of the update) do not apply. What is asserted is
loose (both trained, the same number of updates, the gradient norms and losses within 2%, the weights within 10% of
the update); the numbers themselves are the result, written to $RETRAIN_GPU_CHECK_OUT/step_parity_bf16.json for
docs/benchmarks.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from tests.parity.step import compare, config_data, run_trl, run_verl

pytestmark = pytest.mark.gpu

CASES = {
    "grpo": {"algorithm": {"loss_aggregation": "grpo"}},
    "grpo, 2 mini-batches": {"algorithm": {"mini_batches": 2, "loss_aggregation": "grpo"}},
}


@pytest.mark.parametrize("name", list(CASES))
def test_one_step_in_bfloat16_updates_the_same_weights_on_both_backends(tmp_path, name):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    data = config_data(tmp_path, **CASES[name])
    data["resources"] = {"gpus_per_node": 1}
    data["model"]["dtype"] = "bfloat16"
    trl = run_trl(data, tmp_path / "trl")
    verl = run_verl(data, trl)
    comparison = compare(trl.result, verl)
    out = os.environ.get("RETRAIN_GPU_CHECK_OUT")
    if out:
        path = Path(out) / "step_parity_bf16.json"
        results = json.loads(path.read_text()) if path.exists() else {}
        results[name] = {**dataclasses.asdict(comparison), "trl_grad_norms": trl.result.grad_norms,
                         "verl_grad_norms": verl.grad_norms, "trl_losses": trl.result.losses,
                         "verl_losses": verl.losses, "device": torch.cuda.get_device_name(0)}
        path.write_text(json.dumps(results, indent=1))
    assert len(trl.result.grad_norms) == len(verl.grad_norms) > 0
    assert comparison.update > 0
    assert comparison.within(weights=0.1, grad_norm=2e-2, loss=2e-2), comparison
