"""Start TRL's real GRPOTrainer on a retrain config and leave everything in the run directory."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from retrain.backends.trl.callbacks import NeutralMetricsCallback, finish_checkpoint
from retrain.backends.trl.environment import EpisodeRollouts, tag_rows
from retrain.backends.trl.rewards import ScorerRewardFunction
from retrain.backends.trl.translate import (
    accelerate_config,
    detect_hardware,
    grpo_config_kwargs,
    peft_kwargs,
    resolve_engine,
    trainer_names,
    vllm_installed,
    world_size,
)
from retrain.core.backend import TrainResult
from retrain.core.config import TrainingConfig
from retrain.core.errors import BackendError, ConfigError, ConfigIssue, ModelError
from retrain.core.metrics import read_jsonl
from retrain.core.ports import free_port
from retrain.core.progress import ProgressReporter
from retrain.core.run_dir import RunDir
from retrain.core.scoring import Scorer
from retrain.data import training_rows
from retrain.models import resolve_model


def _quiet_libraries() -> None:
    """Keep the console to what a user needs: retrain's progress, real warnings, errors."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("trl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*clean_up_tokenization_spaces.*")


def build_trainer(  # type: ignore[no-untyped-def]
    config: TrainingConfig, run_dir: RunDir, progress: ProgressReporter, generate_batch=None
):
    """The GRPOTrainer retrain runs (exposed for tests and the overhead benchmark). `generate_batch`
    replaces the model's sampling in environment episodes (tests only: a scripted policy)."""
    cuda, bf16_supported = detect_hardware()
    has_vllm = vllm_installed()
    engine, _ = resolve_engine(config, cuda, has_vllm)
    if engine == "vllm" and not cuda:
        raise BackendError(
            "rollout: vLLM needs a CUDA GPU and none is visible to PyTorch here; set rollout.engine: auto "
            "(transformers on the CPU), or run on a GPU machine"
        )
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback

    model_path = resolve_model(config.model.name)
    model: object = model_path
    if config.model.loader == "unsloth":
        from retrain.backends.trl import loader

        model, tokenizer = loader.load(config, model_path, engine)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_path, revision=config.model.revision)
        except OSError as exc:
            raise ModelError(f"cannot load the tokenizer of model '{config.model.name}': {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    kwargs, _ = grpo_config_kwargs(config, str(run_dir.checkpoints_dir), cuda, bf16_supported, has_vllm)
    config_name, trainer_name = trainer_names(config)  # GRPOTrainer, or RLOOTrainer for the rloo advantage
    args = getattr(trl, config_name)(**kwargs)
    trainer_class = getattr(trl, trainer_name)

    scorer = Scorer.from_config(config)
    reward_function = ScorerRewardFunction(
        scorer, run_dir, config.training.samples_per_step, config.training.log_every,
        config.algorithm.updates_per_step,
    )
    component_names = {c.name for c in scorer.components}
    peft_config = None
    lora = peft_kwargs(config) if config.model.loader == "transformers" else None  # unsloth adds its own
    if lora is not None:
        from peft import LoraConfig

        peft_config = LoraConfig(**lora)
    rows, _ = training_rows(config, tokenizer, progress)
    episodes = None
    if config.environment is not None:
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is "experimental" in TRL 1.16
        if config.data.max_prompt_tokens is not None:  # the limit holds for what episodes open with, as on verl
            from retrain.environments import longest_opening
            from retrain.environments.episode import HFChatTokens

            try:
                longest_opening(config.environment, rows, HFChatTokens(tokenizer, config.data.chat_template_kwargs),
                                config.data.max_prompt_tokens)
            except ValueError as exc:
                raise ConfigError([ConfigIssue("data.max_prompt_tokens", None, str(exc))]) from None
        rows = tag_rows(rows)
        options = {"generate_batch": generate_batch} if generate_batch else {}
        episodes = EpisodeRollouts(config, rows, tokenizer, **options)
    class RetrainTrainer(trainer_class):  # type: ignore[misc, valid-type]  # Unsloth may have patched the class
        def get_decay_parameter_names(self, model: Any) -> list[str]:
            # optimizer.weight_decay decays every weight, as verl's AdamW (one parameter group) does;
            # transformers would spare biases and norm weights.
            return [name for name, _ in model.named_parameters()]

    try:
        trainer = RetrainTrainer(
            model=model,  # type: ignore[arg-type]  # a path, or the model Unsloth loaded
            reward_funcs=[reward_function],  # type: ignore[list-item]  # TRL awaits async callables; its hint omits them
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[NeutralMetricsCallback(run_dir, progress, component_names,
                                              config.algorithm.updates_per_step,
                                              groups_scaled_by_batch=config.algorithm.reward_scaling == "batch")],
            peft_config=peft_config,
            **({"rollout_func": episodes} if episodes is not None else {}),  # (RLOOTrainer has none: checked)
        )
    except OSError as exc:
        if episodes is not None:
            episodes.close()
        raise ModelError(f"cannot load model '{config.model.name}': {exc}") from None
    trainer.retrain_episodes = episodes  # type: ignore[attr-defined]  # closed by `train` (MCP servers, the episode loop)
    # With tqdm off, transformers prints every log dict; the progress reporter replaces it.
    trainer.remove_callback(PrinterCallback)
    return trainer


def train(config: TrainingConfig, run_dir: RunDir, progress: ProgressReporter) -> TrainResult:
    _quiet_libraries()
    checkpoint = run_dir.prepare_resume()  # a run dir with checkpoints is being resumed
    if checkpoint is None:
        run_dir.mark_checkpoint_complete(0)  # from now on a checkpoint counts once on_save records it
    if world_size(config) > 1:
        return train_in_processes(config, run_dir, progress, checkpoint)
    trainer = build_trainer(config, run_dir, progress)
    interrupted = False
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except KeyboardInterrupt:
        interrupted = True
        progress.stop()
        _save_interrupted(trainer, run_dir, config.algorithm.updates_per_step)
        raise
    finally:
        if not interrupted:
            progress.stop()
        if trainer.retrain_episodes is not None:
            trainer.retrain_episodes.close()  # stops MCP servers and the episode loop, also on failure
    trainer.save_model(str(run_dir.model_dir))
    trainer.processing_class.save_pretrained(str(run_dir.model_dir))
    return TrainResult(
        steps_completed=trainer.state.global_step // config.algorithm.updates_per_step,
        final_model_dir=run_dir.model_dir,
        last_checkpoint=run_dir.latest_checkpoint(),
    )


def _save_interrupted(trainer, run_dir: RunDir, updates_per_step: int) -> Path | None:  # type: ignore[no-untyped-def]
    """On Ctrl-C, checkpoint the last finished step so `--resume` loses nothing done. Interrupted between
    the updates of one step (mini-batches, several passes), that step is redone on resume: a checkpoint
    halfway through a generated batch could not be resumed."""
    step = trainer.state.global_step // updates_per_step
    latest = run_dir.latest_checkpoint()
    if step == 0 or trainer.state.global_step % updates_per_step or (
        latest is not None and RunDir.checkpoint_step(latest) >= step
    ):
        return latest
    # Trainer's own checkpoint writer: model, optimizer, scheduler, RNG and trainer state.
    trainer._save_checkpoint(trainer.model, trial=None)
    finish_checkpoint(run_dir, trainer.state.global_step, updates_per_step)
    return run_dir.latest_checkpoint()


# For tests: run `resources.gpus_per_node` processes on the CPU (gloo), even where there are GPUs.
CPU_PROCESSES_VARIABLE = "RETRAIN_TRL_PROCESSES_ON_CPU"
# How long the training processes get to finish their step and checkpoint after Ctrl-C, before torch's
# elastic agent kills them (its own default is 30 s, too short for a real model's checkpoint).
INTERRUPT_GRACE_SECONDS = 600


def train_in_processes(
    config: TrainingConfig, run_dir: RunDir, progress: ProgressReporter, checkpoint: Path | None
) -> TrainResult:
    """One training process per GPU through `accelerate launch`. This process keeps the console and
    follows metrics.jsonl; every process it starts (the launcher and, in their own sessions, torch's
    workers) is tracked by pid and stopped however this ends."""
    from retrain.backends.trl.worker import ERROR, RESULT

    on_cpu = os.environ.get(CPU_PROCESSES_VARIABLE) == "1"
    cuda = detect_hardware()[0] and not on_cpu
    processes = world_size(config)
    if not cuda and not on_cpu:
        raise BackendError(
            f"resources.gpus_per_node is {processes} but PyTorch sees no CUDA GPU here; run on the GPU machine, "
            "or set gpus_per_node: 0 to train in one process on the CPU"
        )
    if cuda:
        import torch

        if torch.cuda.device_count() < processes:
            raise BackendError(
                f"resources.gpus_per_node is {processes} but PyTorch sees {torch.cuda.device_count()} GPUs "
                "(CUDA_VISIBLE_DEVICES); lower gpus_per_node or make the GPUs visible"
            )
    folder = run_dir.path / "trl"
    folder.mkdir(exist_ok=True)
    for stale in (run_dir.path / RESULT, run_dir.path / ERROR):
        stale.unlink(missing_ok=True)
    accelerate_yaml = folder / "accelerate.yaml"
    accelerate_yaml.write_text(yaml.safe_dump(accelerate_config(config, cuda), sort_keys=False), encoding="utf-8")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_yaml),
               "--main_process_port", str(free_port()), "-m", "retrain.backends.trl.worker", str(run_dir.path)]
    if checkpoint is not None:
        command += ["--resume", str(checkpoint)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(INTERRUPT_GRACE_SECONDS)}
    if on_cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the processes then see what accelerate.yaml says: no GPU
    log_path = folder / "processes.log"
    done_steps = RunDir.checkpoint_step(checkpoint) if checkpoint is not None else 0
    progress.start(config.algorithm.max_steps, completed=done_steps)
    follower = _MetricsFollower(run_dir, progress)
    with open(log_path, "ab") as log, _stop_signals_interrupt():
        launcher = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        family = _Family(launcher)
        try:
            while launcher.poll() is None:
                family.refresh()
                follower.poll()
                time.sleep(0.5)
        except KeyboardInterrupt:
            # To the launcher only: torch's elastic agent passes SIGINT on to each process once; they agree
            # at the end of the step (worker.StopOnSignal), checkpoint it and exit.
            family.refresh()
            _signal(launcher.pid, signal.SIGINT)
            try:
                launcher.wait(timeout=INTERRUPT_GRACE_SECONDS + 60)
            except subprocess.TimeoutExpired:
                pass
            follower.poll()
            raise
        finally:
            family.stop()  # whatever is still running, by pid: the launcher and the workers it started
    follower.poll()
    error = run_dir.path / ERROR
    if error.is_file():
        raise BackendError(f"{error.read_text(encoding='utf-8').strip()} (all processes' output: {log_path})")
    result_path = run_dir.path / RESULT
    if not result_path.is_file():
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        raise BackendError(
            f"the {processes} training processes stopped with exit code {launcher.returncode}; last lines of "
            f"{log_path}:\n" + "\n".join(tail)
        )
    result = json.loads(result_path.read_text(encoding="utf-8"))
    return TrainResult(
        steps_completed=result["steps_completed"],
        final_model_dir=run_dir.model_dir if not result["interrupted"] else None,
        last_checkpoint=run_dir.latest_checkpoint(),
        interrupted=result["interrupted"],
    )


