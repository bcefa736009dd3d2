"""The effective settings verl will apply, read back from the `ppo_trainer` config retrain composes
(verl's defaults included), in the neutral words of `retrain.core.settings`."""

from __future__ import annotations

from typing import Any

from retrain.core.config import TrainingConfig

# verl's GRPO advantage: (score - group mean) / (group std + epsilon), epsilon=1e-6
# (verl/trainer/ppo/core_algos.py, compute_grpo_outcome_advantage).
VERL_STD_EPSILON = 1e-6
# verl's low_var_kl clamps each token's estimate to [-10, 10] (core_algos.kl_penalty_forward).
VERL_KL_CLAMP = 10.0
_AGGREGATION = {"token-mean": "dapo", "seq-mean-token-mean": "grpo", "seq-mean-token-sum-norm": "dr_grpo",
                "seq-mean-token-sum": "sequence_sum"}
_POLICY_LOSS = {"vanilla": "clipped, per token", "gspo": "clipped, per sequence",
                "cispo": "cispo (stop-gradient, capped), per token", "sapo": "sapo (soft gate), per token"}
_ESTIMATOR = {"reinforce_plus_plus": "reinforce_pp", "reinforce_plus_plus_baseline": "reinforce_pp_baseline"}
# The estimators that whiten their advantages over the batch themselves (core_algos: masked_whiten).
_WHITENED = {"reinforce_plus_plus", "reinforce_plus_plus_baseline", "gae"}
_KL_ESTIMATOR = {"low_var_kl": "k3", "kl": "k1", "k1": "k1", "mse": "k2", "k2": "k2", "abs": "abs", "k3": "k3"}
_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "bfloat16": "bfloat16", "float16": "float16",
           "float32": "float32"}


def effective_settings(config: TrainingConfig) -> dict[str, Any]:
    from retrain.backends.verl.launch import machine_overrides
    from retrain.backends.verl.translate import translate_config

    composed = translate_config(config, hardware_overrides=machine_overrides(config)).settings["composed"]
    return settings_of(composed)


