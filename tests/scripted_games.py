"""Scripted players for the games the environment tests play (TextArena's Guess The Number, the OpenEnv grid walk),
shared by the TRL and verl episode tests: each stands in for a model (the tiny random test model never plays),
deterministic from the conversation so far, so the same game gets the same moves on both backends. Also the
scripted TRL run those tests share, and how they read the episodes a run sampled.

`guess_in_order` guesses 1, 2, 3, ... in order: games whose number is at most the turns allowed are won, the
others run out of turns, so a batch holds wins and losses."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def guess_in_order(conversation: str) -> str:
    """The next move, from the decoded conversation (chat-templated): one more than the guesses so far."""
    guesses = conversation.count("<|im_start|>assistant") - 1  # the last one is the turn being generated
    return f"My guess is [{guesses + 1}]"


def walk_to_goal(conversation: str) -> str:
    """The next move in examples/openenv_grid.py's GridWalk, from the last board in the decoded conversation: along x
    towards G first, then along y, as JSON. Deterministic, so the same walk gets the same moves on both backends."""
    board = conversation.rsplit("board:\n", 1)[1].split("\nmessage:", 1)[0].splitlines()
    cells = {char: (x, y) for y, row in enumerate(board) for x, char in enumerate(row)}
    (sx, sy), (gx, gy) = cells["S"], cells["G"]
    direction = "right" if gx > sx else "left" if gx < sx else "down" if gy > sy else "up"
    return json.dumps({"direction": direction})


def scripted_trl_run(config: dict[str, Any], tmp_path: Path, player: Callable[[str], str]) -> Path:
    """`player` (a function of the decoded conversation) through TRL's own trainer and retrain's rollout_func;
    the run's folder."""
    from retrain.backends.trl.launch import build_trainer
    from retrain.core.config import TrainingConfig
    from retrain.core.progress import ProgressReporter
    from retrain.core.run_dir import RunDir
    from tests.tiny_runs import QUIET

    def policy(trainer: Any) -> Any:
        tokenizer = trainer.processing_class

        def generate_batch(sequences: list[list[int]], budgets: list[int]) -> list[list[int]]:
            return [tokenizer(player(tokenizer.decode(sequence)), add_special_tokens=False)["input_ids"]
                    + [tokenizer.eos_token_id] for sequence in sequences]

        return generate_batch

    run_dir = RunDir.create(tmp_path / "trl", "scripted")
    trainer = build_trainer(TrainingConfig.from_data(config), run_dir, ProgressReporter(QUIET, enabled=False),
                            generate_batch=policy)
    try:
        trainer.train()
    finally:
        trainer.retrain_episodes.close()
    return run_dir.path


def episodes_of(run_dir: Path) -> list[tuple[str, str]]:
    """Each sampled episode of step 1 as (the model's and the game's words, the breakdown's scores)."""
    samples = [json.loads(line) for line in (run_dir / "samples" / "step_000001.jsonl").read_text().splitlines()]
    return sorted((s["completion"], json.dumps({k: s["breakdown"][k] for k in ("total", "rewards")}, sort_keys=True))
                  for s in samples)
