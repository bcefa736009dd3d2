"""Config -> verl's Hydra config: `ppo_trainer` composed in-process with overrides, then checked
with verl's own `validate_config`. No side effects (no files, no Ray).

The mapping (also in docs/backends.md):

| retrain                          | verl 0.9.1                                                        |
|----------------------------------|-------------------------------------------------------------------|
| algorithm.group_size             | actor_rollout_ref.rollout.n                                       |
| algorithm.prompts_per_step       | data.train_batch_size, actor.ppo_mini_batch_size (1 update/batch) |
| algorithm.max_steps              | trainer.total_training_steps                                      |
| algorithm.learning_rate          | actor.optim.lr (constant, no warmup)                              |
| algorithm.kl_coef                | actor.use_kl_loss, actor.kl_loss_coef, kl_loss_type=low_var_kl    |
| algorithm.clip_range(_high)      | actor.clip_ratio_low / clip_ratio_high                            |
| algorithm.loss_aggregation       | actor.loss_agg_mode: grpo->seq-mean-token-mean, dapo->token-mean, |
|                                  | dr_grpo->seq-mean-token-sum-norm (loss_scale_factor=max tokens)   |
| algorithm.reward_scaling         | algorithm.norm_adv_by_std_in_grpo (group: true, none: false)      |
| algorithm.updates_per_batch      | actor.ppo_epochs                                                  |
| algorithm.temperature / top_p    | rollout.temperature / top_p                                       |
| algorithm.max_completion_tokens  | data.max_response_length                                          |
| training.seed                    | data.seed, actor.data_loader_seed                                 |
| training.save_every              | trainer.save_freq                                                 |
| training.gradient_checkpointing  | model.enable_gradient_checkpointing                               |
| model.lora                       | model.lora_rank, lora_alpha, target_modules                       |
| resources                        | trainer.nnodes, trainer.n_gpus_per_node                           |
| backend_options.verl.<dotted>    | any override, applied last                                        |
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import warnings
from typing import Any

from retrain.core.backend import NativeConfig
from retrain.core.config import TrainingConfig
from retrain.core.errors import ConfigIssue

ACTOR = "actor_rollout_ref.actor"
ROLLOUT = "actor_rollout_ref.rollout"
MODEL = "actor_rollout_ref.model"

LOSS_AGG_MODE = {"grpo": "seq-mean-token-mean", "dapo": "token-mean", "dr_grpo": "seq-mean-token-sum-norm",
                 "sequence_sum": "seq-mean-token-sum"}
ADV_ESTIMATOR = {"grpo": "grpo", "rloo": "rloo", "reinforce_pp": "reinforce_plus_plus",
                 "reinforce_pp_baseline": "reinforce_plus_plus_baseline", "gae": "gae"}
LOSS_MODE = {"clip": "vanilla", "gspo": "gspo", "cispo": "cispo", "sapo": "sapo"}
NORM_ADV_BY_STD = {"group": True, "none": False}  # verl's GRPO estimator has no batch-level std


def _value(value: Any) -> str:
    """A Hydra override value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def check_translation(config: TrainingConfig) -> list[ConfigIssue]:
    # reward_scaling 'batch' is outside the backend's capabilities (verl's GRPO advantage divides by
    # the group's std or not at all): check_capabilities reports it.
    issues = []
    lora = config.model.lora
    if lora is not None and lora.dropout:
        issues.append(ConfigIssue("model.lora.dropout", None, "verl's FSDP LoRA has no dropout; set 0"))
    if config.training.log_every != 1:
        issues.append(ConfigIssue(
            "training.log_every", None, "verl logs every step; remove training.log_every (or set 1)"
        ))
    algorithm = config.algorithm
    if algorithm.advantage == "rloo" and algorithm.reward_scaling != "none":
        field = "algorithm.reward_scaling" if "reward_scaling" in algorithm.model_fields_set else "algorithm.name"
        issues.append(ConfigIssue(field, None, "verl's RLOO advantage is not scaled; set reward_scaling: none "
                                  "(TRL's RLOOTrainer whitens it over the batch with 'batch': use `backend: trl`)"))
    issues += owned_option_issues(config)
    if config.backend_options.get("verl") and not issues:
        issues += _check_options(config)
    return issues


def owned_option_issues(config: TrainingConfig) -> list[ConfigIssue]:
    """A raw override of a key retrain sets from its schema: an error naming the field to use instead."""
    issues = []
    for key in config.backend_options.get("verl", {}):
        bare = key.lstrip("+~")
        owner = next((field for owned, field in OWNED.items() if bare == owned or bare.startswith(f"{owned}.")), None)
        if owner is not None:
            issues.append(ConfigIssue(f"backend_options.verl.{key}", None, f"set this through `{owner}` instead"))
    return issues


