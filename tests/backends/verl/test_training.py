"""Real verl training on CPU (verl's v1 trainer, Ray, FSDP2, the `hf` rollout) on retrain:tiny.

Each run starts and stops its own local Ray (about 1-2 minutes for 2 steps on 2 cores), so these are
marked slow. What every backend must do (metrics, the Scorer bridge, checkpoints and resume, the
exported model, failure and cleanup) is checked by the conformance kit:
tests/conformance/test_builtin_backends.py::TestVerlConformance.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from retrain.core.run import run_sync
from tests.tiny_runs import QUIET, metrics, tiny_config


@pytest.mark.slow
def test_verl_lora_with_kl_trains_and_exports_the_adapter(tmp_path):
    """LoRA through verl's LoRA options; KL against the base model (the adapters switched off)."""
    from peft import PeftModel

    config = tiny_config(tmp_path, backend="verl")
    config["model"] = {"name": config.pop("model_to_train"), "lora": {"r": 8, "alpha": 16}}
    config["algorithm"]["kl_coef"] = 0.05
    config["training"]["save_every"] = 2
    summary = run_sync(config, console=QUIET)
    assert summary["status"] == "completed"
    records = metrics(Path(summary["run_dir"]))
    assert records[-1]["kl"] > 0  # the policy moved away from the reference
    model_dir = Path(summary["model_dir"])
    adapter = model_dir / "lora_adapter"
    assert (adapter / "adapter_config.json").is_file()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), adapter)
    lora_b = [w for name, w in model.state_dict().items() if "lora_B" in name]
    assert lora_b and any(w.abs().sum() > 0 for w in lora_b)  # B starts at zero; training moved it
