"""One of the N training processes of a multi-GPU TRL run, started by `accelerate launch`.

    accelerate launch --config_file RUN_DIR/trl/accelerate.yaml -m retrain.backends.trl.worker RUN_DIR [--resume CKPT]

Every process reads the run directory's validated config.yaml and builds the same GRPOTrainer as a
single-process run; TRL and Accelerate split the batch and synchronise the gradients. Rank 0 writes
metrics, samples and checkpoint markers (the callbacks check `is_world_process_zero`), the parent
`retrain run` follows metrics.jsonl for its progress bar. Outcomes for the parent:

    RUN_DIR/trl/result.json   rank 0, after the model is saved: {"steps_completed": N, "interrupted": bool}
    RUN_DIR/trl/error.txt     the first process to fail: its one-line message
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retrain.backends.trl.worker")
    parser.add_argument("run_dir")
    parser.add_argument("--resume", default=None, help="the checkpoint to resume from")
    args = parser.parse_args(argv)
    run_dir = RunDir(Path(args.run_dir))
    rank = int(os.environ.get("RANK", "0"))
    from retrain.config_models import TrainingConfig

    config = TrainingConfig.from_yaml(run_dir.path / "config.yaml")
    if config.model.loader == "unsloth":
        from retrain.backends.trl.loader import import_unsloth

        import_unsloth()
    from retrain.backends.trl.launch import _quiet_libraries, _save_interrupted, build_trainer
    from retrain.core.progress import ProgressReporter

    _quiet_libraries()
    trainer = None
    try:
        trainer = build_trainer(config, run_dir, ProgressReporter(enabled=False))
        if trainer.is_world_process_zero():  # what the processes really run, for processes.log
            print(f"retrain: {trainer.accelerator.num_processes} processes, "
                  f"{trainer.accelerator.distributed_type.value}, fsdp={trainer.is_fsdp_enabled}, "
                  f"deepspeed={trainer.is_deepspeed_enabled}, device={trainer.accelerator.device}", flush=True)
        interrupted = False
        try:
            trainer.train(resume_from_checkpoint=args.resume)
        except KeyboardInterrupt:
            interrupted = True
            _save_interrupted(trainer, run_dir)
        if not interrupted:
            trainer.save_model(str(run_dir.model_dir))  # every rank: FSDP and ZeRO-3 gather the weights
            if trainer.is_world_process_zero():
                trainer.processing_class.save_pretrained(str(run_dir.model_dir))
        if trainer.is_world_process_zero():
            (run_dir.path / RESULT).write_text(json.dumps(
                {"steps_completed": trainer.state.global_step, "interrupted": interrupted}))
        return 130 if interrupted else 0
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
