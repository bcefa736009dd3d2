"""Config -> the reference trainer's settings. No side effects."""

from __future__ import annotations

from typing import Any

from retrain.core.backend import NativeConfig
from retrain.core.config import TrainingConfig
from retrain.core.errors import ConfigIssue


def check_translation(config: TrainingConfig) -> list[ConfigIssue]:
    algorithm, optimizer = config.algorithm, config.optimizer
    issues = []
    if config.algorithm.updates_per_batch != 1:
        issues.append(ConfigIssue(
            "algorithm.updates_per_batch", None, "the reference trainer makes one on-policy update per batch; set 1"
        ))
    if config.resources.gpus_per_node > 1:
        issues.append(ConfigIssue("resources.gpus_per_node", None, "the reference trainer uses one device; set 0 or 1"))
    # What this small trainer does not implement: rejected, naming the field, rather than ignored.
    unsupported = [
        ("algorithm.mini_batches", algorithm.mini_batches != 1, "one update per batch; set 1"),
        ("algorithm.entropy_coef", algorithm.entropy_coef != 0, "no entropy bonus; set 0"),
        ("optimizer.lr_scheduler", optimizer.lr_scheduler != "constant", "a constant learning rate only"),
        ("optimizer.warmup_steps", optimizer.warmup_steps != 0, "no warmup; remove it"),
        ("optimizer.warmup_ratio", optimizer.warmup_ratio is not None, "no warmup; remove it"),
        ("training.micro_batch_size", config.training.micro_batch_size is not None, "the whole batch at once"),
        ("training.gradient_checkpointing", config.training.gradient_checkpointing, "not implemented"),
        ("training.log_every", config.training.log_every != 1, "logs every step; set 1"),
        ("model.dtype", config.model.dtype not in ("auto", "float32"), "float32 only"),
    ] + [(field, True, "generates with transformers; remove it") for field in config.rollout.vllm_settings()]
    issues += [ConfigIssue(field, None, f"the reference trainer: {why}") for field, bad, why in unsupported if bad]
    return issues


def settings(config: TrainingConfig) -> dict[str, Any]:
    algorithm, training, optimizer = config.algorithm, config.training, config.optimizer
    return {
        "model": {"name": config.model.name, "revision": config.model.revision},
        "optimizer": {"name": "AdamW", "lr": algorithm.learning_rate, "weight_decay": optimizer.weight_decay,
                      "betas": list(optimizer.betas), "eps": optimizer.eps, "max_grad_norm": optimizer.max_grad_norm},
        "sampling": {"group_size": algorithm.group_size, "prompts_per_step": algorithm.prompts_per_step,
                     "temperature": algorithm.temperature, "top_p": algorithm.top_p, "top_k": algorithm.top_k,
                     "max_new_tokens": algorithm.max_completion_tokens},
        "advantage": {"baseline": "group mean", "scale_by_group_std": algorithm.reward_scaling == "group",
                      "epsilon": 1e-6},
        "loss": {"per_token": "-advantage x log-prob", "aggregation": algorithm.loss_aggregation},
        "steps": algorithm.max_steps,
        "seed": training.seed,
        "save_every": training.save_every,
    }


def translate_config(config: TrainingConfig) -> NativeConfig:
    notes = ["plain PyTorch REINFORCE with a group baseline (tests only)"]
    if config.algorithm.clip_range != 0.2 or config.algorithm.clip_range_high is not None:
        notes.append("algorithm.clip_range has no effect here: one on-policy update per batch (every ratio is 1)")
    return NativeConfig("reference", settings(config), notes)
