"""One of the N training processes of a multi-GPU TRL run, started by `accelerate launch`.

    accelerate launch --config_file RUN_DIR/trl/accelerate.yaml -m retrain.backends.trl.worker RUN_DIR [--resume CKPT]

Every process reads the run directory's validated config.yaml and builds the same GRPOTrainer as a
single-process run; TRL and Accelerate split the batch and synchronise the gradients. Rank 0 writes
metrics, samples and checkpoint markers (the callbacks check `is_world_process_zero`), the parent
`retrain run` follows metrics.jsonl for its progress bar. Outcomes for the parent:

    RUN_DIR/trl/result.json   rank 0, at the end: {"steps_completed": N, "interrupted": bool}
    RUN_DIR/trl/error.txt     the first process to fail: its one-line message
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from retrain.core.errors import RetrainError
from retrain.core.run_dir import RunDir

RESULT = Path("trl") / "result.json"
ERROR = Path("trl") / "error.txt"


def _record_error(run_dir: RunDir, message: str) -> None:
    try:
        with open(run_dir.path / ERROR, "x", encoding="utf-8") as f:  # the first failure is the cause
            f.write(message + "\n")
    except FileExistsError:
        pass


class StopOnSignal(TrainerCallback):
    """Ctrl-C for N processes. SIGINT only sets a flag; at the end of each step the processes agree
    (a sum over all of them) and, if any was asked to stop, all checkpoint that step and stop together.
    Stopping wherever the signal lands would leave one process in a collective the others never join."""

    def __init__(self, updates_per_step: int = 1) -> None:
        self.updates_per_step = updates_per_step  # a step's last update is where they may stop
        self.requested = False
        self.accelerator: Any = None
        signal.signal(signal.SIGINT, self._request)

    def _request(self, signum: int, frame: object) -> None:
        self.requested = True

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import torch

        flag = torch.tensor([1.0 if self.requested else 0.0], device=self.accelerator.device)
        if self.accelerator.reduce(flag, reduction="sum").item() > 0:
            self.requested = True
        if self.requested and state.global_step % self.updates_per_step == 0:
            control.should_save = True  # the Trainer saves right after this callback, then stops
            control.should_training_stop = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retrain.backends.trl.worker")
    parser.add_argument("run_dir")
    parser.add_argument("--resume", default=None, help="the checkpoint to resume from")
    args = parser.parse_args(argv)
    run_dir = RunDir(Path(args.run_dir))
    rank = int(os.environ.get("RANK", "0"))
    from retrain.config_models import TrainingConfig

    config = TrainingConfig.from_yaml(run_dir.path / "config.yaml")  # (Unsloth is one-GPU only: validated)
    from retrain.backends.trl.launch import _quiet_libraries, build_trainer
    from retrain.core.progress import ProgressReporter

    stop = StopOnSignal(config.algorithm.updates_per_step)  # from now on SIGINT asks for a stop; it no longer raises
    _quiet_libraries()
    trainer = None
    try:
        trainer = build_trainer(config, run_dir, ProgressReporter(enabled=False))
        stop.accelerator = trainer.accelerator
        trainer.add_callback(stop)
        if trainer.is_world_process_zero():  # what the processes really run, for processes.log
            print(f"retrain: {trainer.accelerator.num_processes} processes, "
                  f"{trainer.accelerator.distributed_type.value}, fsdp={trainer.is_fsdp_enabled}, "
                  f"deepspeed={trainer.is_deepspeed_enabled}, device={trainer.accelerator.device}", flush=True)
        if not stop.requested:
            trainer.train(resume_from_checkpoint=args.resume)
        interrupted = stop.requested
        if not interrupted:
            trainer.save_model(str(run_dir.model_dir))  # every rank: FSDP and ZeRO-3 gather the weights
            if trainer.is_world_process_zero():
                trainer.processing_class.save_pretrained(str(run_dir.model_dir))
        if trainer.is_world_process_zero():
            (run_dir.path / RESULT).write_text(json.dumps(
                {"steps_completed": trainer.state.global_step // config.algorithm.updates_per_step,
                 "interrupted": interrupted}))
        return 0
    except RetrainError as exc:
        _record_error(run_dir, str(exc))
        print(f"rank {rank}: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a library failing: one line for the user, the traceback in the log
        traceback.print_exc()
        _record_error(run_dir, f"training failed on rank {rank}: {type(exc).__name__}: {exc}")
        return 1
    finally:
        if trainer is not None and trainer.retrain_episodes is not None:
            trainer.retrain_episodes.close()
        run_dir.close()


if __name__ == "__main__":
    raise SystemExit(main())
