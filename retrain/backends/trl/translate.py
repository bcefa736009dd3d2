"""Config -> TRL's `GRPOConfig` and `GRPOTrainer` arguments. No side effects.

The mapping (documented in docs/backends.md):

| retrain                          | TRL GRPOConfig                                   |
|----------------------------------|--------------------------------------------------|
| algorithm.group_size             | num_generations                                  |
| algorithm.prompts_per_step       | generation batch = prompts*group (all processes) |
| algorithm.mini_batches           | steps_per_generation = mini_batches x accumulation|
| training.micro_batch_size        | per_device_train_batch_size, gradient_accumulation_steps |
| algorithm.max_steps              | max_steps x updates per step (TRL counts updates)|
| algorithm.learning_rate          | learning_rate                                    |
| optimizer.*                      | weight_decay, adam_beta1/2, adam_epsilon, max_grad_norm, |
|                                  | lr_scheduler_type, warmup_steps (x updates per step)     |
| algorithm.top_k / entropy_coef   | top_k / entropy_coef                             |
| data.chat_template_kwargs        | chat_template_kwargs                             |
| training.seed                    | seed; shuffle_dataset off (retrain orders the prompts) |
| rollout.importance_sampling_*    | vllm_importance_sampling_correction (token_truncate, cap) |
| algorithm.kl_coef                | beta (use_bias_correction_kl off, as on verl)    |
| algorithm.clip_range(_high)      | epsilon, epsilon_high                            |
| algorithm.loss_aggregation       | loss_type (grpo, dr_grpo, dapo)                  |
| algorithm.reward_scaling         | scale_rewards (group, batch, none)               |
| algorithm.updates_per_batch      | num_iterations                                   |
| algorithm.temperature / top_p    | temperature / top_p                              |
| algorithm.max_completion_tokens  | max_completion_length                            |
| training.save_every / log_every  | save_steps / logging_steps (x updates per step)  |
| model.dtype                      | float32 weights + bf16/fp16 autocast (as verl)   |
| model.lora                       | GRPOTrainer(peft_config=peft.LoraConfig(...))    |
| model.loader: unsloth            | FastLanguageModel.from_pretrained/get_peft_model |
| rollout.engine (vllm / auto)     | use_vllm                                         |
| rollout.vllm_mode / server_url   | vllm_mode / vllm_server_base_url                 |
| rollout.gpu_memory_utilization   | vllm_gpu_memory_utilization (colocate)           |
| rollout.tensor_parallel_size     | vllm_tensor_parallel_size (colocate)             |
| backend_options.trl.*            | any GRPOConfig field, applied last               |
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from retrain.core.backend import NativeConfig
from retrain.core.batch import batch_issues, batch_plan, processes
from retrain.core.config import TrainingConfig
from retrain.core.errors import ConfigIssue

# Fields retrain sets from its own schema; overriding them through backend_options would make the
# neutral config lie about what ran, so they are rejected with a pointer to the right field.
_OWNED = {
    "num_generations": "algorithm.group_size",
    "per_device_train_batch_size": "training.micro_batch_size",
    "max_steps": "algorithm.max_steps",
    "learning_rate": "algorithm.learning_rate",
    "beta": "algorithm.kl_coef",
    "epsilon": "algorithm.clip_range",
    "epsilon_high": "algorithm.clip_range_high",
    "loss_type": "algorithm.loss_aggregation",
    "scale_rewards": "algorithm.reward_scaling",
    "num_iterations": "algorithm.updates_per_batch",
    "temperature": "algorithm.temperature",
    "top_p": "algorithm.top_p",
    "max_completion_length": "algorithm.max_completion_tokens",
    "top_k": "algorithm.top_k",
    "entropy_coef": "algorithm.entropy_coef",
    "steps_per_generation": "algorithm.mini_batches",
    "generation_batch_size": "algorithm.prompts_per_step",
    "gradient_accumulation_steps": "training.micro_batch_size",
    "gradient_checkpointing": "training.gradient_checkpointing",
    "save_strategy": "training.save_every",
    "weight_decay": "optimizer.weight_decay",
    "adam_beta1": "optimizer.betas",
    "adam_beta2": "optimizer.betas",
    "adam_epsilon": "optimizer.eps",
    "max_grad_norm": "optimizer.max_grad_norm",
    "lr_scheduler_type": "optimizer.lr_scheduler",
    "lr_scheduler_kwargs": "optimizer.min_lr_ratio",
    "warmup_steps": "optimizer.warmup_steps",
    "warmup_ratio": "optimizer.warmup_ratio",
    "chat_template_kwargs": "data.chat_template_kwargs",
    "shuffle_dataset": "training.seed (retrain orders the prompts)",
    "bf16": "model.dtype",
    "fp16": "model.dtype",
    "use_cpu": "resources.gpus_per_node",
    "vllm_importance_sampling_correction": "rollout.importance_sampling_correction",
    "vllm_importance_sampling_mode": "rollout.importance_sampling_correction",
    "vllm_importance_sampling_clip_max": "rollout.importance_sampling_cap",
    "report_to": "logging.trackers",
    "seed": "training.seed",
    "save_steps": "training.save_every",
    "logging_steps": "training.log_every",
    "output_dir": "training.output_dir",
    "use_vllm": "rollout.engine",
    "vllm_mode": "rollout.vllm_mode",
    "vllm_server_base_url": "rollout.server_url",
    "vllm_server_host": "rollout.server_url",
    "vllm_server_port": "rollout.server_url",
    "vllm_gpu_memory_utilization": "rollout.gpu_memory_utilization",
    "vllm_tensor_parallel_size": "rollout.tensor_parallel_size",
}

DEFAULT_VLLM_SERVER = "http://localhost:8000"  # where `trl vllm-serve` listens by default


world_size = processes  # TRL's word for it


def accelerate_config(config: TrainingConfig, cuda: bool) -> dict[str, Any]:
    """The `accelerate launch` config of a multi-GPU run: one process per GPU (DDP). FSDP and DeepSpeed
    are switched on by TRL's own fields (`backend_options.trl.fsdp` / `fsdp_config` / `deepspeed`), which
    the Trainer applies to the Accelerator in each process."""
    return {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU",
        "num_machines": 1,
        "machine_rank": 0,
        "num_processes": world_size(config),
        "gpu_ids": "all",
        "use_cpu": not cuda,  # the CPU test path (gloo); see launch.train_in_processes
        "mixed_precision": "no",  # the Trainer sets it from GRPOConfig's bf16/fp16
        "rdzv_backend": "static",
        "same_network": True,
        "main_training_function": "main",
    }


def trainer_names(config: TrainingConfig) -> tuple[str, str]:
    """TRL's config and trainer class for the algorithm: RLOO has its own trainer, the rest is GRPOTrainer."""
    return ("RLOOConfig", "RLOOTrainer") if config.algorithm.advantage == "rloo" else ("GRPOConfig", "GRPOTrainer")


