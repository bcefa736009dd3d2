"""Is every config field honoured? A probe that changes one field at a time and looks at what a backend does.

A field reaches a run in one of two ways:
- retrain applies it itself, the same way for every backend (`RETRAIN_SIDE`: the data a run reads, the
  Scorer, the environment, the run directory), or
- the backend's translation carries it: then changing it changes the native config, or it is a
  validation error naming it (the backend cannot honour that value).

`probe(backend, field)` sets the field to its `PROBES` value on a small base config and says which:
'honoured', 'rejected', 'noted' (only the translation's notes change: e.g. a vLLM setting on a machine
without a GPU, noted as unused so that the same YAML serves the GPU machine), or 'ignored' (a silently
dropped field: the bug this catches). The conformance kit
runs it for every field; docs/config.md's backends column is written from the same results.
"""

from __future__ import annotations

import json
import typing
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel

from retrain.core.config import TrainingConfig
from retrain.core.config.messages import model_in
from retrain.core.errors import ConfigError

Verdict = Literal["honoured", "rejected", "noted", "ignored"]

BASE: dict[str, Any] = {"model": {"name": "retrain:tiny"}, "example_prompts": ["A prompt.", "Another prompt."],
                        "algorithm": {"group_size": 2, "prompts_per_step": 2, "max_steps": 4}}

# Applied by retrain itself, identically whatever backend trains (so no backend's native config shows them).
RETRAIN_SIDE: dict[str, str] = {
    "backend": "selects the backend",
    "task": "recorded in the run directory; not shown to the model",
    "data": "retrain reads, orders and length-checks the rows before any backend sees them (retrain.data)",
    "verifiers": "the Scorer",
    "rewards": "the Scorer",
    "environment": "retrain's episode loop, bridged to each backend's multi-turn hook",
    "evaluation": "retrain's evaluator, over what the run leaves (the same code for every backend)",
    "logging": "retrain feeds the trackers from the run directory (the same code for every backend)",
    "algorithm.overlong_buffer": "the Scorer (DAPO's overlong punishment is the reward component 'overlong')",
    "algorithm.overlong_penalty": "the Scorer (DAPO's overlong punishment is the reward component 'overlong')",
    "training.output_dir": "the run directory",
    "training.run_name": "the run directory",
    "training.samples_per_step": "retrain writes the samples",
    "training.resume": "the run directory to resume",
    "backend_options": "passed to its backend as is (shown by `retrain translate`)",
}

# field -> (a value other than the default, extra base settings the value needs).
PROBES: dict[str, tuple[Any, dict[str, Any]]] = {
    "model.name": ("retrain:smollm2-135m-instruct", {}),
    "model.dtype": ("float16", {"resources": {"gpus_per_node": 1}}),  # verl runs float32 only on a CPU
    "model.lora": ({"r": 4}, {}),
    "model.lora.r": (4, {"model": {"name": "retrain:tiny", "lora": {}}}),
    "model.lora.alpha": (8, {"model": {"name": "retrain:tiny", "lora": {}}}),
    "model.lora.dropout": (0.1, {"model": {"name": "retrain:tiny", "lora": {}}}),
    "model.lora.target_modules": (["q_proj"], {"model": {"name": "retrain:tiny", "lora": {}}}),
    "model.revision": ("main", {"model": {"name": "org/model"}}),
    "model.loader": ("unsloth", {}),
    "algorithm.name": ("rloo", {}),
    "algorithm.advantage": ("grpo", {"algorithm": {"name": "rloo"}}),  # (TRL: only RLOOTrainer sums per sequence)
    "algorithm.policy_loss": ("gspo", {}),
    "algorithm.kl_placement": ("reward", {"algorithm": {"kl_coef": 0.05}, "model": {"name": "retrain:tiny",
                                                                                     "lora": {}}}),
    "algorithm.dynamic_sampling": (True, {}),
    "algorithm.sapo_temperature_pos": (1.5, {"algorithm": {"name": "sapo"}}),
    "algorithm.sapo_temperature_neg": (1.5, {"algorithm": {"name": "sapo"}}),
    "algorithm.critic": ({"learning_rate": 2e-5}, {"algorithm": {"name": "ppo"}}),
    "algorithm.critic.model": ("retrain:smollm2-135m-instruct", {"algorithm": {"name": "ppo"}}),
    "algorithm.critic.learning_rate": (2e-5, {"algorithm": {"name": "ppo"}}),
    "algorithm.critic.value_clip": (0.3, {"algorithm": {"name": "ppo"}}),
    "algorithm.critic.gamma": (0.99, {"algorithm": {"name": "ppo"}}),
    "algorithm.critic.lam": (0.95, {"algorithm": {"name": "ppo"}}),
    "algorithm.critic.warmup_steps": (1, {"algorithm": {"name": "ppo"}}),
    "algorithm.group_size": (4, {}),
    "algorithm.prompts_per_step": (4, {}),
    "algorithm.max_steps": (7, {}),
    "algorithm.learning_rate": (3e-6, {}),
    "algorithm.kl_coef": (0.05, {"model": {"name": "retrain:tiny", "lora": {}}}),
    "algorithm.clip_range": (0.1, {}),
    "algorithm.clip_range_high": (0.28, {}),
    "algorithm.loss_aggregation": ("grpo", {}),
    "algorithm.reward_scaling": ("none", {}),
    "algorithm.temperature": (0.7, {}),
    "algorithm.top_p": (0.9, {}),
    "algorithm.top_k": (20, {}),
    "algorithm.max_completion_tokens": (33, {}),
    "algorithm.updates_per_batch": (2, {}),
    "algorithm.mini_batches": (2, {}),
    "algorithm.entropy_coef": (0.01, {}),
    "optimizer.weight_decay": (0.1, {}),
    "optimizer.betas": ([0.9, 0.95], {}),
    "optimizer.eps": (1e-6, {}),
    "optimizer.max_grad_norm": (0.5, {}),
    "optimizer.lr_scheduler": ("cosine", {}),
    "optimizer.warmup_steps": (2, {}),
    "optimizer.warmup_ratio": (0.5, {}),
    "optimizer.min_lr_ratio": (0.1, {"optimizer": {"lr_scheduler": "cosine"}}),
    "rollout.engine": ("vllm", {}),
    "rollout.vllm_mode": ("server", {}),
    "rollout.server_url": ("http://localhost:9000", {"rollout": {"vllm_mode": "server"}}),
    "rollout.gpu_memory_utilization": (0.4, {"resources": {"gpus_per_node": 1}}),
    "rollout.tensor_parallel_size": (2, {"resources": {"gpus_per_node": 2}}),
    "rollout.importance_sampling_correction": (True, {"resources": {"gpus_per_node": 1}}),
    "rollout.importance_sampling_cap": (3.0, {"resources": {"gpus_per_node": 1},
                                              "rollout": {"importance_sampling_correction": True}}),
    "training.seed": (7, {}),
    "training.save_every": (2, {}),
    "training.log_every": (2, {}),
    "training.gradient_checkpointing": (True, {}),
    "training.micro_batch_size": (2, {}),
    "resources.nodes": (2, {"resources": {"gpus_per_node": 1, "ray_address": "127.0.0.1:6379"}}),
    "resources.gpus_per_node": (2, {}),
    "resources.ray_address": ("127.0.0.1:6379", {}),
}


