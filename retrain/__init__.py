"""retrain: teach language models new skills with reinforcement learning, on any RL backend.

    from retrain import run, TrainingConfig, reward, verifier
    summary = await run(config="examples/cat_poem.yaml")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retrain.core.config import TrainingConfig
from retrain.core.errors import ConfigError, RetrainError
from retrain.core.registry import reward, verifier
from retrain.core.rollout import Message, RewardBreakdown, Rollout, ToolCall, VerifierOutcome

if TYPE_CHECKING:
    from retrain.core.run import run, run_sync
    from retrain.core.scoring import Scorer

__version__ = "0.1.0"
__all__ = [
    "ConfigError",
    "Message",
    "RetrainError",
    "RewardBreakdown",
    "Rollout",
    "Scorer",
    "ToolCall",
    "TrainingConfig",
    "VerifierOutcome",
    "reward",
    "run",
    "run_sync",
    "verifier",
]

_LAZY = {"run": "retrain.core.run", "run_sync": "retrain.core.run", "Scorer": "retrain.core.scoring"}


def __getattr__(name: str) -> Any:
    # `run` pulls in rich; keep `import retrain` fast by loading it on first use.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'retrain' has no attribute {name!r}")