def config_class(config: TrainingConfig) -> type:
    import trl

    return getattr(trl, trainer_names(config)[0])  # type: ignore[no-any-return]


def _check_algorithm(config: TrainingConfig) -> list[ConfigIssue]:
    """The combinations of the algorithm's parts TRL's two trainers have (the parts alone: `Capabilities`)."""
    algorithm = config.algorithm
    issues = []

    def issue(part: str, message: str) -> None:
        field = f"algorithm.{part}" if part in algorithm.model_fields_set else "algorithm.name"
        issues.append(ConfigIssue(field, None, message))

    if algorithm.advantage == "rloo":  # TRL's RLOOTrainer: what it fixes
        if algorithm.policy_loss != "clip":
            issue("policy_loss", f"TRL's RLOOTrainer clips the sequence's ratio; it has no '{algorithm.policy_loss}' "
                  "loss (use `backend: verl`, or policy_loss: clip)")
        if algorithm.loss_aggregation != "sequence_sum":
            issue("loss_aggregation", "TRL's RLOOTrainer sums a completion's tokens and averages completions; set "
                  "loss_aggregation: sequence_sum (or use `backend: verl`)")
        if algorithm.kl_coef > 0 and algorithm.kl_placement != "reward":
            issue("kl_placement", "TRL's RLOOTrainer puts the KL in the reward; set kl_placement: reward "
                  "(or use `backend: verl`)")
        if algorithm.entropy_coef > 0:
            issues.append(ConfigIssue("algorithm.entropy_coef", None,
                                      "TRL's RLOOTrainer has no entropy bonus; set 0 (or use `backend: verl`)"))
        if config.environment is not None:
            issues.append(ConfigIssue("environment", None, "TRL's RLOOTrainer cannot run environment episodes "
                                      "(no rollout_func); use algorithm grpo on TRL, or `backend: verl`"))
    else:
        if algorithm.loss_aggregation == "sequence_sum":
            issue("loss_aggregation", "TRL sums per sequence only in RLOO (RLOOTrainer); choose grpo, dr_grpo or "
                  "dapo, or use `backend: verl`")
        if algorithm.kl_coef > 0 and algorithm.kl_placement == "reward":
            issue("kl_placement", "TRL's GRPOTrainer puts the KL in the loss; set kl_placement: loss "
                  "(or use `backend: verl`)")
    return issues