def leaf_fields(model: type[BaseModel] = TrainingConfig, prefix: str = "") -> list[str]:
    """Every field of the schema a user can set, as a dotted path (sections themselves are not listed; a
    section that can be absent, like model.lora, is listed along with its fields)."""
    found = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        sub = _section_model(field.annotation)
        if sub is None:
            found.append(path)
            continue
        if not field.is_required() and field.default is None:
            found.append(path)  # an optional section: setting it at all is a choice
        found += leaf_fields(sub, f"{path}.")
    return found


def _section_model(annotation: Any) -> type[BaseModel] | None:
    if typing.get_origin(annotation) in (list, dict):
        return None  # lists of specs (verifiers, rewards) are retrain-side, listed whole
    return model_in(annotation)


def retrain_side_reason(field: str) -> str | None:
    for prefix, reason in RETRAIN_SIDE.items():
        if field == prefix or field.startswith(f"{prefix}."):
            return reason
    return None


def _set(data: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    data = {key: (dict(v) if isinstance(v, dict) else v) for key, v in data.items()}
    node = data
    parts = field.split(".")
    for part in parts[:-1]:
        node[part] = dict(node.get(part) or {})
        node = node[part]
    node[parts[-1]] = value
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def _native(backend: str, data: dict[str, Any]) -> tuple[Any, list[str]]:
    return _translated(backend, json.dumps(data, sort_keys=True))


@cache
def _translated(backend: str, data: str) -> tuple[Any, list[str]]:
    from retrain.core.registry import load_backend

    config = TrainingConfig.from_data({**json.loads(data), "backend": backend})
    native = load_backend(backend).translate(config)
    return native.settings, native.notes


def _paths(data: dict[str, Any], prefix: str = "") -> list[str]:
    return [path for key, value in data.items()
            for path in ([f"{prefix}{key}"] + (_paths(value, f"{prefix}{key}.") if isinstance(value, dict) else []))]


@cache
def probe(backend: str, field: str) -> Verdict:
    """What `backend` does with `field` set to its probe value: 'honoured' (the native config changes),
    'rejected' (a validation error naming the field) or 'ignored'."""
    value, extra = PROBES[field]
    base = _merge(BASE, extra)
    named = [field, *_paths(extra)]  # the field, or what it needs (server_url needs vllm_mode: server)
    try:
        changed = _native(backend, _set(base, field, value))
    except ConfigError as exc:
        if any(issue.field is not None and any(issue.field == n or issue.field.startswith(f"{n}.") for n in named)
               for issue in exc.issues):
            return "rejected"
        raise AssertionError(f"probing {field}={value!r} on {backend} failed on another field: {exc}") from exc
    try:
        before = _native(backend, base)
    except ConfigError as exc:
        raise AssertionError(f"the probe base for {field} is not valid on {backend}: {exc}") from exc
    if before[0] != changed[0]:
        return "honoured"
    return "noted" if before[1] != changed[1] else "ignored"
