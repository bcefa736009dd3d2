"""The documented import path of the config schema: `from retrain.config_models import TrainingConfig`."""

from retrain.core.config import (
    AlgorithmConfig,
    ConstraintSpec,
    DataConfig,
    LoraConfig,
    ModelConfig,
    ResourcesConfig,
    RewardsConfig,
    RewardSpec,
    TrainingConfig,
    TrainingConfigSection,
    VerifierSpec,
)

__all__ = [
    "AlgorithmConfig",
    "ConstraintSpec",
    "DataConfig",
    "LoraConfig",
    "ModelConfig",
    "ResourcesConfig",
    "RewardSpec",
    "RewardsConfig",
    "TrainingConfig",
    "TrainingConfigSection",
    "VerifierSpec",
]