def check_translation(config: TrainingConfig) -> list[ConfigIssue]:
    issues = batch_issues(config) + _check_rollout(config) + _check_algorithm(config)
    cpu = config.resources.gpus_per_node == 0
    if config.model.dtype == "float16" and cpu and config.model.loader == "transformers":
        issues.append(ConfigIssue(
            "model.dtype", None, "float16 mixed precision needs a GPU; on a CPU use float32, auto or bfloat16"
        ))
    options = config.backend_options.get("trl", {})
    if options:
        native_class = config_class(config)
        class_name = native_class.__name__
        known = {f.name for f in dataclasses.fields(native_class)}
        for key, value in options.items():
            if key in _OWNED:
                issues.append(ConfigIssue(
                    f"backend_options.trl.{key}", None, f"set this through `{_OWNED[key]}` instead"
                ))
            elif key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                issues.append(ConfigIssue(f"backend_options.trl.{key}", None, f"not a {class_name} field{hint}"))
            elif key == "model_init_kwargs" and not isinstance(value, dict):
                issues.append(ConfigIssue(
                    f"backend_options.trl.{key}", None, f"got {value!r}, expected a mapping (merged with model.dtype)"
                ))
            else:
                expected = _type_problem(native_class, key, value)
                if expected:
                    issues.append(ConfigIssue(
                        f"backend_options.trl.{key}", None, f"got {value!r}, expected {expected} ({class_name}.{key})"
                    ))
    return issues


def _check_rollout(config: TrainingConfig) -> list[ConfigIssue]:
    """What TRL can do with `rollout` and `model.loader` in this environment (GPU presence is checked at start)."""
    import importlib.util

    issues = []
    rollout = config.rollout
    wants_vllm = rollout.engine == "vllm" or rollout.vllm_mode == "server"
    if config.environment is not None and wants_vllm:
        field = "rollout.engine" if rollout.engine == "vllm" else "rollout.vllm_mode"
        issues.append(ConfigIssue(
            field, None,
            "environments on TRL generate with transformers in this version; set rollout.engine: auto "
            "(or transformers), or remove the environment",
        ))
    elif wants_vllm and importlib.util.find_spec("vllm") is None:
        issues.append(ConfigIssue(
            "rollout.engine" if rollout.engine == "vllm" else "rollout.vllm_mode", None,
            "vLLM is not installed here: `pip install 'retrain[vllm]'` (CUDA GPUs), or set engine: auto",
        ))
    if rollout.vllm_mode == "server":
        for field, value, flag in (
            ("gpu_memory_utilization", rollout.gpu_memory_utilization, "--gpu-memory-utilization"),
            ("tensor_parallel_size", rollout.tensor_parallel_size if rollout.tensor_parallel_size > 1 else None,
             "--tensor-parallel-size"),
        ):
            if value is not None:
                issues.append(ConfigIssue(
                    f"rollout.{field}", None,
                    f"in server mode the server owns this: start it with `trl vllm-serve ... {flag} {value}` "
                    "and remove it here",
                ))
    world = world_size(config)
    for sharding in ("fsdp", "deepspeed"):
        if config.backend_options.get("trl", {}).get(sharding) and world < 2:
            issues.append(ConfigIssue(
                f"backend_options.trl.{sharding}", None,
                "shards the model across training processes, and this run has one; set resources.gpus_per_node "
                "to 2 or more, or remove it",
            ))
    if rollout.vllm_mode == "colocate" and rollout.engine != "transformers" and world % rollout.tensor_parallel_size:
        issues.append(ConfigIssue(
            "rollout.tensor_parallel_size", None,
            f"colocated vLLM engines of {rollout.tensor_parallel_size} GPUs cannot split the {world} training "
            "processes; use a divisor of resources.gpus_per_node",
        ))
    if config.model.loader == "unsloth":
        if world > 1:
            issues.append(ConfigIssue(
                "model.loader", None, "retrain runs Unsloth on one GPU; set resources.gpus_per_node: 1 or loader: "
                "transformers",
            ))
        if importlib.util.find_spec("unsloth") is None:
            issues.append(ConfigIssue(
                "model.loader", None,
                "unsloth is not installed here: `pip install 'retrain[unsloth]'` (in place of retrain[trl]: "
                "unsloth needs TRL 1.15), or set loader: transformers",
            ))
        if rollout.vllm_mode == "server":
            issues.append(ConfigIssue(
                "rollout.vllm_mode", None,
                "with loader unsloth, vLLM runs inside the trainer (unsloth's fast_inference); use colocate",
            ))
        if config.model.dtype == "float16" and config.model.lora is None:
            issues.append(ConfigIssue(
                "model.dtype", None,
                "Unsloth would load float16 weights, and full fine-tuning in fp16 mixed precision needs float32 "
                "master weights; use bfloat16 (or auto), or train LoRA adapters",
            ))
    return issues


