"""Config -> the reference trainer's settings. No side effects."""

from __future__ import annotations

from typing import Any

from retrain.core.backend import NativeConfig
from retrain.core.config import TrainingConfig
from retrain.core.errors import ConfigIssue


def check_translation(config: TrainingConfig) -> list[ConfigIssue]:
    issues = []
    if config.algorithm.updates_per_batch != 1:
        issues.append(ConfigIssue(
            "algorithm.updates_per_batch", None, "the reference trainer makes one on-policy update per batch; set 1"
        ))
    if config.resources.gpus_per_node > 1:
        issues.append(ConfigIssue("resources.gpus_per_node", None, "the reference trainer uses one device; set 0 or 1"))
    return issues


def settings(config: TrainingConfig) -> dict[str, Any]:
    algorithm, training = config.algorithm, config.training
    return {
        "model": config.model.name,
        "optimizer": {"name": "AdamW", "lr": algorithm.learning_rate, "max_grad_norm": 1.0},
        "sampling": {"group_size": algorithm.group_size, "prompts_per_step": algorithm.prompts_per_step,
                     "temperature": algorithm.temperature, "top_p": algorithm.top_p,
                     "max_new_tokens": algorithm.max_completion_tokens},
        "advantage": {"baseline": "group mean", "scale_by_group_std": algorithm.reward_scaling == "group",
                      "epsilon": 1e-6},
        "loss": {"per_token": "-advantage x log-prob", "aggregation": algorithm.loss_aggregation},
        "steps": algorithm.max_steps,
        "seed": training.seed,
        "save_every": training.save_every,
    }


def translate_config(config: TrainingConfig) -> NativeConfig:
    return NativeConfig("reference", settings(config), ["plain PyTorch REINFORCE with a group baseline (tests only)"])
