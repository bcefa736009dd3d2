"""Config -> TRL: every algorithm option lands on the matching GRPOConfig field, and TRL accepts it."""

from __future__ import annotations

import dataclasses

import pytest
from trl import GRPOConfig

from retrain.backends.trl.translate import grpo_config_kwargs, translate_config
from retrain.config_models import TrainingConfig
from retrain.core.errors import ConfigError


def config(**sections) -> TrainingConfig:
    return TrainingConfig.from_data({"model": {"name": "retrain:tiny"}, "example_prompts": ["p"], **sections})


def test_algorithm_options_map_onto_grpo_config_fields():
    algorithm = {"group_size": 4, "prompts_per_step": 3, "max_steps": 7, "learning_rate": 3e-6, "kl_coef": 0.04,
                 "clip_range": 0.1, "clip_range_high": 0.28, "loss_aggregation": "dr_grpo",
                 "reward_scaling": "batch", "temperature": 0.7, "top_p": 0.9, "max_completion_tokens": 33,
                 "updates_per_batch": 2}
    kwargs, _ = grpo_config_kwargs(config(algorithm=algorithm, training={"seed": 5, "save_every": 3}),
                                   "out", cuda=False, bf16_supported=False)
    assert {k: kwargs[k] for k in ("num_generations", "per_device_train_batch_size", "max_steps", "learning_rate",
                                   "beta", "epsilon", "epsilon_high", "loss_type", "scale_rewards", "temperature",
                                   "top_p", "max_completion_length", "num_iterations", "seed", "save_steps")} == {
        "num_generations": 4, "per_device_train_batch_size": 12, "max_steps": 14, "learning_rate": 3e-6,
        "beta": 0.04, "epsilon": 0.1, "epsilon_high": 0.28, "loss_type": "dr_grpo", "scale_rewards": "batch",
        "temperature": 0.7, "top_p": 0.9, "max_completion_length": 33, "num_iterations": 2, "seed": 5,
        "save_steps": 6}  # TRL counts optimizer updates: 2 per step here (two passes over each batch)


def test_a_step_is_one_generated_batch_with_all_its_updates():
    """mini_batches x updates_per_batch optimizer updates per generated batch; micro-batches only split memory."""
    kwargs, _ = grpo_config_kwargs(config(algorithm={"group_size": 4, "prompts_per_step": 4, "max_steps": 5,
                                                     "mini_batches": 2, "updates_per_batch": 3},
                                          training={"micro_batch_size": 2, "log_every": 2, "save_every": 5},
                                          optimizer={"warmup_steps": 1}),
                                   "out", cuda=False, bf16_supported=False)
    args = GRPOConfig(**kwargs)
    assert args.generation_batch_size == 16  # 4 prompts x 4 completions, generated once per step
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 4)  # 8 per update
    assert (args.steps_per_generation, args.num_iterations) == (8, 3)  # 2 updates per pass, 3 passes
    assert (args.max_steps, args.logging_steps, args.save_steps, args.warmup_steps) == (30, 12, 30, 6)


def test_optimizer_settings_are_passed_explicitly():
    kwargs, _ = grpo_config_kwargs(config(optimizer={"weight_decay": 0.1, "betas": [0.9, 0.95], "eps": 1e-6,
                                                     "max_grad_norm": 0.5, "lr_scheduler": "cosine",
                                                     "min_lr_ratio": 0.1, "warmup_ratio": 0.2},
                                          algorithm={"max_steps": 10}),
                                   "out", cuda=False, bf16_supported=False)
    args = GRPOConfig(**kwargs)
    assert (args.weight_decay, args.adam_beta1, args.adam_beta2, args.adam_epsilon, args.max_grad_norm) == (
        0.1, 0.9, 0.95, 1e-6, 0.5)
    assert args.lr_scheduler_type == "cosine_with_min_lr" and args.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    assert args.get_warmup_steps(args.max_steps) == 2  # retrain rounds the ratio once, for every backend


@pytest.mark.parametrize("loss", ["grpo", "dr_grpo", "dapo"])
def test_trl_accepts_the_translated_config(tmp_path, loss):
    kwargs, _ = grpo_config_kwargs(config(algorithm={"loss_aggregation": loss}), str(tmp_path), False, False)
    args = GRPOConfig(**kwargs)
    assert args.loss_type == loss and args.use_cpu and not args.bf16


def test_weights_stay_float32_and_bf16_is_compute_only_as_on_verl():
    cpu, cpu_notes = grpo_config_kwargs(config(), "out", cuda=False, bf16_supported=False)
    gpu, gpu_notes = grpo_config_kwargs(config(), "out", cuda=True, bf16_supported=True)
    assert cpu["use_cpu"] and not cpu["bf16"] and cpu_notes[0] == "CPU: float32 weights"
    # fp32 master weights (a bf16 update of 1e-6 to 0.02 would round away), bf16 autocast
    assert gpu["bf16"] and gpu["model_init_kwargs"]["dtype"] == "float32"
    assert gpu_notes[0] == "GPU: float32 weights, bfloat16 compute (autocast)"


def test_backend_options_pass_through_and_show_in_translate():
    native = translate_config(config(backend_options={"trl": {"mask_truncated_completions": True}}),
                              cuda=False, bf16_supported=False)
    assert native.settings["GRPOConfig"]["mask_truncated_completions"] is True
    assert "mask_truncated_completions" in native.render()


def test_backend_options_for_a_field_retrain_owns_point_to_the_retrain_field():
    with pytest.raises(ConfigError) as info:
        config(backend_options={"trl": {"beta": 0.1}})
    assert "algorithm.kl_coef" in info.value.issues[0].message


def test_backend_options_typo_suggests_the_grpo_config_field():
    with pytest.raises(ConfigError) as info:
        config(backend_options={"trl": {"mask_truncated_completion": True}})
    assert "did you mean 'mask_truncated_completions'" in info.value.issues[0].message


def test_translate_has_no_side_effects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    native = translate_config(config(), cuda=False, bf16_supported=False)
    assert list(tmp_path.iterdir()) == []
    assert native.render().startswith("# native config for backend 'trl'")


def test_every_translated_key_is_a_grpo_config_field():
    kwargs, _ = grpo_config_kwargs(config(model={"name": "retrain:tiny", "lora": {"r": 4}}), "o", False, False)
    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    assert set(kwargs) <= fields
