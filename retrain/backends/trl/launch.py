"""Start TRL's real GRPOTrainer on a retrain config and leave everything in the run directory."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from retrain.backends.trl.callbacks import NeutralMetricsCallback
from retrain.backends.trl.environment import EpisodeRollouts, tag_rows
from retrain.backends.trl.rewards import ScorerRewardFunction
from retrain.backends.trl.translate import (
    detect_hardware,
    grpo_config_kwargs,
    peft_kwargs,
    resolve_engine,
    vllm_installed,
)
from retrain.core.backend import TrainResult
from retrain.core.config import TrainingConfig
from retrain.core.errors import BackendError, ModelError
from retrain.core.progress import ProgressReporter
from retrain.core.run_dir import RunDir
from retrain.core.scoring import Scorer
from retrain.data import load_rows
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
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

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
    if config.model.revision:
        kwargs["model_init_kwargs"] = {**kwargs["model_init_kwargs"], "revision": config.model.revision}
    args = GRPOConfig(**kwargs)

    scorer = Scorer.from_config(config)
    reward_function = ScorerRewardFunction(
        scorer, run_dir, config.training.samples_per_step, config.training.log_every
    )
    component_names = {c.name for c in scorer.components}
    peft_config = None
    lora = peft_kwargs(config) if config.model.loader == "transformers" else None  # unsloth adds its own
    if lora is not None:
        from peft import LoraConfig

        peft_config = LoraConfig(**lora)
    rows = load_rows(config.data)
    episodes = None
    if config.environment is not None:
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is "experimental" in TRL 1.16
        rows = tag_rows(rows)
        options = {"generate_batch": generate_batch} if generate_batch else {}
        episodes = EpisodeRollouts(config, rows, tokenizer, **options)
    try:
        trainer = GRPOTrainer(
            model=model,  # type: ignore[arg-type]  # a path, or the model Unsloth loaded
            reward_funcs=[reward_function],  # type: ignore[list-item]  # TRL awaits async callables; its hint omits them
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[NeutralMetricsCallback(run_dir, progress, component_names)],
            peft_config=peft_config,
            rollout_func=episodes,
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
    trainer = build_trainer(config, run_dir, progress)
    interrupted = False
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except KeyboardInterrupt:
        interrupted = True
        progress.stop()
        _save_interrupted(trainer, run_dir)
        raise
    finally:
        if not interrupted:
            progress.stop()
        if trainer.retrain_episodes is not None:
            trainer.retrain_episodes.close()  # stops MCP servers and the episode loop, also on failure
    trainer.save_model(str(run_dir.model_dir))
    trainer.processing_class.save_pretrained(str(run_dir.model_dir))
    return TrainResult(
        steps_completed=trainer.state.global_step,
        final_model_dir=run_dir.model_dir,
        last_checkpoint=run_dir.latest_checkpoint(),
    )


def _save_interrupted(trainer, run_dir: RunDir) -> Path | None:  # type: ignore[no-untyped-def]
    """On Ctrl-C, checkpoint the last finished step so `--resume` loses nothing done."""
    step = trainer.state.global_step
    latest = run_dir.latest_checkpoint()
    if step == 0 or (latest is not None and RunDir.checkpoint_step(latest) >= step):
        return latest
    # Trainer's own checkpoint writer: model, optimizer, scheduler, RNG and trainer state.
    trainer._save_checkpoint(trainer.model, trial=None)
    run_dir.mark_checkpoint_complete(step)
    return run_dir.latest_checkpoint()
