"""The verl backend: retrain configs train with verl's v1 trainer (Ray single controller, FSDP2).

Loading this module is cheap; verl, Ray and torch are imported by `translate` and `train`.
This version runs verl on CPU (a platform plugin and a transformers rollout, `cpu.py`); the GPU
path (vLLM rollouts) is not wired yet and is rejected at validation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrain.core.backend import Capabilities, NativeConfig, TrainResult, check_capabilities
from retrain.core.errors import ConfigIssue

if TYPE_CHECKING:
    from retrain.core.config import TrainingConfig
    from retrain.core.progress import ProgressReporter
    from retrain.core.run_dir import RunDir


class VerlBackend:
    name = "verl"
    capabilities = Capabilities(
        loss_aggregations=frozenset({"grpo", "dr_grpo", "dapo"}),
        reward_scalings=frozenset({"group", "none"}),
        lora=True,
        environments=False,
        multi_node=False,  # verl scales on a Ray cluster; retrain does not connect to one yet
        cpu=True,
    )

    def check_config(self, config: TrainingConfig) -> list[ConfigIssue]:
        from retrain.backends.verl.translate import check_translation

        issues = check_capabilities(config, self.capabilities, self.name) + check_translation(config)
        if config.resources.gpus_per_node > 0:
            issues.append(ConfigIssue(
                "resources.gpus_per_node", None,
                "the verl backend runs on CPU only in this version (vLLM rollouts are not wired yet); "
                "set 0, or use `backend: trl` on GPUs",
            ))
        if config.algorithm.kl_coef > 0 and config.model.lora is None:
            issues.append(ConfigIssue(
                "algorithm.kl_coef", None,
                "on CPU, verl's separate reference model cannot load (FSDP2 pins memory); use `model.lora` "
                "(the reference is the base model with adapters off) or set kl_coef: 0",
            ))
        return issues

    def translate(self, config: TrainingConfig) -> NativeConfig:
        from retrain.backends.verl.launch import machine_overrides
        from retrain.backends.verl.translate import translate_config

        return translate_config(config, hardware_overrides=machine_overrides(config))

    def train(self, config: TrainingConfig, run_dir: RunDir, progress: ProgressReporter) -> TrainResult:
        from retrain.backends.verl.launch import train

        return train(config, run_dir, progress)


backend = VerlBackend()
