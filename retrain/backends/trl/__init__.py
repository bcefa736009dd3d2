"""The TRL backend: retrain configs train with TRL's GRPOTrainer, or its RLOOTrainer for RLOO (Accelerate for
scale-out).

Loading this module is cheap; TRL and torch are imported by `translate` and `train`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retrain.core.backend import Capabilities, NativeConfig, TrainResult, check_capabilities, missing_packages
from retrain.core.errors import ConfigIssue

if TYPE_CHECKING:
    from retrain.core.config import TrainingConfig
    from retrain.core.progress import ProgressReporter
    from retrain.core.run_dir import RunDir


class TRLBackend:
    name = "trl"
    capabilities = Capabilities(
        loss_aggregations=frozenset({"grpo", "dr_grpo", "dapo", "sequence_sum"}),  # sequence_sum: RLOOTrainer
        reward_scalings=frozenset({"group", "batch", "none"}),
        lora=True,
        environments=True,
        # Several GPUs of one machine: one process each through `accelerate launch` (launch.train_in_processes).
        # Several machines: not generated yet (use verl on a Ray cluster).
        multi_node=False,
        cpu=True,
        rollout_engines=frozenset({"transformers", "vllm"}),
        vllm_modes=frozenset({"colocate", "server"}),
        model_loaders=frozenset({"transformers", "unsloth"}),
        # GRPOTrainer's loss types and sequence-level ratio; RLOOTrainer for rloo (translate._check_algorithm
        # rejects the combinations neither trainer has). No dynamic sampling, REINFORCE++ or critic in TRL 1.16.
        advantages=frozenset({"grpo", "rloo"}),
        policy_losses=frozenset({"clip", "gspo", "cispo", "sapo"}),
        kl_placements=frozenset({"loss", "reward"}),
    )

    def check_config(self, config: TrainingConfig) -> list[ConfigIssue]:
        missing = missing_packages(self.name, ("trl", "transformers", "accelerate", "datasets", "peft"), "trl")
        if missing:
            return missing
        from retrain.backends.trl.translate import check_translation

        return check_capabilities(config, self.capabilities, self.name) + check_translation(config)

    def translate(self, config: TrainingConfig) -> NativeConfig:
        from retrain.backends.trl.translate import translate_config

        return translate_config(config)

    def effective_settings(self, config: TrainingConfig) -> dict[str, Any]:
        from retrain.backends.trl.settings import effective_settings

        # On the hardware the config names (as verl's settings are): GPUs with bf16 when gpus_per_node > 0,
        # whatever this machine has, so that a GPU recipe compares the same on a laptop.
        gpu = config.resources.gpus_per_node > 0
        return effective_settings(config, cuda=gpu, bf16_supported=gpu)

    def train(self, config: TrainingConfig, run_dir: RunDir, progress: ProgressReporter) -> TrainResult:
        if config.model.loader == "unsloth":
            from retrain.backends.trl.loader import import_unsloth

            import_unsloth()  # before launch imports transformers and TRL, so that its patches apply
        from retrain.backends.trl.launch import train

        return train(config, run_dir, progress)


backend = TRLBackend()
