"""The neutral metrics record: the contract that makes runs on different backends comparable.

Every adapter maps its library's log names onto these keys. Per-component keys are
`rewards/<name>/mean`, `verifiers/<name>/pass_rate` and `constraints/<name>/mean`.
"""

from __future__ import annotations

import json
import math
import resource
import sys
from pathlib import Path
from typing import Any

# Keys every adapter writes on every record (NaN where a value is not defined for the step).
REQUIRED_KEYS = (
    "step",
    "reward/mean",
    "reward/std",
    "completion_length/mean",
    "step_seconds",
    "tokens_per_second",
)
# Keys an adapter writes when its library computes them.
OPTIONAL_KEYS = (
    "kl",
    "entropy",
    "loss",
    "grad_norm",
    "learning_rate",
    "completion_length/max",
    "clip_ratio",
    "tokens",
    "peak_memory_gb",
    "elapsed_seconds",
    "reward/zero_spread_groups",
    "dynamic_sampling/groups_kept",
    "dynamic_sampling/groups_dropped",
    "critic/value_loss",
)
# One definition per key, the same on every backend; a backend that cannot give a key as defined leaves it
# out rather than reporting something else under its name. (docs/backends.md lists the mappings.)
DEFINITIONS: dict[str, str] = {
    "reward/mean": "mean of the Scorer's totals over the step's completions",
    "reward/std": "their standard deviation",
    "completion_length/mean": "mean tokens the model generated per completion (tool and environment tokens "
                              "are not counted)",
    "completion_length/max": "the most tokens the model generated in one completion",
    "kl": "mean over the step's completion tokens of the KL estimate against the reference (k3); verl gives it "
          "only with loss_aggregation dapo (token-mean), as it aggregates it like its loss otherwise",
    "entropy": "mean over the step's completion tokens of the policy's entropy; verl: dapo only, as kl",
    "loss": "the objective minimised (policy loss + kl_coef x KL - entropy_coef x entropy), mean over the step's "
            "optimizer updates",
    "grad_norm": "the global gradient norm before clipping, mean over the step's optimizer updates (TRL logs only "
                 "the last update's: with several updates per step it is left out on TRL)",
    "learning_rate": "the learning rate the scheduler reports at the end of the step",
    "clip_ratio": "share of completion tokens whose ratio was clipped",
    "tokens": "prompt and completion tokens seen so far",
    "reward/zero_spread_groups": "share of the step's groups whose completions all got the same total (std within "
                                 "1e-8 of 0): their advantages are zero, nothing is learned from them (left out on "
                                 "TRL with reward_scaling batch, where TRL measures the batch's spread instead)",
    "dynamic_sampling/groups_kept": "algorithm.dynamic_sampling: the groups the step trained on (prompts_per_step); "
                                    "its reward metrics are over these",
    "dynamic_sampling/groups_dropped": "algorithm.dynamic_sampling: the groups generated and scored for the step but "
                                       "not trained on (rewards all equal, or beyond the full batch)",
    "critic/value_loss": "PPO: the critic's clipped value loss, mean over the step's critic updates",
    "step_seconds": "wall time of one step (generation, scoring, updates), checkpoint saving left out",
    "tokens_per_second": "tokens processed in the step over step_seconds",
    "peak_memory_gb": "peak memory of the process that trains: GPU memory allocated by torch, or on a CPU the "
                      "process's peak resident memory (on TRL that process also generates; on verl the "
                      "rollout runs in its own processes)",
}
# What the Scorer scores: each reward's mean, each verifier's pass rate, each constraint's mean.
SCORE_PREFIXES = ("rewards/", "verifiers/", "constraints/")
COMPONENT_PREFIXES = (*SCORE_PREFIXES, "errors/", "env/")


def process_peak_rss_gb() -> float:
    """This process's peak resident memory in GiB: `peak_memory_gb` for runs on a CPU."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


def episode_metrics(episodes: list[Any]) -> dict[str, float]:
    """Neutral environment metrics of a step's episodes (`EpisodeStats`): `env/turns/mean`,
    `env/tool_calls/mean`, `env/tool_error_rate` (failed calls / calls), `env/truncated_rate`,
    `env/episode_error_rate` (episodes the environment ended with an error, e.g. a reply that is not an action),
    `env/tools/<name>/calls` and `env/tool_errors/<kind>` (totals over the step)."""
    episodes = [e for e in episodes if e is not None]
    if not episodes:
        return {}
    calls = sum(e.tool_calls for e in episodes)
    record: dict[str, float] = {
        "env/turns/mean": sum(e.turns for e in episodes) / len(episodes),
        "env/tool_calls/mean": calls / len(episodes),
        "env/tool_error_rate": sum(e.tool_errors for e in episodes) / calls if calls else 0.0,
        "env/truncated_rate": sum(e.truncated for e in episodes) / len(episodes),
        "env/episode_error_rate": sum(getattr(e, "error", None) is not None for e in episodes) / len(episodes),
    }
    for key, attribute in (("tools", "calls_per_tool"), ("tool_errors", "errors_per_kind")):
        totals: dict[str, int] = {}
        for episode in episodes:
            for name, count in getattr(episode, attribute).items():
                totals[name] = totals.get(name, 0) + count
        record.update({f"env/{key}/{name}" + ("/calls" if key == "tools" else ""): float(count)
                       for name, count in sorted(totals.items())})
    return record


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None  # JSON has no NaN; null means "not computed"
    return value


class JsonlWriter:
    """Appends one JSON object per line and flushes it, so a crash loses at most the line being written."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps({k: _clean(v) for k, v in record.items()}, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash mid-write
    return records
