"""Real verl training on CPU (verl's v1 trainer, Ray, FSDP2, the `hf` rollout) on retrain:tiny.

Each run starts and stops its own local Ray (about 1-2 minutes for 2 steps on 2 cores), so these are
marked slow. What every backend must do (metrics, the Scorer bridge, checkpoints and resume, the
exported model, failure and cleanup) is checked by the conformance kit:
tests/conformance/test_builtin_backends.py::TestVerlConformance.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from retrain.core.metrics import read_jsonl
from retrain.core.run import run_sync
from tests.tiny_runs import QUIET, metrics, tiny_config


@pytest.mark.slow
def test_verl_lora_with_kl_trains_and_exports_the_adapter(tmp_path):
    """LoRA through verl's LoRA options; KL against the base model (the adapters switched off). The held-out
    evaluation reads what verl left (its exported model with the adapter, a checkpoint through verl's merger)
    and gives the same numbers through `retrain eval`."""
    from peft import PeftModel

    config = tiny_config(tmp_path, backend="verl")
    config["model"] = {"name": config.pop("model_to_train"), "lora": {"r": 8, "alpha": 16}}
    config["algorithm"]["kl_coef"] = 0.05
    config["training"]["save_every"] = 2
    config["evaluation"] = {"prompts": ["Write about a cat.", "A poem, please."], "n": 2, "temperature": 1.0,
                            "pass_at": [1, 2]}
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))
    summary = run_sync(path, console=QUIET)
    assert summary["status"] == "completed"
    records = metrics(Path(summary["run_dir"]))
    assert records[-1]["kl"] > 0  # the policy moved away from the reference
    model_dir = Path(summary["model_dir"])
    adapter = model_dir / "lora_adapter"
    assert (adapter / "adapter_config.json").is_file()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), adapter)
    lora_b = [w for name, w in model.state_dict().items() if "lora_B" in name]
    assert lora_b and any(w.abs().sum() > 0 for w in lora_b)  # B starts at zero; training moved it

    run_dir = Path(summary["run_dir"])
    in_run = {record["step"]: record for record in read_jsonl(run_dir / "eval.jsonl")}
    assert sorted(in_run) == [0, 2] and in_run[2]["weights_dtype"] == "bfloat16"  # verl's merger writes bf16
    checkpoint = run_dir / "checkpoints" / "global_step_2"
    done = subprocess.run([sys.executable, "-m", "retrain.cli", "eval", str(path), "--model", "retrain:tiny",
                           "--model", str(run_dir), "--model", str(checkpoint), "--output-dir", str(tmp_path / "ev")],
                          capture_output=True, text=True, cwd=Path(__file__).parents[3])
    assert done.returncode == 0, done.stderr[-3000:]
    base, final, from_checkpoint = read_jsonl(next((tmp_path / "ev").iterdir()) / "eval.jsonl")

    def numbers(record: dict) -> dict:
        return {k: v for k, v in record.items() if k.startswith("eval/")}

    assert numbers(base) == numbers(in_run[0])
    assert numbers(final) == numbers(in_run[2]) == numbers(from_checkpoint)  # the same weights, the same numbers
