"""The Scorer as verl's custom reward function.

verl 0.9.1's v1 trainer scores each rollout on its own as it leaves the agent loop (there is no
batch hook), in its reward-loop workers. This module is loaded there by file path
(`reward.custom_reward_function.path`); it builds the Scorer once per worker from the run's
config.yaml and appends each breakdown to a JSONL file in the run directory, from which the
launcher computes the per-component metrics verl does not log for training steps.

A reward that fails under `rewards.on_error: fail` is written to `reward_errors.log` before it is
raised: verl turns it into a failed trajectory and stops with a generic replay-buffer error, so
the launcher reports the reward's own message instead.

The Scorer sees the same `Rollout` as on TRL: every prompt message (the row's, carried in
`extra_info`), the completion as verl's naive reward manager decodes it, and its token ids, which
`RetrainRewardManager` (this module's reward manager, loaded by path) adds to `extra_info`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from functools import cache
from typing import Any

from retrain.backends.verl.data import columns_from_extra_info, messages_from_extra_info
from retrain.core.config import TrainingConfig
from retrain.core.errors import RewardError
from retrain.core.rollout import Message, Rollout
from retrain.core.scoring import Scorer
from retrain.environments.episode import EPISODE_FIELD, completion_from_record, opening_from_record

COMPLETION_TOKEN_IDS = "retrain_completion_token_ids"
GROUP_ID = "retrain_group"


def _reward_manager_class() -> type:
    """verl's naive reward manager, passing the completion's token ids on to `compute_score`."""
    import numpy as np
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager

    class RetrainRewardManager(NaiveRewardManager):  # type: ignore[misc]
        async def run_single(self, data: Any) -> dict[str, Any]:
            data = data[-1:]  # as the naive manager: the last sequence of a multi-sequence output
            item = data[0]
            response_ids = item.batch["responses"]
            length = int(item.batch["attention_mask"][-response_ids.shape[-1]:].sum())
            extra_info = dict(item.non_tensor_batch.get("extra_info") or {})
            extra_info[COMPLETION_TOKEN_IDS] = response_ids[:length].tolist()
            if "uid" in item.non_tensor_batch:  # the group (one prompt's rollouts in one generation)
                extra_info[GROUP_ID] = str(item.non_tensor_batch["uid"])
            data.non_tensor_batch["extra_info"] = np.array([extra_info], dtype=object)
            return await super().run_single(data)

    return RetrainRewardManager


def __getattr__(name: str) -> Any:
    # verl loads the reward manager by name from this file (reward.reward_manager.source: importlib);
    # built on first use, so that the launcher can import this module without verl's reward loop.
    if name == "RetrainRewardManager":
        return _reward_manager_class()
    raise AttributeError(name)


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
    prompt_messages = messages_from_extra_info(extra_info)
    if isinstance(extra_info.get(EPISODE_FIELD), dict):
        # A multi-step episode: solution_str is the decoded model and tool tokens together; the
        # agent loop sent the messages, so rewards read the model's words apart from the tools'.
        completion_messages, episode = completion_from_record(extra_info[EPISODE_FIELD])
        prompt_messages = opening_from_record(extra_info[EPISODE_FIELD], prompt_messages)
    token_ids = [int(t) for t in extra_info.get(COMPLETION_TOKEN_IDS, [])]
    rollout = Rollout(
        prompt_messages=prompt_messages,
        completion_messages=completion_messages,
        completion_token_ids=token_ids,  # the episode's tokens with an environment, as TRL's completion_ids
        trainable_mask=[1] * len(token_ids) if episode is None else [],
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
        "prompt": rollout.prompt, "completion": rollout.completion, "breakdown": breakdown.to_dict(),
        "group": extra_info.get(GROUP_ID),
    }
    if episode is not None:
        episode_info = extra_info[EPISODE_FIELD]
        record |= {"messages": [m.to_dict() for m in completion_messages], "episode": asdict(episode),
                   "token_ids": list(episode_info.get("token_ids", [])),
                   "trainable_mask": list(episode_info.get("trainable_mask", []))}
    _append(breakdowns_path, json.dumps(record, default=str))
    return {"score": breakdown.total}
