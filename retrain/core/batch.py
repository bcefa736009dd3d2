"""One step's batch arithmetic, the same on every backend.

A step is one generated batch (prompts_per_step x group_size completions) and every optimizer update
made on it: `mini_batches` updates per pass, `updates_per_batch` passes. Each process takes an equal
share of a mini-batch and pushes it through forward/backward in micro-batches of `micro` completions,
accumulating gradients: micro-batching changes memory, never the update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from retrain.core.errors import ConfigIssue

if TYPE_CHECKING:
    from retrain.core.config import TrainingConfig

# The micro-batch on GPUs when training.micro_batch_size is unset: the largest divisor of a process's
# mini-batch up to this (verl's examples use 16 per GPU; a whole batch of long sequences does not fit).
GPU_MICRO_BATCH_LIMIT = 16


@dataclass(frozen=True)
class BatchPlan:
    prompts: int
    group: int
    mini_batches: int
    passes: int
    processes: int
    micro: int

    @property
    def completions(self) -> int:
        return self.prompts * self.group

    @property
    def per_process_mini_batch(self) -> int:
        """Completions each process trains on in one optimizer update."""
        return self.completions // self.mini_batches // self.processes

    @property
    def accumulation(self) -> int:
        """Micro-batches (gradient accumulation steps) in one optimizer update."""
        return self.per_process_mini_batch // self.micro

    @property
    def updates_per_step(self) -> int:
        return self.mini_batches * self.passes


def processes(config: TrainingConfig) -> int:
    """Training processes: one per GPU, or one on a CPU."""
    return max(config.resources.gpus_per_node, 1) * config.resources.nodes


def batch_plan(config: TrainingConfig, gpu: bool) -> BatchPlan:
    """The plan for `config` (checked by `batch_issues`) on GPUs or on the CPU."""
    algorithm = config.algorithm
    count = processes(config)
    per_process = max(algorithm.prompts_per_step * algorithm.group_size // algorithm.mini_batches // count, 1)
    micro = config.training.micro_batch_size
    if micro is None:
        limit = GPU_MICRO_BATCH_LIMIT if gpu else per_process
        micro = max(size for size in range(1, min(per_process, limit) + 1) if per_process % size == 0)
    return BatchPlan(algorithm.prompts_per_step, algorithm.group_size, algorithm.mini_batches,
                     algorithm.updates_per_batch, count, micro)


def batch_issues(config: TrainingConfig) -> list[ConfigIssue]:
    """Batch sizes that do not split evenly: every backend needs equal shares per process and micro-batch."""
    algorithm = config.algorithm
    count = processes(config)
    mini_batch = algorithm.prompts_per_step * algorithm.group_size // algorithm.mini_batches
    if mini_batch % count:
        return [ConfigIssue(
            "algorithm.prompts_per_step", None,
            f"each mini-batch holds prompts_per_step x group_size / mini_batches = {mini_batch} completions, which "
            f"cannot be split evenly across {count} processes; make it a multiple of {count}",
        )]
    micro = config.training.micro_batch_size
    if micro is not None and (mini_batch // count) % micro:
        return [ConfigIssue(
            "training.micro_batch_size", None,
            f"each process trains on {mini_batch // count} completions per update, which micro-batches of {micro} "
            "do not divide; use a divisor of it",
        )]
    return []
