"""`model.loader: unsloth` on the TRL backend.

The tests marked `unsloth` run the real Unsloth (2026.10.9, its CPU fallback here: stock transformers +
PEFT + TRL with Unsloth's patches) in the environment the `unsloth` extra makes, which pins TRL 1.15:
`make test-unsloth` builds it (.venv-unsloth) and runs them; CI does. The others run in the main
environment, where Unsloth is not installed: its validation, and the calls `retrain translate` shows.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from retrain.backends.trl.loader import from_pretrained_kwargs, get_peft_model_kwargs
from retrain.config_models import TrainingConfig
from retrain.core.errors import ConfigError
from retrain.core.run import run_sync
from tests.tiny_runs import QUIET, metrics, stand_in_package, tiny_config

needs_unsloth = pytest.mark.skipif(importlib.util.find_spec("unsloth") is None,
                                   reason="unsloth is not installed: `make test-unsloth` runs these")


def config(**model) -> TrainingConfig:
    return TrainingConfig.from_data({"model": {"name": "retrain:tiny", **model}, "example_prompts": ["p"]})


def test_the_config_maps_onto_unsloths_calls():
    lora = config(lora={"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]}, dtype="bfloat16")
    assert from_pretrained_kwargs(lora, "/models/x", engine="vllm") == {
        "model_name": "/models/x", "max_seq_length": 2048, "dtype": "bfloat16", "load_in_4bit": False,
        "full_finetuning": False, "random_state": 42, "fast_inference": True, "max_lora_rank": 8}
    assert get_peft_model_kwargs(lora) == {
        "r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "use_gradient_checkpointing": False, "random_state": 42,
        "target_modules": ["q_proj", "v_proj"]}
    full = config()
    assert from_pretrained_kwargs(full, "/m", engine="transformers")["full_finetuning"] is True
    assert from_pretrained_kwargs(full, "/m", engine="transformers")["dtype"] is None  # auto: Unsloth picks
    assert get_peft_model_kwargs(full) is None
    assert "target_modules" not in get_peft_model_kwargs(config(lora={"r": 4}))  # all-linear: Unsloth's default


@pytest.mark.skipif(importlib.util.find_spec("unsloth") is not None, reason="unsloth is installed here")
def test_without_unsloth_installed_the_loader_is_a_validation_error():
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_data({"model": {"name": "retrain:tiny", "loader": "unsloth"}, "example_prompts": ["p"]})
    (issue,) = info.value.issues
    assert issue.field == "model.loader" and "pip install 'retrain[unsloth]'" in issue.message


def test_unsloth_runs_on_one_gpu_only(tmp_path, monkeypatch):
    stand_in_package("unsloth", tmp_path, monkeypatch)  # the check is about processes, not Unsloth itself
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_data({"model": {"name": "retrain:tiny", "loader": "unsloth"}, "example_prompts": ["p"],
                                  "resources": {"gpus_per_node": 2}})
    assert [issue.field for issue in info.value.issues] == ["model.loader"]
    native = TrainingConfig.from_data({"model": {"name": "retrain:tiny", "loader": "unsloth"},
                                       "example_prompts": ["p"]})
    from retrain.backends.trl.translate import translate_config

    settings = translate_config(native, cuda=True, bf16_supported=True).settings
    assert settings["unsloth"]["FastLanguageModel.from_pretrained"]["model_name"] == "retrain:tiny"
    assert settings["GRPOTrainer"]["peft_config"] is None


@pytest.mark.unsloth
@needs_unsloth
def test_unsloth_trains_lora_adapters(tmp_path):
    data = tiny_config(tmp_path)
    data.pop("model_to_train")
    data["model"] = {"name": "retrain:tiny", "loader": "unsloth", "lora": {"r": 8, "alpha": 16}}
    summary = run_sync(data, console=QUIET)
    assert summary["status"] == "completed"
    records = metrics(Path(summary["run_dir"]))
    assert [r["step"] for r in records] == [1, 2] and all(r["grad_norm"] > 0 for r in records)
    assert Path(summary["model_dir"], "adapter_config.json").is_file()
    assert '"unsloth"' in Path(summary["run_dir"], "native_config.txt").read_text()


@pytest.mark.unsloth
@needs_unsloth
def test_unsloth_trains_the_full_model(tmp_path):
    data = tiny_config(tmp_path)
    data.pop("model_to_train")
    data["model"] = {"name": "retrain:tiny", "loader": "unsloth"}
    summary = run_sync(data, console=QUIET)
    assert summary["status"] == "completed"
    assert Path(summary["model_dir"], "model.safetensors").is_file()


@pytest.mark.unsloth
@needs_unsloth
def test_unsloth_with_an_environment_and_tools(tmp_path):
    """The episode loop generates through TRL 1.15's unwrap_model_for_generation (no checkpointing kwargs)."""
    data = tiny_config(tmp_path)
    data.pop("model_to_train")
    data["model"] = {"name": "retrain:tiny", "loader": "unsloth", "lora": {"r": 4}}
    data["environment"] = {"tools": ["calculator"], "max_turns": 2}
    summary = run_sync(data, console=QUIET)
    assert summary["status"] == "completed"
    assert all("env/turns/mean" in r for r in metrics(Path(summary["run_dir"])))
