"""The built-in adapters pass the same conformance kit a third-party adapter runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from retrain.models import resolve_model
from retrain.testing import BackendConformance, TrainedRun


class TestTRLConformance(BackendConformance):
    backend = "trl"
    rejected_options = [
        # 2 prompts x 4 completions cannot be split over 3 processes.
        ({"resources": {"gpus_per_node": 3}}, "algorithm.prompts_per_step"),
        ({"backend_options": {"trl": {"beta": 0.1}}}, "backend_options.trl.beta"),
    ]


@pytest.mark.slow
class TestVerlConformance(BackendConformance):
    backend = "verl"
    rejected_options = [
        ({"model": {"name": "retrain:tiny", "lora": {"r": 4, "dropout": 0.1}}}, "model.lora.dropout"),
        ({"training": {"log_every": 2}}, "training.log_every"),
        ({"algorithm": {"kl_coef": 0.05}}, "algorithm.kl_coef"),  # on CPU only with LoRA
        ({"resources": {"nodes": 2}}, "resources.nodes"),  # several nodes need a Ray cluster address
    ]

    def test_the_trained_model_is_exported_with_verls_merger(self, trained: TrainedRun) -> None:
        """verl's FSDP shards become a Hugging Face folder that transformers loads, with trained weights."""
        model_dir = Path(trained.summary["model_dir"])
        assert model_dir == trained.run_dir / "model"
        exported = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
        initial = AutoModelForCausalLM.from_pretrained(resolve_model("retrain:tiny")).state_dict()
        # verl's merger writes bf16: compare against the initial weights rounded the same way.
        changed = [name for name, weight in exported.items()
                   if not torch.equal(weight.float(), initial[name].to(torch.bfloat16).float())]
        assert changed, "the exported model has the initial weights"