def resolve_engine(config: TrainingConfig, cuda: bool, vllm_installed: bool) -> tuple[str, str]:
    """The engine `rollout.engine` means on this machine, and why (for the notes)."""
    rollout = config.rollout
    if rollout.engine != "auto":
        return rollout.engine, f"rollout: {rollout.engine} (asked for)"
    if rollout.vllm_mode == "server":
        return "vllm", "rollout: vLLM server (vllm_mode: server)"
    if config.environment is not None:
        return "transformers", "rollout: transformers (environments on TRL generate with transformers)"
    if not cuda:
        return "transformers", "rollout: transformers (no GPU)"
    if not vllm_installed:
        return "transformers", "rollout: transformers; `pip install 'retrain[vllm]'` to generate with vLLM"
    return "vllm", "rollout: vLLM (GPU and vllm found)"


_SCHEDULERS = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


def rollout_kwargs(config: TrainingConfig, engine: str) -> dict[str, Any]:
    """The GRPOConfig fields of the generation engine."""
    if engine != "vllm":
        return {"use_vllm": False}
    rollout = config.rollout
    kwargs: dict[str, Any] = {
        "use_vllm": True, "vllm_mode": rollout.vllm_mode,
        # TRL's correction is on by default; retrain's default is off, as on verl. When on: truncated
        # per-token weights, as verl's rollout_is: token.
        "vllm_importance_sampling_correction": rollout.importance_sampling_correction,
        "vllm_importance_sampling_mode": "token_truncate",
        "vllm_importance_sampling_clip_max": rollout.importance_sampling_cap,
    }
    if rollout.vllm_mode == "server":
        kwargs["vllm_server_base_url"] = rollout.server_url or DEFAULT_VLLM_SERVER
    else:
        kwargs["vllm_tensor_parallel_size"] = rollout.tensor_parallel_size
        if rollout.gpu_memory_utilization is not None:
            kwargs["vllm_gpu_memory_utilization"] = rollout.gpu_memory_utilization
    return kwargs


def _type_problem(config_class: type, field: str, value: Any) -> str | None:
    """The type a GRPOConfig field needs, if `value` is not of it (TRL itself does not check: a wrong type
    would be used as is, or fail when training starts)."""
    import typing

    from pydantic import TypeAdapter, ValidationError

    try:
        annotation = typing.get_type_hints(config_class)[field]
        TypeAdapter(annotation).validate_python(value, strict=True)
    except ValidationError:
        return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
    except Exception:  # noqa: BLE001 - a type pydantic cannot check: leave it to TRL
        return None
    return None