def _check_options(config: TrainingConfig) -> list[ConfigIssue]:
    """`backend_options.verl` are Hydra overrides: compose them now (as `translate` will), so that a key verl
    does not have, or a value it rejects, is a config error rather than a crash when the run starts."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from retrain.backends.verl.launch import machine_overrides

    parser = OverridesParser.create()
    issues = []
    for key, value in config.backend_options["verl"].items():
        if isinstance(value, dict):
            issues.append(ConfigIssue(
                f"backend_options.verl.{key}", None,
                f"a mapping is not one override; give its keys one by one, as '{key}.{next(iter(value), 'name')}: ...'",
            ))
            continue
        try:
            parser.parse_overrides([f"{key}={_value(value)}"])
        except HydraException as exc:
            message = " ".join(str(exc).split())
            issues.append(ConfigIssue(
                f"backend_options.verl.{key}", None, f"not a valid Hydra override ({message}); check the value"
            ))
    if issues:
        return issues
    hardware = machine_overrides(config)
    keys = set(_dotted_keys(OmegaConf.to_container(compose(algorithm_overrides(config) + hardware))))
    for key in config.backend_options["verl"]:
        if key.startswith("+"):  # '+key=value' adds a key verl does not define; Hydra checks the rest
            continue
        if key.removeprefix("~") not in keys and not any(known.startswith(f"{key}.") for known in keys):
            close = difflib.get_close_matches(key, sorted(keys), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            issues.append(ConfigIssue(
                f"backend_options.verl.{key}", None,
                f"not a key of verl's ppo_trainer config{hint} (to add a key verl does not define, write '+{key}')",
            ))
    if issues:
        return issues
    try:
        translate_config(config, hardware_overrides=hardware)
    except (HydraException, OmegaConfBaseException, AssertionError, ValueError) as exc:
        message = " ".join(str(exc).split())
        issues.append(ConfigIssue("backend_options.verl", None, f"verl rejects these options: {message}"))
    return issues


def _dotted_keys(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        return [key for name, value in node.items() for key in _dotted_keys(value, f"{prefix}{name}.")]
    return [prefix.rstrip(".")]


# Every verl key retrain sets from its own schema, and the field that sets it: a backend_options.verl
# override of one of these is an error naming the field (the neutral config must say what ran).
OWNED: dict[str, str] = {
    "algorithm.adv_estimator": "algorithm.advantage",
    "algorithm.norm_adv_by_std_in_grpo": "algorithm.reward_scaling",
    "algorithm.use_kl_in_reward": "algorithm.kl_placement",
    "algorithm.kl_penalty": "algorithm.kl_placement",
    "algorithm.kl_ctrl": "algorithm.kl_coef",
    "algorithm.filter_groups": "algorithm.dynamic_sampling",
    "algorithm.gamma": "algorithm.critic.gamma",
    "algorithm.lam": "algorithm.critic.lam",
    f"{ACTOR}.policy_loss.loss_mode": "algorithm.policy_loss",
    f"{ACTOR}.tau_pos": "algorithm.sapo_temperature_pos",
    f"{ACTOR}.tau_neg": "algorithm.sapo_temperature_neg",
    "critic.optim.lr": "algorithm.critic.learning_rate",
    "critic.cliprange_value": "algorithm.critic.value_clip",
    "critic.model.path": "algorithm.critic.model",
    "trainer.critic_warmup": "algorithm.critic.warmup_steps",
    "algorithm.rollout_correction.rollout_is": "rollout.importance_sampling_correction",
    "algorithm.rollout_correction.rollout_is_threshold": "rollout.importance_sampling_cap",
    f"{ROLLOUT}.calculate_log_probs": "rollout.importance_sampling_correction",
    f"{ROLLOUT}.n": "algorithm.group_size",
    "data.train_batch_size": "algorithm.prompts_per_step",
    f"{ACTOR}.ppo_mini_batch_size": "algorithm.mini_batches",
    f"{ACTOR}.ppo_epochs": "algorithm.updates_per_batch",
    f"{ACTOR}.optim.lr": "algorithm.learning_rate",
    f"{ACTOR}.optim.weight_decay": "optimizer.weight_decay",
    f"{ACTOR}.optim.betas": "optimizer.betas",
    f"{ACTOR}.optim.override_optimizer_config": "optimizer.eps",
    f"{ACTOR}.optim.clip_grad": "optimizer.max_grad_norm",
    f"{ACTOR}.optim.lr_scheduler_type": "optimizer.lr_scheduler",
    f"{ACTOR}.optim.warmup_style": "optimizer.lr_scheduler",
    f"{ACTOR}.optim.lr_warmup_steps": "optimizer.warmup_steps",
    f"{ACTOR}.optim.lr_warmup_steps_ratio": "optimizer.warmup_ratio",
    f"{ACTOR}.optim.min_lr_ratio": "optimizer.min_lr_ratio",
    f"{ACTOR}.use_kl_loss": "algorithm.kl_coef",
    f"{ACTOR}.kl_loss_coef": "algorithm.kl_coef",
    f"{ACTOR}.kl_loss_type": "algorithm.kl_coef",
    f"{ACTOR}.clip_ratio_low": "algorithm.clip_range",
    f"{ACTOR}.clip_ratio_high": "algorithm.clip_range_high",
    f"{ACTOR}.loss_agg_mode": "algorithm.loss_aggregation",
    f"{ACTOR}.loss_scale_factor": "algorithm.loss_aggregation",
    f"{ACTOR}.entropy_coeff": "algorithm.entropy_coef",
    f"{ACTOR}.ppo_micro_batch_size_per_gpu": "training.micro_batch_size",
    f"{ACTOR}.ppo_micro_batch_size": "training.micro_batch_size",
    f"{ACTOR}.shuffle": "algorithm.mini_batches (taken in order)",
    f"{ACTOR}.data_loader_seed": "training.seed",
    f"{ACTOR}.fsdp_config.seed": "training.seed",
    f"{ROLLOUT}.temperature": "algorithm.temperature",
    f"{ROLLOUT}.top_p": "algorithm.top_p",
    f"{ROLLOUT}.top_k": "algorithm.top_k",
    f"{ROLLOUT}.seed": "training.seed",
    f"{ROLLOUT}.gpu_memory_utilization": "rollout.gpu_memory_utilization",
    f"{ROLLOUT}.tensor_model_parallel_size": "rollout.tensor_parallel_size",
    "data.max_response_length": "algorithm.max_completion_tokens",
    "data.max_prompt_length": "data.max_prompt_tokens",
    "data.truncation": "data.overlong_prompts",
    "data.filter_overlong_prompts": "data.overlong_prompts",
    "data.apply_chat_template_kwargs": "data.chat_template_kwargs",
    "data.seed": "training.seed",
    "data.shuffle": "training.seed (retrain orders the prompts)",
    "data.train_files": "data.source",
    "reward.reward_manager": "(retrain's Scorer bridge: rewards.*)",
    "reward.custom_reward_function": "(retrain's Scorer bridge: rewards.*)",
    "trainer.total_training_steps": "algorithm.max_steps",
    "trainer.save_freq": "training.save_every",
    "trainer.logger": "logging.trackers",
    "trainer.default_local_dir": "training.output_dir",
    "trainer.nnodes": "resources.nodes",
    "trainer.n_gpus_per_node": "resources.gpus_per_node",
    f"{MODEL}.path": "model.name",
    f"{MODEL}.enable_gradient_checkpointing": "training.gradient_checkpointing",
    f"{MODEL}.lora_rank": "model.lora.r",
    f"{MODEL}.lora_alpha": "model.lora.alpha",
    f"{MODEL}.target_modules": "model.lora.target_modules",
}


def algorithm_overrides(config: TrainingConfig) -> list[str]:
    """The overrides that carry retrain's algorithm, data and training options (hardware-independent)."""
    algorithm, training, optimizer = config.algorithm, config.training, config.optimizer
    clip_high = algorithm.clip_range_high or algorithm.clip_range
    overrides: dict[str, Any] = {
        "algorithm.adv_estimator": ADV_ESTIMATOR[algorithm.advantage],
        "algorithm.norm_adv_by_std_in_grpo": NORM_ADV_BY_STD.get(algorithm.reward_scaling, True),
        "algorithm.use_kl_in_reward": algorithm.kl_coef > 0 and algorithm.kl_placement == "reward",
        f"{ACTOR}.policy_loss.loss_mode": LOSS_MODE[algorithm.policy_loss],
        f"{ROLLOUT}.n": algorithm.group_size,
        "data.train_batch_size": algorithm.prompts_per_step,
        f"{ACTOR}.ppo_mini_batch_size": algorithm.prompts_per_step // algorithm.mini_batches,
        f"{ACTOR}.ppo_epochs": algorithm.updates_per_batch,
        f"{ACTOR}.shuffle": False,
        f"{ACTOR}.optim.lr": algorithm.learning_rate,
        f"{ACTOR}.optim.weight_decay": optimizer.weight_decay,  # verl's default is 0.01
        f"{ACTOR}.optim.betas": list(optimizer.betas),
        f"{ACTOR}.optim.override_optimizer_config": {"eps": optimizer.eps},
        f"{ACTOR}.optim.clip_grad": optimizer.max_grad_norm,
        f"{ACTOR}.optim.lr_scheduler_type": optimizer.lr_scheduler,
        f"{ACTOR}.optim.lr_warmup_steps": optimizer.warmup_for(algorithm.max_steps),
        f"{ACTOR}.optim.lr_warmup_steps_ratio": 0.0,
        f"{ACTOR}.optim.min_lr_ratio": optimizer.min_lr_ratio,
        f"{ACTOR}.use_kl_loss": algorithm.kl_coef > 0 and algorithm.kl_placement == "loss",
        f"{ACTOR}.kl_loss_coef": algorithm.kl_coef,
        f"{ACTOR}.kl_loss_type": "low_var_kl",  # k3, the estimator TRL uses
        f"{ACTOR}.clip_ratio_low": algorithm.clip_range,
        f"{ACTOR}.clip_ratio_high": clip_high,
        f"{ACTOR}.loss_agg_mode": LOSS_AGG_MODE[algorithm.loss_aggregation],
        f"{ACTOR}.entropy_coeff": algorithm.entropy_coef,
        f"{ROLLOUT}.temperature": algorithm.temperature,
        f"{ROLLOUT}.top_p": algorithm.top_p,
        f"{ROLLOUT}.top_k": algorithm.top_k or -1,  # verl's "off" is -1
        f"{ROLLOUT}.seed": training.seed,
        "data.max_response_length": algorithm.max_completion_tokens,
        # No truncation, no filtering by verl: retrain applies data.max_prompt_tokens / overlong_prompts
        # to the rows before either backend sees them (retrain.data.limit_prompt_length).
        "data.truncation": "error",
        "data.filter_overlong_prompts": False,
        "data.shuffle": False,  # retrain writes the prompts in the seeded step order (retrain.data.step_order)
        "data.seed": training.seed,
        f"{ACTOR}.data_loader_seed": training.seed,
        f"{ACTOR}.fsdp_config.seed": training.seed,
        "trainer.total_training_steps": algorithm.max_steps,
        "trainer.save_freq": training.save_every,
        "trainer.test_freq": -1,
        "trainer.val_before_train": False,
        f"{MODEL}.enable_gradient_checkpointing": training.gradient_checkpointing,
        "trainer.nnodes": config.resources.nodes,
        "trainer.n_gpus_per_node": max(config.resources.gpus_per_node, 1),
    }
    if config.data.chat_template_kwargs:
        overrides["data.apply_chat_template_kwargs"] = config.data.chat_template_kwargs
    if config.data.max_prompt_tokens is not None:
        overrides["data.max_prompt_length"] = config.data.max_prompt_tokens
    # verl computes the correction only when the rollout returns its log-probs, and skips it silently
    # otherwise (ray_trainer: `"rollout_log_probs" in batch.batch`); without the correction they are not asked
    # for (verl's default asks, and its CPU rollout would compute them for nothing).
    overrides[f"{ROLLOUT}.calculate_log_probs"] = config.rollout.importance_sampling_correction
    if config.rollout.importance_sampling_correction:
        overrides["algorithm.rollout_correction.rollout_is"] = "token"
        overrides["algorithm.rollout_correction.rollout_is_threshold"] = config.rollout.importance_sampling_cap
    if algorithm.loss_aggregation == "dr_grpo":
        # TRL's Dr. GRPO divides by max_completion_length; verl defaults to the padded batch width.
        overrides[f"{ACTOR}.loss_scale_factor"] = algorithm.max_completion_tokens
    overrides.update(_algorithm_parts(config))
    if config.model.lora is not None:
        lora = config.model.lora
        overrides[f"{MODEL}.lora_rank"] = lora.r
        overrides[f"{MODEL}.lora_alpha"] = lora.alpha
        overrides[f"{MODEL}.target_modules"] = lora.target_modules
    return [f"{key}={_value(value)}" for key, value in overrides.items()]


