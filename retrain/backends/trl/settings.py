"""The effective settings TRL will apply, read back from the `GRPOConfig` retrain composes (TRL's and
transformers' defaults included), in the neutral words of `retrain.core.settings`."""

from __future__ import annotations

from typing import Any

from retrain.core.config import TrainingConfig

# TRL's advantage: (reward - group mean) / (group std + 1e-4) (trl/trainer/grpo_trainer.py, _calculate_advantages).
TRL_STD_EPSILON = 1e-4
_IS_MODES = {"token_truncate": "per token, truncated", "token_mask": "per token, masked",
             "sequence_truncate": "per sequence, truncated", "sequence_mask": "per sequence, masked"}
_SCHEDULES = {"constant": "constant", "constant_with_warmup": "constant", "linear": "linear", "cosine": "cosine",
              "cosine_with_min_lr": "cosine"}


# loss_type -> the aggregation it implies (cispo averages as dapo does, sapo as grpo does).
_AGGREGATION = {"cispo": "dapo", "sapo": "grpo", "rloo": "sequence_sum"}


def _ratio(loss_type: str, level: str) -> str:
    kind = {"cispo": "cispo (stop-gradient, capped)", "sapo": "sapo (soft gate)"}.get(loss_type, "clipped")
    return f"{kind}, per {level}"


