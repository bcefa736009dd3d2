"""The verl backend: retrain configs train with verl's v1 trainer (Ray single controller, FSDP2).

Loading this module is cheap; verl, Ray and torch are imported by `translate` and `train`.
On GPUs verl rolls out with vLLM; on a CPU with a transformers rollout and a platform plugin
(`cpu.py`). Scale-out is verl's: `resources.ray_address` points the run at a Ray cluster.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from retrain.core.backend import Capabilities, NativeConfig, TrainResult, check_capabilities, missing_packages
from retrain.core.errors import ConfigIssue

if TYPE_CHECKING:
    from retrain.core.config import TrainingConfig
    from retrain.core.progress import ProgressReporter
    from retrain.core.run_dir import RunDir


class VerlBackend:
    name = "verl"
    capabilities = Capabilities(
        loss_aggregations=frozenset({"grpo", "dr_grpo", "dapo", "sequence_sum"}),
        reward_scalings=frozenset({"group", "none"}),
        lora=True,
        environments=True,
        multi_node=True,  # on a Ray cluster (resources.ray_address)
        ray_cluster=True,
        cpu=True,
        # vLLM on GPUs, transformers (retrain's `hf` rollout server) on a CPU: check_config pairs them.
        rollout_engines=frozenset({"transformers", "vllm"}),
        vllm_modes=frozenset({"colocate"}),  # verl starts and manages its own vLLM servers
        lr_schedulers=frozenset({"constant", "cosine"}),  # FSDPOptimizerConfig.lr_scheduler_type
        # algorithm.adv_estimator, actor.policy_loss.loss_mode, use_kl_in_reward, the v1 trainer's filter_groups
        advantages=frozenset({"grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "gae"}),
        policy_losses=frozenset({"clip", "gspo", "cispo", "sapo"}),
        kl_placements=frozenset({"loss", "reward"}),
        dynamic_sampling=True,
    )

    def check_config(self, config: TrainingConfig) -> list[ConfigIssue]:
        missing = missing_packages(self.name, ("verl", "ray", "omegaconf", "hydra"), "verl")
        if missing:
            return missing
        from retrain.backends.verl.translate import check_translation

        issues = check_capabilities(config, self.capabilities, self.name) + check_translation(config)
        resources, algorithm = config.resources, config.algorithm
        if resources.nodes > 1 and resources.ray_address is None:
            issues.append(ConfigIssue(
                "resources.nodes", None,
                "several nodes run on a Ray cluster: set resources.ray_address to its head ('host:port' or 'auto')",
            ))
        gpus = resources.nodes * resources.gpus_per_node
        if gpus and (algorithm.prompts_per_step * algorithm.group_size) % gpus:
            issues.append(ConfigIssue(
                "algorithm.prompts_per_step", None,
                f"verl splits each step's {algorithm.prompts_per_step} x {algorithm.group_size} completions evenly "
                f"over the {gpus} GPUs; make prompts_per_step x group_size a multiple of {gpus}",
            ))
        engine = config.rollout.engine
        if gpus and engine == "vllm" and resources.ray_address is None and importlib.util.find_spec("vllm") is None:
            issues.append(ConfigIssue(
                "rollout.engine", None, "vLLM is not installed here: `pip install 'retrain[verl,vllm]'` (CUDA GPUs)"
            ))
        # (`actor_rollout_ref.rollout.name` stays open: it selects engines `rollout.engine` does not list,
        # e.g. sglang, or a test's scripted rollout. The keys retrain owns are translate.OWNED.)
        if gpus and config.model.lora is not None and importlib.util.find_spec("vllm") is None:
            # verl's own validate_config checks the LoRA rank against vLLM's, importing it.
            issues.append(ConfigIssue(
                "model.lora", None,
                "verl on GPUs checks LoRA against vLLM, which is not installed here: "
                "`pip install 'retrain[verl,vllm]'` (verl generates with vLLM on GPUs)",
            ))
        if gpus == 0 and engine == "vllm":
            issues.append(ConfigIssue(
                "rollout.engine", None,
                "vLLM needs GPUs: set resources.gpus_per_node, or engine: auto (transformers on the CPU)",
            ))
        if gpus and engine == "transformers":
            issues.append(ConfigIssue(
                "rollout.engine", None,
                "verl on GPUs generates with vLLM (the transformers rollout is for CPU runs); set engine: auto or vllm",
            ))
        if gpus and gpus % config.rollout.tensor_parallel_size:
            issues.append(ConfigIssue(
                "rollout.tensor_parallel_size", None,
                f"{gpus} GPUs cannot be split into vLLM engines of {config.rollout.tensor_parallel_size}; "
                "use a divisor of the GPU count",
            ))
        if gpus == 0:
            if algorithm.kl_coef > 0 and config.model.lora is None:
                issues.append(ConfigIssue(
                    "algorithm.kl_coef", None,
                    "on CPU, verl's separate reference model cannot load (FSDP2 pins memory); use `model.lora` "
                    "(the reference is the base model with adapters off) or set kl_coef: 0",
                ))
            if config.model.dtype in ("bfloat16", "float16"):
                issues.append(ConfigIssue(
                    "model.dtype", None, "verl on CPU trains in float32; set 'auto' or 'float32'"
                ))
        return issues

    def translate(self, config: TrainingConfig) -> NativeConfig:
        from retrain.backends.verl.launch import machine_overrides
        from retrain.backends.verl.translate import translate_config

        native = translate_config(config, hardware_overrides=machine_overrides(config))
        unused = config.rollout.vllm_settings()
        if config.resources.gpus_per_node == 0 and unused:  # engine auto on a CPU: the same YAML serves GPUs
            native.notes.append(f"{', '.join(unused)} unused: a CPU run generates with transformers")
        return native

    def effective_settings(self, config: TrainingConfig) -> dict[str, Any]:
        from retrain.backends.verl.settings import effective_settings

        return effective_settings(config)

    def train(self, config: TrainingConfig, run_dir: RunDir, progress: ProgressReporter) -> TrainResult:
        from retrain.backends.verl.launch import train

        return train(config, run_dir, progress)


backend = VerlBackend()