def _algorithm_parts(config: TrainingConfig) -> dict[str, Any]:
    """KL in the reward, the policy losses' own knobs, dynamic sampling and the critic."""
    algorithm = config.algorithm
    overrides: dict[str, Any] = {}
    if algorithm.kl_coef > 0 and algorithm.kl_placement == "reward":
        # k1 of the rollout-time log-probs per token, summed into the reward (TRL's RLOOTrainer's estimate);
        # a fixed coefficient (verl's adaptive controller is not a neutral option).
        overrides["algorithm.kl_penalty"] = "kl"
        overrides["algorithm.kl_ctrl.type"] = "fixed"
        overrides["algorithm.kl_ctrl.kl_coef"] = algorithm.kl_coef
    if algorithm.policy_loss == "cispo":
        # TRL's cispo has no lower bound: verl's clamp at 1 - 1.0 = 0 never binds (a ratio is positive).
        overrides[f"{ACTOR}.clip_ratio_low"] = 1.0
    if algorithm.policy_loss == "sapo":
        overrides[f"{ACTOR}.tau_pos"] = algorithm.sapo_temperature_pos
        overrides[f"{ACTOR}.tau_neg"] = algorithm.sapo_temperature_neg
    if algorithm.dynamic_sampling:
        # The v1 trainer's replay buffer drops groups whose reward ("reward": the Scorer's total, before any KL)
        # all agree, and generates more prompts until the batch is full.
        overrides["+algorithm.filter_groups"] = {"enable": True, "metric": "reward", "max_num_gen_batches": 0,
                                                 "max_inflight_gen_batches": 1}
    critic = algorithm.critic
    if critic is not None:
        overrides["algorithm.gamma"] = critic.gamma
        overrides["algorithm.lam"] = critic.lam
        overrides["critic.optim.lr"] = critic.learning_rate
        overrides["critic.optim.weight_decay"] = config.optimizer.weight_decay
        overrides["critic.cliprange_value"] = critic.value_clip
        overrides["critic.data_loader_seed"] = config.training.seed
        overrides["trainer.critic_warmup"] = critic.warmup_steps
        if critic.model is not None:
            overrides["critic.model.path"] = critic.model
    return overrides


