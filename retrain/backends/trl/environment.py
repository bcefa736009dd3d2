"""Environments on TRL: TRL's `rollout_func` runs each prompt's episode in retrain's environment
layer and hands TRL the token ids exactly as generated, with `env_mask` 0 on the environment's
tokens (TRL multiplies it into the loss mask, so they are context, never trained on).

Why `rollout_func` and not TRL's `environment_factory`/`tools=`: both are token-exact too, but
they need a chat template TRL can parse responses of (Qwen, Llama 3, ... and not SmolLM2's) and
`jmespath` on transformers < 5.13; `rollout_func` works with any template, and the same episode
code (retrain/environments/episode.py) serves the verl bridge.

TRL gives `rollout_func` only the prompts, so each row's prompt carries its row index
(`retrain_row` on the last message) to find the row (answer column and all) for `reset`.
Generation here is transformers `generate()` on the trainer's model, batched across the
episodes that are waiting for the model; vLLM with environments is not wired yet.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from retrain.core.config import TrainingConfig
from retrain.core.rollout import Rollout
from retrain.environments import EnvironmentFactory
from retrain.environments.episode import (
    EPISODE_FIELD,
    BatchedGenerator,
    EpisodeLimits,
    HFChatTokens,
    episode_record,
    run_episodes,
)

ROW_KEY = "retrain_row"
T = TypeVar("T")

GenerateBatch = Callable[[list[list[int]], list[int]], list[list[int]]]


def tag_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose last prompt message names the row, so `rollout_func` can find it again."""
    tagged = []
    for index, row in enumerate(rows):
        prompt = [dict(message) for message in row["prompt"]]
        prompt[-1][ROW_KEY] = index
        tagged.append({**row, "prompt": prompt})
    return tagged


class _LoopThread:
    """One event loop for the run's episodes and what they share (MCP sessions live in it)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="retrain-episodes", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def transformers_generate_batch(trainer: Any) -> GenerateBatch:
    """Batched sampling with the trainer's model and generation settings: left-padded sequences,
    each cut after its first end-of-turn token and at its own budget."""
    import inspect

    import torch
    from trl.models import unwrap_model_for_generation

    unwrap_options = {"generation_kwargs": trainer.generation_kwargs}
    if "gradient_checkpointing_kwargs" in inspect.signature(unwrap_model_for_generation).parameters:
        # TRL 1.16+; the `unsloth` extra pins TRL 1.15, which has no such argument.
        unwrap_options["gradient_checkpointing_kwargs"] = trainer.args.gradient_checkpointing_kwargs

    def generate(sequences: list[list[int]], budgets: list[int]) -> list[list[int]]:
        pad = trainer.processing_class.pad_token_id
        width = max(len(s) for s in sequences)
        device = trainer.accelerator.device
        input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in sequences], device=device)
        attention = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences], device=device)
        with (
            unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator, **unwrap_options) as model,
            torch.no_grad(),
        ):
            output = model.generate(input_ids=input_ids, attention_mask=attention,
                                    generation_config=trainer.generation_config, max_new_tokens=max(budgets))
        results = []
        for row, budget in zip(output[:, width:].tolist(), budgets, strict=True):
            row = row[:budget]
            ends = [i for i, token in enumerate(row) if token in trainer.eos_token_ids]
            results.append(row[: ends[0] + 1] if ends else row)
        return results

    return generate


class EpisodeRollouts:
    """TRL's `rollout_func(prompts, trainer) -> dict` backed by retrain's environment layer."""

    def __init__(self, config: TrainingConfig, rows: list[dict[str, Any]], tokenizer: Any,
                 generate_batch: Callable[[Any], GenerateBatch] = transformers_generate_batch):
        self.rows = rows
        self.factory = EnvironmentFactory(config.environment)
        self.tokens = HFChatTokens(tokenizer, config.data.chat_template_kwargs)
        self.limits = EpisodeLimits(config.algorithm.max_completion_tokens, self.factory.max_turns)
        self.make_generate_batch = generate_batch
        self.last_rollouts: list[Rollout] = []
        self._loop = _LoopThread()
        try:
            self._loop.run(self.factory.start())
        except BaseException:
            self._loop.stop()
            raise

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        rows = [self.rows[prompt[-1][ROW_KEY]] for prompt in prompts]
        generate = BatchedGenerator(self.make_generate_batch(trainer))
        rollouts = self._loop.run(run_episodes(self.factory.new, rows, generate, self.tokens, self.limits))
        self.last_rollouts = rollouts
        return {
            "prompt_ids": [r.prompt_token_ids for r in rollouts],
            "completion_ids": [r.completion_token_ids for r in rollouts],
            "logprobs": None,
            "env_mask": [r.trainable_mask for r in rollouts],
            EPISODE_FIELD: [episode_record(r) for r in rollouts],
        }

    def close(self) -> None:
        try:
            self._loop.run(self.factory.close())
        finally:
            self._loop.stop()
