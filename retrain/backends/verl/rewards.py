"""The Scorer as verl's custom reward function.

verl 0.9.1's v1 trainer scores each rollout on its own as it leaves the agent loop (there is no
batch hook), in its reward-loop workers. This module is loaded there by file path
(`reward.custom_reward_function.path`); it builds the Scorer once per worker from the run's
config.yaml and appends each breakdown to a JSONL file in the run directory, from which the
launcher computes the per-component metrics verl does not log for training steps.

A reward that fails under `rewards.on_error: fail` is written to `reward_errors.log` before it is
raised: verl turns it into a failed trajectory and stops with a generic replay-buffer error, so
the launcher reports the reward's own message instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from functools import cache
from typing import Any

from retrain.backends.verl.data import columns_from_extra_info
from retrain.core.config import TrainingConfig
from retrain.core.errors import RewardError
from retrain.core.rollout import Message, Rollout
from retrain.core.scoring import Scorer
from retrain.environments.episode import EPISODE_FIELD, completion_from_record


@cache
def _scorer(config_path: str) -> Scorer:
    return Scorer.from_config(TrainingConfig.from_yaml(config_path))


def _append(path: str, line: str) -> None:
    # One O_APPEND write per line: lines from several reward workers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


async def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: dict[str, Any] | None = None,
    *,
    config_path: str,
    breakdowns_path: str,
    errors_path: str,
    **_: Any,
) -> dict[str, Any]:
    extra_info = extra_info or {}
    episode = None
    completion_messages = [Message("assistant", solution_str)]
    if isinstance(extra_info.get(EPISODE_FIELD), dict):
        # A multi-step episode: solution_str is the decoded model and tool tokens together; the
        # agent loop sent the messages, so rewards read the model's words apart from the tools'.
        completion_messages, episode = completion_from_record(extra_info[EPISODE_FIELD])
    rollout = Rollout(
        prompt_messages=[Message("user", str(extra_info.get("prompt", "")))],
        completion_messages=completion_messages,
        metadata=columns_from_extra_info(extra_info),
        rollout_id=f"row{extra_info.get('index', '?')}",
        episode=episode,
    )
    scorer = _scorer(config_path)
    try:
        (breakdown,) = await scorer.score([rollout])
    except RewardError as exc:
        _append(errors_path, " ".join(str(exc).split()))
        raise
    record: dict[str, Any] = {
        "prompt": rollout.prompt, "completion": rollout.completion, "breakdown": breakdown.to_dict()
    }
    if episode is not None:
        episode_info = extra_info[EPISODE_FIELD]
        record |= {"messages": [m.to_dict() for m in completion_messages], "episode": asdict(episode),
                   "token_ids": list(episode_info.get("token_ids", [])),
                   "trainable_mask": list(episode_info.get("trainable_mask", []))}
    _append(breakdowns_path, json.dumps(record, default=str))
    return {"score": breakdown.total}
