"""A third backend, for tests only: plain-PyTorch REINFORCE with a group baseline (GRPO's advantage,
one on-policy update per batch, so no ratio or clipping), on transformers' `generate()`.

It is registered only through the `retrain.backends` entry-point group (the tests write a
dist-info for it), never in retrain's built-in table, to prove that a package retrain has never
seen can add a backend and pass the conformance kit. It is also a reference small enough to
read in one sitting: `launch.py` is the whole training loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrain.core.backend import Capabilities, NativeConfig, TrainResult, check_capabilities
from retrain.core.errors import ConfigIssue

if TYPE_CHECKING:
    from retrain.core.config import TrainingConfig
    from retrain.core.progress import ProgressReporter
    from retrain.core.run_dir import RunDir


class ReferenceBackend:
    name = "reference"
    capabilities = Capabilities(
        loss_aggregations=frozenset({"grpo", "dr_grpo", "dapo"}),
        reward_scalings=frozenset({"group", "none"}),
        lora=False,
        environments=False,
        kl_penalty=False,
        asymmetric_clip=False,
    )

    def check_config(self, config: TrainingConfig) -> list[ConfigIssue]:
        from tests.reference_backend.translate import check_translation

        return check_capabilities(config, self.capabilities, self.name) + check_translation(config)

    def translate(self, config: TrainingConfig) -> NativeConfig:
        from tests.reference_backend.translate import translate_config

        return translate_config(config)

    def train(self, config: TrainingConfig, run_dir: RunDir, progress: ProgressReporter) -> TrainResult:
        from tests.reference_backend.launch import train

        return train(config, run_dir, progress)


backend = ReferenceBackend()
