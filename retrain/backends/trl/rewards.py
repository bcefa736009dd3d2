"""The Scorer as a TRL reward function.

TRL gets one reward function whose value is the Scorer's total, so TRL's advantages come from
exactly the breakdown retrain reports. Each component's batch statistic goes to TRL's
`log_metric`, which averages it over the logging step and across processes.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from retrain.core.metrics import episode_metrics
from retrain.core.rollout import Message, Rollout
from retrain.core.run_dir import RunDir
from retrain.core.scoring import Scorer
from retrain.environments.episode import EPISODE_FIELD, completion_from_record, opening_from_record

_RESERVED = {"trainer_state", "log_metric", "log_extra", "environments", EPISODE_FIELD}


def _as_messages(value: Any, default_role: str) -> list[Message]:
    if isinstance(value, str):
        return [Message(default_role, value)]  # type: ignore[arg-type]
    return [Message(m["role"], m.get("content") or "") for m in value]


def rollouts_from_trl(
    prompts: list[Any], completions: list[Any], completion_ids: list[list[int]] | None, columns: dict[str, list[Any]],
    step: int, episodes: list[dict[str, Any]] | None = None,
) -> list[Rollout]:
    """What TRL passes a reward function, as Rollouts. With an environment, TRL's `completions`
    are the decoded tokens of the whole episode (tool output included), so the episode's own
    messages are used instead: rewards read the model's words apart from the tools'."""
    rollouts = []
    for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        token_ids = list(completion_ids[i]) if completion_ids is not None else []
        episode = None
        prompt_messages = _as_messages(prompt, "user")
        if episodes is not None:
            completion_messages, episode = completion_from_record(episodes[i])
            prompt_messages = opening_from_record(episodes[i], prompt_messages)
        else:
            completion_messages = _as_messages(completion, "assistant")
        rollouts.append(Rollout(
            prompt_messages=prompt_messages,
            completion_messages=completion_messages,
            completion_token_ids=token_ids,
            trainable_mask=[1] * len(token_ids) if episodes is None else [],
            metadata={key: values[i] for key, values in columns.items()},
            rollout_id=f"step{step}-{i}",
            episode=episode,
        ))
    return rollouts


class ScorerRewardFunction:
    """An async TRL reward function backed by the Scorer; writes sample breakdowns on logged steps."""

    __name__ = "retrain"

    def __init__(self, scorer: Scorer, run_dir: RunDir | None, samples_per_step: int, log_every: int,
                 updates_per_step: int = 1):
        self.scorer = scorer
        self.run_dir = run_dir
        self.samples_per_step = samples_per_step
        self.log_every = log_every
        self.updates_per_step = updates_per_step  # TRL counts optimizer updates; samples are filed by step

    async def __call__(
        self,
        prompts: list[Any],
        completions: list[Any],
        completion_ids: list[list[int]] | None = None,
        trainer_state: Any = None,
        log_metric: Any = None,
        **kwargs: Any,
    ) -> list[float]:
        # Scored at the first update of a step, when TRL's global_step counts the updates before it.
        step = (trainer_state.global_step // self.updates_per_step + 1) if trainer_state is not None else 0
        columns = {k: v for k, v in kwargs.items() if k not in _RESERVED}
        rollouts = rollouts_from_trl(prompts, completions, completion_ids, columns, step, kwargs.get(EPISODE_FIELD))
        breakdowns = await self.scorer.score(rollouts)
        if log_metric is not None:
            for name, value in self.scorer.summarize(breakdowns).items():
                if not name.startswith("reward/"):  # TRL's own `reward`/`reward_std` cover the total
                    log_metric(name, value)
            for name, value in episode_metrics([r.episode for r in rollouts]).items():
                log_metric(name, value)
        main_process = trainer_state is None or getattr(trainer_state, "is_world_process_zero", True)
        if self.run_dir is not None and main_process and self.samples_per_step and step % self.log_every == 0:
            self.run_dir.write_samples(step, [
                {"prompt": r.prompt, "completion": r.completion, "breakdown": b.to_dict(),
                 **({"messages": [m.to_dict() for m in r.completion_messages], "episode": asdict(r.episode)}
                    if r.episode else {})}
                for r, b in list(zip(rollouts, breakdowns, strict=True))[: self.samples_per_step]
            ])
        return [b.total for b in breakdowns]