def backend_option_overrides(config: TrainingConfig) -> list[str]:
    """`backend_options.verl` as dotted overrides: {"actor_rollout_ref.actor.entropy_coeff": 0.01}."""
    options = config.backend_options.get("verl", {})
    return [f"{key}={_value(value)}" for key, value in options.items()]


def compose(overrides: list[str]) -> Any:
    """verl's `ppo_trainer` config with the overrides, composed in-process (Hydra's global state is restored)."""
    import verl
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=overrides)


def validate(composed: Any) -> None:
    """verl's own checks (batch arithmetic, micro-batch sizes, ...)."""
    from verl.trainer.ppo.utils import need_reference_policy
    from verl.utils.config import validate_config

    # verl prints "all checks passed" and warns that GRPO has no critic: neither helps a user.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore", message="Disabled critic")
        # The critic's checks build its model config, which loads the tokenizer from critic.model.path: a
        # download for a hub name, so not here (translate has no side effects). Its batch sizes are the actor's
        # (machine_overrides), which these checks cover; verl checks the critic again when it starts.
        validate_config(composed, use_reference_policy=need_reference_policy(composed), use_critic=False)


def translate_config(config: TrainingConfig, hardware_overrides: list[str] | None = None) -> NativeConfig:
    """The composed verl config retrain will run, as plain data, with the overrides that made it."""
    from omegaconf import OmegaConf

    overrides = algorithm_overrides(config) + list(hardware_overrides or []) + backend_option_overrides(config)
    composed = compose(overrides)
    validate(composed)
    settings: dict[str, Any] = {"overrides": overrides, "composed": OmegaConf.to_container(composed, resolve=False)}
    notes = ["composed from verl/trainer/config/ppo_trainer.yaml"]
    if config.model.revision is not None:
        # verl loads a folder: the launcher downloads that revision and points model.path at it.
        settings["model"] = {"name": config.model.name, "revision": config.model.revision,
                             "path": "<the revision's snapshot, downloaded at start>"}
    if config.resources.ray_address is not None:
        settings["ray_init"] = {"address": config.resources.ray_address}
        notes.append(f"runs on the Ray cluster at {config.resources.ray_address} (this run's actors only)")
    if config.data.max_prompt_tokens is None:
        notes.append("data.max_prompt_length: the longest prompt in the data, measured at start (no prompt is cut)")
    return NativeConfig("verl", settings, notes)
