"""The reference training loop: sample a group per prompt, score with the Scorer, and take one
REINFORCE step with group-relative advantages. Checkpoints hold the model, the optimizer, the RNG
state and the step; each is written under a temporary name and renamed when complete."""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from retrain.core.backend import TrainResult
from retrain.core.config import TrainingConfig
from retrain.core.metrics import process_peak_rss_gb
from retrain.core.progress import ProgressReporter
from retrain.core.rollout import Message, Rollout
from retrain.core.run_dir import RunDir
from retrain.core.scoring import Scorer
from retrain.data import training_rows
from retrain.models import resolve_model


def _save_checkpoint(run_dir: RunDir, step: int, model: Any, tokenizer: Any, optimizer: torch.optim.Optimizer) -> Path:
    final = run_dir.checkpoints_dir / f"checkpoint-{step}"
    partial = run_dir.checkpoints_dir / f".checkpoint-{step}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    torch.save({"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate()}, partial / "training_state.pt")
    (partial / "step.json").write_text(json.dumps({"step": step}))
    partial.rename(final)  # a checkpoint that exists is complete
    return final


def _token_logprobs(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_width: int
) -> torch.Tensor:
    """Log-probability of each completion token under the model (with grad)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, prompt_width - 1 : -1]
    targets = input_ids[:, prompt_width:]
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def policy_loss(token_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, aggregation: str,
                max_tokens: int) -> torch.Tensor:
    """REINFORCE: -advantage x log-prob per token, aggregated as retrain's `loss_aggregation` says."""
    per_token = -advantages.unsqueeze(-1) * token_logprobs * mask
    if aggregation == "grpo":  # each sequence's token mean, then the mean over sequences
        return (per_token.sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    if aggregation == "dapo":  # every token of the batch weighs the same
        return per_token.sum() / mask.sum().clamp(min=1)
    return per_token.sum() / (mask.shape[0] * max_tokens)  # dr_grpo: a constant normaliser


def train(config: TrainingConfig, run_dir: RunDir, progress: ProgressReporter) -> TrainResult:
    algorithm, training = config.algorithm, config.training
    checkpoint = run_dir.latest_checkpoint()
    start = RunDir.checkpoint_step(checkpoint) if checkpoint else 0
    if checkpoint is not None:
        run_dir.set_aside_after(start)

    source = str(checkpoint) if checkpoint else resolve_model(config.model.name, config.model.revision)
    tokenizer = AutoTokenizer.from_pretrained(source, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    settings = config.optimizer
    optimizer = torch.optim.AdamW(model.parameters(), lr=algorithm.learning_rate, weight_decay=settings.weight_decay,
                                  betas=settings.betas, eps=settings.eps)
    random.seed(training.seed)
    torch.manual_seed(training.seed)
    if checkpoint is not None:
        state = torch.load(checkpoint / "training_state.pt", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])

    scorer = Scorer.from_config(config)
    rows, _ = training_rows(config, tokenizer, progress)  # in step order: step N takes the N-th prompts
    progress.start(algorithm.max_steps, completed=start)
    last_checkpoint = checkpoint
    try:
        for step in range(start + 1, algorithm.max_steps + 1):
            began = time.monotonic()
            batch_rows = rows[(step - 1) * algorithm.prompts_per_step: step * algorithm.prompts_per_step]
            texts = [tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False,
                                                   **config.data.chat_template_kwargs)
                     for row in batch_rows for _ in range(algorithm.group_size)]
            prompts = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            model.eval()
            with torch.no_grad():
                sequences = model.generate(
                    **prompts, do_sample=True, temperature=algorithm.temperature, top_p=algorithm.top_p,
                    top_k=algorithm.top_k,  # 0: off (None would mean the model default, 50)
                    max_new_tokens=algorithm.max_completion_tokens, pad_token_id=tokenizer.pad_token_id,
                )
            width = prompts["input_ids"].shape[1]
            completions = sequences[:, width:]
            # Everything up to and including the first end-of-sequence token is the completion.
            ended = (completions == tokenizer.eos_token_id).int().cumsum(-1)
            completion_mask = ((ended == 0) | ((ended == 1) & (completions == tokenizer.eos_token_id))).float()
            texts_out = [tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
                         for ids, mask in zip(completions, completion_mask, strict=True)]

            rollouts = [
                Rollout([Message(m["role"], m["content"]) for m in row["prompt"]], [Message("assistant", text)],
                        metadata={k: v for k, v in row.items() if k != "prompt"}, rollout_id=f"step{step}-{i}")
                for i, (row, text) in enumerate(zip(
                    [r for r in batch_rows for _ in range(algorithm.group_size)], texts_out, strict=True))
            ]
            breakdowns = scorer.score_sync(rollouts)
            rewards = torch.tensor([b.total for b in breakdowns]).view(-1, algorithm.group_size)
            advantages = rewards - rewards.mean(-1, keepdim=True)
            if algorithm.reward_scaling == "group":
                advantages = advantages / (rewards.std(-1, keepdim=True) + 1e-6)

            model.train()
            attention = torch.cat([prompts["attention_mask"], completion_mask.long()], dim=1)
            token_logprobs = _token_logprobs(model, sequences, attention, width)
            loss = policy_loss(token_logprobs, advantages.flatten(), completion_mask, algorithm.loss_aggregation,
                               algorithm.max_completion_tokens)
            optimizer.zero_grad()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()

            seconds = time.monotonic() - began
            lengths = completion_mask.sum(-1)
            tokens = float(prompts["attention_mask"].sum() + lengths.sum())
            record = {
                "step": step,
                **scorer.summarize(breakdowns),
                "completion_length/mean": float(lengths.mean()),
                "completion_length/max": float(lengths.max()),
                "loss": float(loss.detach()),
                "grad_norm": float(grad_norm),
                "learning_rate": algorithm.learning_rate,
                "tokens": tokens,
                "step_seconds": seconds,
                "tokens_per_second": tokens / seconds,
                "peak_memory_gb": process_peak_rss_gb(),
            }
            if step % training.log_every == 0:
                run_dir.write_metrics(record)
                run_dir.write_samples(step, [
                    {"prompt": r.prompt, "completion": r.completion, "breakdown": b.to_dict()}
                    for r, b in list(zip(rollouts, breakdowns, strict=True))[: training.samples_per_step]
                ])
            progress.step(record)
            if step % training.save_every == 0 or step == algorithm.max_steps:
                last_checkpoint = _save_checkpoint(run_dir, step, model, tokenizer, optimizer)
    finally:
        progress.stop()
    model.save_pretrained(run_dir.model_dir)
    tokenizer.save_pretrained(run_dir.model_dir)
    return TrainResult(algorithm.max_steps, run_dir.model_dir, last_checkpoint)