def _precision(config: TrainingConfig, cuda: bool, bf16_supported: bool) -> tuple[dict[str, Any], list[str]]:
    """model.dtype means the same on every backend: float32 master weights (what the optimizer updates),
    computed in bf16/fp16 under autocast when asked, as verl's FSDP mixed precision does. (A model loaded
    in bf16 and updated in bf16 would round small updates away: 0.02 - 1e-6 == 0.02 in bf16.)"""
    dtype = config.model.dtype
    device = {} if cuda else {"use_cpu": True}
    if dtype == "auto":
        dtype = "bfloat16" if cuda and bf16_supported else "float32"
    precision = {"bf16": dtype == "bfloat16", "fp16": dtype == "float16", "model_init_kwargs": {"dtype": "float32"}}
    where = "GPU" if cuda else "CPU"
    note = f"{where}: float32 weights" + ("" if dtype == "float32" else f", {dtype} compute (autocast)")
    return {**device, **precision}, [note]


def detect_hardware() -> tuple[bool, bool]:
    import torch

    cuda = torch.cuda.is_available()
    return cuda, bool(cuda and torch.cuda.is_bf16_supported())


def vllm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def grpo_config_kwargs(
    config: TrainingConfig, output_dir: str, cuda: bool, bf16_supported: bool, has_vllm: bool = False
) -> tuple[dict[str, Any], list[str]]:
    algorithm = config.algorithm
    training = config.training
    precision, notes = _precision(config, cuda, bf16_supported)
    engine, why = resolve_engine(config, cuda, has_vllm)
    notes.append(why)
    unused = config.rollout.vllm_settings()
    if engine == "transformers" and unused:
        notes.append(f"{', '.join(unused)} unused: generating with transformers")
    optimizer = config.optimizer
    plan = batch_plan(config, gpu=config.resources.gpus_per_node > 0)  # as verl decides it: from the config
    # TRL counts optimizer updates; a retrain step is one generated batch and all its updates.
    updates = plan.updates_per_step
    kwargs: dict[str, Any] = {
        "output_dir": output_dir,
        "num_generations": algorithm.group_size,
        "per_device_train_batch_size": plan.micro,
        "gradient_accumulation_steps": plan.accumulation,
        "steps_per_generation": plan.accumulation * plan.mini_batches,
        "max_steps": algorithm.max_steps * updates,
        "learning_rate": algorithm.learning_rate,
        "weight_decay": optimizer.weight_decay,
        "adam_beta1": optimizer.betas[0],
        "adam_beta2": optimizer.betas[1],
        "adam_epsilon": optimizer.eps,
        "max_grad_norm": optimizer.max_grad_norm,
        "lr_scheduler_type": "cosine_with_min_lr" if optimizer.min_lr_ratio else _SCHEDULERS[optimizer.lr_scheduler],
        "warmup_steps": optimizer.warmup_for(algorithm.max_steps) * updates,
        "beta": algorithm.kl_coef,
        # The plain k3 KL term, as verl computes it; TRL 1.16 would weight it by the importance ratio
        # (tests/parity/test_loss.py). backend_options.trl.use_bias_correction_kl: true turns that back on.
        "use_bias_correction_kl": False,
        "epsilon": algorithm.clip_range,
        "epsilon_high": algorithm.clip_range_high or algorithm.clip_range,
        "loss_type": algorithm.loss_aggregation,
        "scale_rewards": algorithm.reward_scaling,
        "num_iterations": algorithm.updates_per_batch,
        "temperature": algorithm.temperature,
        "top_p": algorithm.top_p,
        "top_k": algorithm.top_k,
        "entropy_coef": algorithm.entropy_coef,
        "max_completion_length": algorithm.max_completion_tokens,
        "chat_template_kwargs": dict(config.data.chat_template_kwargs) or None,
        "seed": training.seed,
        "shuffle_dataset": False,  # retrain writes the prompts in the seeded order both backends read
        "save_strategy": "steps",
        "save_steps": training.save_every * updates,
        "logging_steps": training.log_every * updates,
        "gradient_checkpointing": training.gradient_checkpointing,
        "report_to": "none",
        "disable_tqdm": True,  # retrain shows its own progress bar
        "log_completions": False,  # retrain writes samples with their reward breakdowns
        **precision,
        **rollout_kwargs(config, engine),
    }
    if algorithm.advantage == "rloo":  # fields RLOOConfig does not have (their meaning is fixed there)
        for key in _GRPO_ONLY:
            kwargs.pop(key)
    kwargs.update(_policy_loss_kwargs(config))
    if config.model.revision:
        kwargs["model_init_kwargs"] = {**kwargs["model_init_kwargs"], "revision": config.model.revision}
    if optimizer.min_lr_ratio:
        kwargs["lr_scheduler_kwargs"] = {"min_lr_rate": optimizer.min_lr_ratio}
    if world_size(config) > 1:
        kwargs["ddp_find_unused_parameters"] = False  # every trained weight is used; True costs a graph walk
    extra = dict(config.backend_options.get("trl", {}))
    if "model_init_kwargs" in extra:
        kwargs["model_init_kwargs"] = {**kwargs["model_init_kwargs"], **extra.pop("model_init_kwargs")}
    kwargs.update(extra)
    if config.backend_options.get("trl"):
        notes.append(f"backend_options.trl applied: {sorted(config.backend_options['trl'])}")
    return kwargs, notes


