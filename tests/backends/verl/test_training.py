"""Real verl training on CPU (verl's v1 trainer, Ray, FSDP2, the `hf` rollout) on retrain:tiny.

Each run starts and stops its own local Ray (about 50 s for 2 steps on 2 cores).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from retrain.config_models import TrainingConfig
from retrain.core.errors import RewardError
from retrain.core.metrics import REQUIRED_KEYS
from retrain.core.run import run_sync
from retrain.models import resolve_model
from tests.processes import assert_none_left
from tests.tiny_runs import QUIET, assert_backend_trained_on_the_scorer_breakdown, metrics, tiny_config


@pytest.fixture(scope="module")
def verl_run(tmp_path_factory) -> dict:
    config = tiny_config(tmp_path_factory.mktemp("verl"), backend="verl", penalty=-100.0)
    config["algorithm"]["learning_rate"] = 1e-4
    config["training"]["save_every"] = 2
    started = time.time()
    summary = run_sync(config, console=QUIET)
    return {**summary, "started": started}


def test_verl_trains_and_writes_neutral_metrics(verl_run):
    run_dir = Path(verl_run["run_dir"])
    assert verl_run["status"] == "completed" and verl_run["steps"] == 2
    assert [r["step"] for r in metrics(run_dir)] == [1, 2]
    for record in metrics(run_dir):
        assert set(REQUIRED_KEYS) <= set(record)
        assert {"rewards/goal/mean", "verifiers/mentions_a_cat/pass_rate",
                "constraints/penalize_text_containing/mean", "entropy", "grad_norm"} <= set(record)
        assert record["grad_norm"] > 0  # a real update happened
    assert (run_dir / "checkpoints" / "global_step_2" / "actor").is_dir()


def test_verl_left_no_process_behind(verl_run):
    assert_none_left(since=verl_run["started"])


def test_verl_exports_the_trained_model(verl_run):
    """verl's FSDP shards become a Hugging Face folder that transformers loads, with trained weights."""
    model_dir = Path(verl_run["model_dir"])
    assert model_dir == Path(verl_run["run_dir"]) / "model"
    trained = AutoModelForCausalLM.from_pretrained(model_dir)
    initial = AutoModelForCausalLM.from_pretrained(resolve_model("retrain:tiny"))
    changed = [
        name for name, weight in trained.state_dict().items()
        if not torch.equal(weight.float(), initial.state_dict()[name].float().to(torch.bfloat16).float())
    ]
    assert changed, "the exported model has the initial weights"


def test_verl_trained_on_exactly_the_scorer_breakdown(verl_run):
    """verl's own critic/score/mean is the mean of the Scorer totals of the step's batch."""
    assert_backend_trained_on_the_scorer_breakdown(Path(verl_run["run_dir"]))


def test_verl_resumes_from_its_checkpoint(verl_run):
    run_dir = Path(verl_run["run_dir"])
    config = TrainingConfig.from_yaml(run_dir / "config.yaml")
    resumed = run_sync(config, resume=run_dir, max_steps=3, console=QUIET)
    assert resumed["status"] == "completed"
    assert [r["step"] for r in metrics(run_dir)] == [1, 2, 3]
    assert (run_dir / "checkpoints" / "global_step_3").is_dir()


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


def test_a_failing_run_names_the_cause_and_leaves_no_process(tmp_path):
    config = tiny_config(tmp_path, backend="verl")
    config["rewards"]["functions"] = [{"function": "tests.tiny_runs:broken_reward", "bounds": [0, 1]}]
    started = time.time()
    with pytest.raises(RewardError, match=r"reward .broken_reward. raised ValueError: this reward is broken"):
        run_sync(config, console=QUIET)
    assert_none_left(since=started)
