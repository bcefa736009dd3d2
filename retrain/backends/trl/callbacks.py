"""TRL's logs -> the neutral metrics record, plus progress and step timing."""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback

from retrain.core.metrics import COMPONENT_PREFIXES, process_peak_rss_gb
from retrain.core.progress import ProgressReporter
from retrain.core.run_dir import RunDir

# TRL log name -> neutral name.
TRL_TO_NEUTRAL = {
    "reward": "reward/mean",
    "reward_std": "reward/std",
    "kl": "kl",
    "entropy": "entropy",
    "loss": "loss",
    "grad_norm": "grad_norm",
    "learning_rate": "learning_rate",
    "completions/mean_length": "completion_length/mean",
    "completions/max_length": "completion_length/max",
    "clip_ratio/region_mean": "clip_ratio",
    "num_tokens": "tokens",
}


def peak_memory_gb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return process_peak_rss_gb()


def finish_checkpoint(run_dir: RunDir, global_step: int, updates_per_step: int) -> None:
    """TRL has written checkpoint-<updates> whole: name it for its step and record it as complete, so a
    checkpoint cut off mid-write (SIGKILL) is never resumed from (see RunDir.checkpoints)."""
    step = global_step // updates_per_step
    if updates_per_step > 1:
        written = run_dir.checkpoints_dir / f"checkpoint-{global_step}"
        written.replace(run_dir.checkpoints_dir / f"checkpoint-{step}")
    run_dir.mark_checkpoint_complete(step)


class NeutralMetricsCallback(TrainerCallback):
    """Writes one neutral record per logged step to metrics.jsonl and drives the progress bar.

    TRL counts optimizer updates; a retrain step is one generated batch and its `updates_per_step`
    updates (mini-batches x passes). TRL is told to log and save every `updates_per_step` updates, so
    its records average a step's updates; here they are numbered in steps, and so are checkpoints
    (TRL's checkpoint-N, in updates, is renamed for its step once it is whole)."""

    def __init__(self, run_dir: RunDir, progress: ProgressReporter, component_names: set[str],
                 updates_per_step: int = 1, groups_scaled_by_batch: bool = False):
        self.run_dir = run_dir
        # TRL's frac_reward_zero_std is the share of groups whose rewards all agree, except with rewards scaled
        # by batch, where it tests the whole batch's spread: then the neutral key is left out.
        self.zero_spread_groups = not groups_scaled_by_batch
        self.progress = progress
        self.component_names = component_names
        self.updates_per_step = updates_per_step
        self._step_started = 0.0
        self._train_started = time.monotonic()
        self._seconds_since_log = 0.0
        self._steps_since_log = 0
        self._tokens_at_last_log: float | None = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._train_started = time.monotonic()
        # Restored from the checkpoint when resuming, 0 on a fresh run.
        self._tokens_at_last_log = float(getattr(state, "num_input_tokens_seen", 0) or 0)
        if state.is_world_process_zero:
            self.progress.start(args.max_steps // self.updates_per_step,
                                completed=state.global_step // self.updates_per_step)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._step_started = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._seconds_since_log += time.monotonic() - self._step_started
        self._steps_since_log += 1

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Trainer writes checkpoint-N in place and calls on_save once it is whole.
        if state.is_world_process_zero:
            finish_checkpoint(self.run_dir, state.global_step, self.updates_per_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not logs or "reward" not in logs or not state.is_world_process_zero:
            return  # the end-of-training summary log, or another rank
        steps = max(self._steps_since_log / self.updates_per_step, 1)
        record: dict[str, Any] = {"step": state.global_step // self.updates_per_step}
        for trl_name, neutral in TRL_TO_NEUTRAL.items():
            if trl_name in logs:
                record[neutral] = logs[trl_name]
        if self.zero_spread_groups and "frac_reward_zero_std" in logs:
            record["reward/zero_spread_groups"] = logs["frac_reward_zero_std"]
        if self.updates_per_step > 1:
            # transformers logs the last update's grad norm, not the step's mean (retrain.core.metrics.DEFINITIONS)
            record.pop("grad_norm", None)
        for key, value in logs.items():
            component = key.startswith(COMPONENT_PREFIXES) and key.split("/")[1] in self.component_names
            if component or key.startswith("env/"):
                record[key] = value
        record["step_seconds"] = self._seconds_since_log / steps
        tokens = logs.get("num_tokens")
        record["tokens_per_second"] = None
        if tokens is not None and self._tokens_at_last_log is not None and self._seconds_since_log > 0:
            record["tokens_per_second"] = (tokens - self._tokens_at_last_log) / self._seconds_since_log
        self._tokens_at_last_log = tokens
        record["peak_memory_gb"] = peak_memory_gb()
        record["elapsed_seconds"] = time.monotonic() - self._train_started
        self._seconds_since_log = 0.0
        self._steps_since_log = 0
        self.run_dir.write_metrics(record)
        self.progress.step(record)