_GRPO_ONLY = ("loss_type", "scale_rewards", "entropy_coef", "use_bias_correction_kl")


def _policy_loss_kwargs(config: TrainingConfig) -> dict[str, Any]:
    """The fields of the policy loss, advantage and KL placement. GRPOTrainer: `loss_type` carries both the
    loss (cispo, sapo) and the aggregation; GSPO is the sequence-level ratio. RLOOTrainer has neither field:
    its loss and aggregation are fixed (checked by _check_algorithm), its advantage is optionally whitened."""
    algorithm = config.algorithm
    if algorithm.advantage == "rloo":
        return {"normalize_advantages": algorithm.reward_scaling == "batch"}
    if algorithm.policy_loss == "cispo":
        # TRL's cispo caps the ratio at epsilon_high itself (an absolute cap): retrain's 1 + clip_range_high.
        return {"loss_type": "cispo", "epsilon_high": 1 + (algorithm.clip_range_high or algorithm.clip_range)}
    if algorithm.policy_loss == "sapo":
        return {"loss_type": "sapo", "sapo_temperature_pos": algorithm.sapo_temperature_pos,
                "sapo_temperature_neg": algorithm.sapo_temperature_neg}
    if algorithm.policy_loss == "gspo":
        return {"importance_sampling_level": "sequence"}
    return {}


def peft_kwargs(config: TrainingConfig) -> dict[str, Any] | None:
    lora = config.model.lora
    if lora is None:
        return None
    return {
        "r": lora.r,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": lora.target_modules,
        "task_type": "CAUSAL_LM",
    }


def translate_config(
    config: TrainingConfig, *, cuda: bool | None = None, bf16_supported: bool | None = None
) -> NativeConfig:
    """What TRL will receive. Hardware is detected unless given (tests pass it explicitly)."""
    if cuda is None or bf16_supported is None:
        detected = detect_hardware()
        cuda = detected[0] if cuda is None else cuda
        bf16_supported = detected[1] if bf16_supported is None else bf16_supported
    has_vllm = vllm_installed()
    kwargs, notes = grpo_config_kwargs(config, "<run dir>/checkpoints", cuda, bf16_supported, has_vllm)
    trainer: dict[str, Any] = {
        "model": config.model.name,
        "reward_funcs": ["retrain Scorer (one TRL reward function; components logged via log_metric)"],
        "peft_config": peft_kwargs(config),
    }
    config_name, trainer_name = trainer_names(config)
    settings: dict[str, Any] = {config_name: kwargs, trainer_name: trainer}
    if world_size(config) > 1:
        settings["launch"] = {
            "command": "accelerate launch --config_file <run dir>/trl/accelerate.yaml "
                       "-m retrain.backends.trl.worker <run dir>",
            "accelerate.yaml": accelerate_config(config, cuda),
        }
        notes.append(f"{world_size(config)} training processes through accelerate launch (one per GPU)")
    if config.model.loader == "unsloth":
        from retrain.backends.trl import loader

        engine, _ = resolve_engine(config, cuda, has_vllm)
        trainer["model"] = "FastLanguageModel (below)"
        trainer["peft_config"] = None
        settings["unsloth"] = {
            "FastLanguageModel.from_pretrained": loader.from_pretrained_kwargs(config, config.model.name, engine),
            "FastLanguageModel.get_peft_model": loader.get_peft_model_kwargs(config),
        }
        notes.append("model loaded by Unsloth (model.loader: unsloth)")
    return NativeConfig("trl", settings, notes)
