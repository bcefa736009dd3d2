"""`training`: outputs, seeds, checkpoints."""

from __future__ import annotations

from pydantic import Field

from retrain.core.config._base import _Strict


class TrainingConfigSection(_Strict):
    """Where outputs go and how often."""

    output_dir: str = Field("runs", description="Folder holding run directories.")
    run_name: str | None = Field(None, description="Run directory name prefix; defaults to the config file name.")
    seed: int = Field(
        42, description="Seeds the prompt order (the same on every backend), the sampling and the model's init."
    )
    save_every: int = Field(50, gt=0, description="Save a checkpoint every N steps (and at the end).")
    log_every: int = Field(1, gt=0, description="Write metrics every N steps.")
    samples_per_step: int = Field(4, ge=0, description="Completions (with breakdowns) kept per logged step.")
    resume: str | None = Field(None, description="A run directory to resume from its latest checkpoint.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory in the backward pass.")
    micro_batch_size: int | None = Field(
        None, gt=0,
        description="Completions per forward/backward pass on each process; gradients accumulate over a mini-batch, "
        "so this changes memory, never the update. Unset: the whole mini-batch on a CPU, the largest divisor of it "
        "up to 16 on GPUs.",
    )