class _MetricsFollower:
    """Feeds the progress bar from the records rank 0 appends to metrics.jsonl."""

    def __init__(self, run_dir: RunDir, progress: ProgressReporter):
        self.path = run_dir.metrics_path
        self.progress = progress
        self.seen = len(read_jsonl(self.path))

    def poll(self) -> None:
        records = read_jsonl(self.path)
        for record in records[self.seen:]:
            self.progress.step(record)
        self.seen = len(records)


class _Family:
    """The launcher and every process under it, by pid. torch starts each worker in a session of its
    own, so a process-group signal would miss them: the pids are collected while they run."""

    def __init__(self, launcher: subprocess.Popen):
        import psutil  # accelerate depends on it

        self.launcher = launcher
        self.members: dict[int, psutil.Process] = {}
        self.refresh()

    def refresh(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.launcher.pid)
            for process in [root, *root.children(recursive=True)]:
                self.members.setdefault(process.pid, process)
        except psutil.NoSuchProcess:
            pass

    def stop(self) -> None:
        import psutil

        if self.launcher.poll() is None:
            self.refresh()
        alive = [p for p in self.members.values() if p.is_running()]
        for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 30.0)):
            if not alive:
                break
            for process in alive:
                try:
                    process.send_signal(sig)
                except psutil.NoSuchProcess:
                    pass
            _, alive = psutil.wait_procs(alive, timeout=wait)
        if self.launcher.poll() is None:
            self.launcher.wait()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (a scheduler's stop, a closed terminal) end the run like Ctrl-C, so that the
    processes it started checkpoint and stop instead of training on, orphaned. Main thread only."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
