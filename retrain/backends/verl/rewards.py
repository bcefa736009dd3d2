"""The Scorer as verl's custom reward function.

verl 0.9.1's v1 trainer scores each rollout on its own as it leaves the agent loop (there is no
batch hook), in its reward-loop workers. This module is loaded there by file path
(`reward.custom_reward_function.path`); it builds the Scorer once per worker from the run's
config.yaml and appends each breakdown to a JSONL file in the run directory, from which the
launcher computes the per-component metrics verl does not log for training steps.
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

from retrain.backends.verl.data import columns_from_extra_info
from retrain.core.config import TrainingConfig
from retrain.core.rollout import Message, Rollout
from retrain.core.scoring import Scorer


@cache
def _scorer(config_path: str) -> Scorer:
    return Scorer.from_config(TrainingConfig.from_yaml(config_path))


def _append(path: str, record: dict[str, Any]) -> None:
    # One O_APPEND write per line: lines from several reward workers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record, default=str) + "\n").encode())
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
    **_: Any,
) -> dict[str, Any]:
    extra_info = extra_info or {}
    rollout = Rollout(
        prompt_messages=[Message("user", str(extra_info.get("prompt", "")))],
        completion_messages=[Message("assistant", solution_str)],
        metadata=columns_from_extra_info(extra_info),
        rollout_id=f"row{extra_info.get('index', '?')}",
    )
    scorer = _scorer(config_path)
    (breakdown,) = await scorer.score([rollout])
    _append(breakdowns_path, {"prompt": rollout.prompt, "completion": solution_str, "breakdown": breakdown.to_dict()})
    return {"score": breakdown.total}