def effective_settings(config: TrainingConfig, cuda: bool = False, bf16_supported: bool = False) -> dict[str, Any]:
    from retrain.backends.trl.translate import config_class, grpo_config_kwargs, peft_kwargs, world_size

    kwargs, _ = grpo_config_kwargs(config, "<run dir>/checkpoints", cuda, bf16_supported)
    # transformers refuses bf16/fp16 where this machine has no GPU; the precision is read from the fields as
    # composed for the config's GPUs, the rest from TRL's own config object.
    mixed = {"bf16": kwargs.get("bf16", False), "fp16": kwargs.get("fp16", False)}
    # GRPOConfig, or RLOOConfig for the rloo advantage. (TRL types post-init fields optional.)
    args: Any = config_class(config)(**{**kwargs, "bf16": False, "fp16": False})
    rloo = not hasattr(args, "loss_type")
    loss_type = "rloo" if rloo else args.loss_type
    processes = world_size(config)
    updates_per_pass = args.steps_per_generation // args.gradient_accumulation_steps
    updates = updates_per_pass * args.num_iterations
    optim = str(getattr(args.optim, "value", args.optim))
    schedule = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
    warmup_updates = args.get_warmup_steps(args.max_steps)
    lora = peft_kwargs(config)
    weights = str(args.model_init_kwargs.get("dtype", "float32")) if args.model_init_kwargs else "float32"
    settings: dict[str, Any] = {
        "optimizer.name": "AdamW" if optim.startswith("adamw_torch") else optim,
        "optimizer.lr": args.learning_rate,
        "optimizer.weight_decay": args.weight_decay,
        # transformers spares biases and norm weights; retrain's trainer decays every weight, as verl does
        # (launch.RetrainTrainer.get_decay_parameter_names).
        "optimizer.decayed_parameters": "all",
        "optimizer.betas": [args.adam_beta1, args.adam_beta2],
        "optimizer.eps": args.adam_epsilon,
        "optimizer.max_grad_norm": args.max_grad_norm,
        "schedule.type": _SCHEDULES.get(schedule, schedule),
        "schedule.warmup_steps": warmup_updates / updates,
        "schedule.min_lr_ratio": (args.lr_scheduler_kwargs or {}).get("min_lr_rate", 0.0),
        "schedule.moves_within_a_step": updates > 1 and (warmup_updates > 0 or schedule not in ("constant",
                                                                                                "constant_with_warmup")),
        "batch.steps": args.max_steps / updates,
        # (GRPOConfig's own generation_batch_size counts this machine's processes, not the config's.)
        "batch.prompts_per_step": args.per_device_train_batch_size * processes * args.steps_per_generation
        // args.num_generations,
        "batch.group_size": args.num_generations,
        "batch.mini_batch_completions": args.per_device_train_batch_size * args.gradient_accumulation_steps * processes,
        "batch.passes": args.num_iterations,
        "batch.updates_per_step": updates,
        "batch.micro_batch": args.per_device_train_batch_size,
        # TRL shuffles the generated batch before splitting it (GRPOTrainer._prepare_inputs).
        "batch.mini_batch_order": "shuffled" if updates_per_pass > 1 else "one mini-batch",
        "data.order": "file order" if not args.shuffle_dataset else "shuffled by TRL",
        "data.chat_template_kwargs": args.chat_template_kwargs or {},
        "prompt.truncation": "never",  # TRL 1.16 has no prompt length limit
        "sampling.temperature": args.temperature,
        "sampling.top_p": args.top_p,
        "sampling.top_k": args.top_k,
        "sampling.max_tokens": args.max_completion_length,
        "sampling.seed": args.seed,
        "precision.weights": weights,
        "precision.compute": "bfloat16" if mixed["bf16"] else "float16" if mixed["fp16"] else weights,
        "kl.coef": args.beta,
        # RLOOTrainer: k1 of the sampling-time log-probs, summed over the completion, taken from its reward.
        "kl.estimator": ("k1" if rloo else "k3") if args.beta else "off",
        "kl.placement": ("reward" if rloo else "loss") if args.beta else "none",
        "kl.importance_weighted": bool(getattr(args, "use_bias_correction_kl", False)) and bool(args.beta),
        "kl.clamp": "none",
        # cispo: the ratio capped at epsilon_high (absolute), no lower bound; sapo: a soft gate, no clip.
        "clip.low": None if loss_type in ("cispo", "sapo") else args.epsilon,
        "clip.high": args.epsilon_high - 1 if loss_type == "cispo" else None if loss_type == "sapo"
        else args.epsilon_high,
        "clip.dual": f"delta {args.delta}" if getattr(args, "delta", None) is not None else "none",
        "loss.aggregation": _AGGREGATION.get(loss_type, loss_type),
        "loss.ratio": "clipped, whole sequence" if rloo else _ratio(loss_type, args.importance_sampling_level),
        "loss.masks_truncated": args.mask_truncated_completions,
        "batch.dynamic_sampling": False,  # TRL 1.16 has none (rejected at validation)
        "entropy.coef": getattr(args, "entropy_coef", 0.0),
        "advantage.estimator": "rloo" if rloo else "grpo",
        "advantage.scaling": ("batch" if args.normalize_advantages else "none") if rloo else
        args.scale_rewards if args.scale_rewards in ("group", "batch", "none") else
        {True: "group", False: "none"}.get(args.scale_rewards, str(args.scale_rewards)),
        "rollout.importance_sampling": (
            _IS_MODES.get(args.vllm_importance_sampling_mode, args.vllm_importance_sampling_mode)
            + f" at {args.vllm_importance_sampling_clip_max:g}"
            if args.use_vllm and args.vllm_importance_sampling_correction else "off"
        ),
        "model.gradient_checkpointing": args.gradient_checkpointing,
        "model.lora": None if lora is None else [lora["r"], lora["lora_alpha"], lora["lora_dropout"],
                                                 lora["target_modules"]],
    }
    if settings["advantage.scaling"] != "none":  # rloo: (a - mean) / (std + 1e-4) over the batch
        settings["advantage.std_epsilon"] = TRL_STD_EPSILON
    if loss_type == "sapo":
        settings["loss.sapo_temperatures"] = [args.sapo_temperature_pos, args.sapo_temperature_neg]
    # GRPOTrainer._compute_loss: num_items_in_batch x accumulation / steps_per_generation
    if loss_type in ("dapo", "cispo"):
        settings["loss.token_mean_over"] = ("the batch's tokens" if updates_per_pass == 1
                                            else "the generated batch's tokens / mini-batches")
    if loss_type == "dr_grpo":
        settings["loss.dr_grpo_divisor"] = args.max_completion_length
    return settings