def settings_of(composed: dict[str, Any]) -> dict[str, Any]:
    """The settings of a composed (unresolved) verl config, as plain data."""
    actor = composed["actor_rollout_ref"]["actor"]
    rollout = composed["actor_rollout_ref"]["rollout"]
    model = composed["actor_rollout_ref"]["model"]
    data, algorithm, trainer = composed["data"], composed["algorithm"], composed["trainer"]
    optim = actor["optim"]
    prompts, group = data["train_batch_size"], rollout["n"]
    mini_batches = prompts // actor["ppo_mini_batch_size"]
    total = trainer["total_training_steps"]
    warmup = optim["lr_warmup_steps"]
    if warmup is None or warmup <= 0:  # verl then reads the ratio (FSDPEngine._build_lr_scheduler)
        warmup = int(optim["lr_warmup_steps_ratio"] * total)
    fsdp = actor.get("fsdp_config") or {}
    mixed = fsdp.get("mixed_precision") or {}
    weights = _DTYPES.get(str(fsdp.get("model_dtype", "fp32")), str(fsdp.get("model_dtype")))
    use_kl = bool(actor["use_kl_loss"])
    in_reward = bool(algorithm.get("use_kl_in_reward"))
    correction = (algorithm.get("rollout_correction") or {}).get("rollout_is")
    aggregation = _AGGREGATION.get(actor["loss_agg_mode"], actor["loss_agg_mode"])
    loss_mode = actor["policy_loss"]["loss_mode"]
    if loss_mode == "sapo":  # compute_policy_loss_sapo aggregates seq-mean-token-mean whatever loss_agg_mode says
        aggregation = "grpo"
    estimator = algorithm["adv_estimator"]
    filter_groups = algorithm.get("filter_groups") or {}
    eps = (optim.get("override_optimizer_config") or {}).get("eps", 1e-8)  # torch AdamW's default
    settings: dict[str, Any] = {
        "optimizer.name": "AdamW" if optim["optimizer"] == "AdamW" and optim["optimizer_impl"] == "torch.optim"
        else f"{optim['optimizer_impl']}.{optim['optimizer']}",
        "optimizer.lr": optim["lr"],
        "optimizer.weight_decay": optim["weight_decay"],
        "optimizer.decayed_parameters": "all",  # build_optimizer: one parameter group
        "optimizer.betas": list(optim["betas"]),
        "optimizer.eps": eps,
        "optimizer.max_grad_norm": optim["clip_grad"],
        "schedule.type": optim["lr_scheduler_type"],
        "schedule.warmup_steps": warmup,
        "schedule.min_lr_ratio": optim.get("min_lr_ratio") or 0.0,
        "schedule.moves_within_a_step": False,  # the scheduler steps once per training step
        "batch.steps": total,
        "batch.prompts_per_step": prompts,
        "batch.group_size": group,
        "batch.mini_batch_completions": actor["ppo_mini_batch_size"] * group,
        "batch.passes": actor["ppo_epochs"],
        "batch.updates_per_step": mini_batches * actor["ppo_epochs"],
        "batch.micro_batch": actor["ppo_micro_batch_size_per_gpu"],
        "batch.mini_batch_order": ("shuffled" if actor["shuffle"] else "in order") if mini_batches > 1
        else "one mini-batch",
        "data.order": "shuffled by verl" if data["shuffle"] else "file order",
        "data.chat_template_kwargs": dict(data.get("apply_chat_template_kwargs") or {}),
        # 'error': verl raises on a prompt past max_prompt_length; retrain sizes it so none is (or has left
        # them out, or stopped, by data.overlong_prompts).
        "prompt.truncation": "never" if data["truncation"] == "error" else f"{data['truncation']} truncation",
        "sampling.temperature": rollout["temperature"],
        "sampling.top_p": rollout["top_p"],
        "sampling.top_k": max(rollout["top_k"], 0),
        "sampling.max_tokens": data["max_response_length"],
        "sampling.seed": rollout["seed"],
        "precision.weights": weights,
        "precision.compute": _DTYPES.get(str(mixed.get("param_dtype", "bf16")), str(mixed.get("param_dtype"))),
        "kl.coef": actor["kl_loss_coef"] if use_kl else (algorithm["kl_ctrl"]["kl_coef"] if in_reward else 0.0),
        "kl.estimator": _KL_ESTIMATOR.get(actor["kl_loss_type"], actor["kl_loss_type"]) if use_kl
        else _KL_ESTIMATOR.get(algorithm["kl_penalty"], algorithm["kl_penalty"]) if in_reward else "off",
        "kl.placement": "loss" if use_kl else "reward" if in_reward else "none",
        "kl.importance_weighted": False,
        "kl.clamp": f"[-{VERL_KL_CLAMP:g}, {VERL_KL_CLAMP:g}]" if use_kl and actor["kl_loss_type"] == "low_var_kl"
        else "none",
        # cispo's lower clamp at 1 - 1.0 never binds; sapo has no clip; only the vanilla loss has the dual clip.
        "clip.low": None if loss_mode == "sapo" or (loss_mode == "cispo" and actor["clip_ratio_low"] >= 1)
        else actor["clip_ratio_low"],
        "clip.high": None if loss_mode == "sapo" else actor["clip_ratio_high"],
        "clip.dual": f"c {actor['clip_ratio_c']:g}" if loss_mode == "vanilla" else "none",
        "loss.aggregation": aggregation,
        "loss.ratio": _POLICY_LOSS.get(loss_mode, loss_mode),
        "loss.masks_truncated": False,
        "entropy.coef": actor["entropy_coeff"],
        "advantage.estimator": _ESTIMATOR.get(estimator, estimator),
        "advantage.scaling": "batch" if estimator in _WHITENED else
        "group" if estimator == "grpo" and algorithm["norm_adv_by_std_in_grpo"] else "none",
        "batch.dynamic_sampling": bool(filter_groups.get("enable")),
        # rollout_is: truncated importance sampling at the threshold (verl/trainer/ppo/rollout_corr_helper.py)
        "rollout.importance_sampling": (
            f"per {correction}, truncated at {algorithm['rollout_correction']['rollout_is_threshold']:g}"
            if correction else "off"
        ),
        "model.gradient_checkpointing": model["enable_gradient_checkpointing"],
        "model.lora": [model["lora_rank"], model["lora_alpha"], 0.0, model["target_modules"]]
        if model.get("lora_rank") else None,
    }
    if settings["advantage.scaling"] == "group":
        settings["advantage.std_epsilon"] = VERL_STD_EPSILON
    elif settings["advantage.scaling"] == "batch":
        settings["advantage.std_epsilon"] = 1e-8  # verl_F.masked_whiten
    if loss_mode == "sapo":
        settings["loss.sapo_temperatures"] = [actor["tau_pos"], actor["tau_neg"]]
    if estimator == "gae":
        critic = composed["critic"]
        settings.update({"critic.lr": critic["optim"]["lr"], "critic.value_clip": critic["cliprange_value"],
                         "critic.gae": [algorithm["gamma"], algorithm["lam"]],
                         "critic.warmup_steps": trainer["critic_warmup"]})
    if aggregation == "dapo":  # agg_loss token-mean over the mini-batch's tokens (batch_num_tokens)
        settings["loss.token_mean_over"] = "the batch's tokens" if mini_batches == 1 else "the mini-batch's tokens"
    if aggregation == "dr_grpo":
        settings["loss.dr_grpo_divisor"] = actor["loss_scale_factor"]
    return settings
