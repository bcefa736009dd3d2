"""The effective settings of a run, side by side: what each library will really apply.

Each backend reads its settings back from the native config it composed (library defaults
included) and names them with the keys below, in neutral words; `compare_settings` lines them up
and marks every difference. A difference is either a bug in a translation, or one of `DECLARED`:
a known difference between the libraries that retrain cannot remove, with the reason. A test runs
this over every example and fails on any difference that is not declared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# (key, what it is), in the order of the table. A backend gives a value for every key it can; a key it
# cannot give (a concept it has no setting for) is absent, never guessed.
SETTINGS: list[tuple[str, str]] = [
    ("optimizer.name", "the optimizer"),
    ("optimizer.lr", "peak learning rate"),
    ("optimizer.weight_decay", "AdamW weight decay"),
    ("optimizer.decayed_parameters", "which weights decay"),
    ("optimizer.betas", "AdamW betas"),
    ("optimizer.eps", "AdamW epsilon"),
    ("optimizer.max_grad_norm", "gradient clipping (global norm)"),
    ("schedule.type", "learning-rate schedule after warmup"),
    ("schedule.warmup_steps", "warmup, in steps"),
    ("schedule.min_lr_ratio", "cosine floor, share of the peak"),
    ("schedule.moves_within_a_step", "the learning rate changes between a step's updates"),
    ("batch.steps", "steps (one generated batch each)"),
    ("batch.prompts_per_step", "prompts per generated batch"),
    ("batch.group_size", "completions per prompt"),
    ("batch.mini_batch_completions", "completions per optimizer update (all processes)"),
    ("batch.passes", "passes over each generated batch"),
    ("batch.updates_per_step", "optimizer updates per step"),
    ("batch.micro_batch", "completions per forward/backward (per process)"),
    ("batch.mini_batch_order", "how a batch is split into mini-batches"),
    ("data.order", "prompt order"),
    ("data.chat_template_kwargs", "chat template arguments"),
    ("prompt.truncation", "what happens to a prompt past the limit"),
    ("sampling.temperature", "temperature"),
    ("sampling.top_p", "top-p"),
    ("sampling.top_k", "top-k (0: off)"),
    ("sampling.max_tokens", "most tokens per completion"),
    ("sampling.seed", "sampling seed"),
    ("precision.weights", "dtype of the weights the optimizer updates"),
    ("precision.compute", "dtype of forward/backward"),
    ("kl.coef", "KL coefficient (0: off)"),
    ("kl.estimator", "KL estimator"),
    ("kl.placement", "where the KL term goes"),
    ("kl.importance_weighted", "KL term weighted by the importance ratio"),
    ("kl.clamp", "bound on the per-token KL estimate"),
    ("clip.low", "ratio clip, low side"),
    ("clip.high", "ratio clip, high side"),
    ("clip.dual", "dual clip on negative advantages"),
    ("loss.aggregation", "how token losses are averaged"),
    ("loss.ratio", "the policy loss and its importance ratio"),
    ("loss.dr_grpo_divisor", "Dr. GRPO's constant divisor"),
    ("loss.token_mean_over", "dapo: the tokens an update's loss is divided by"),
    ("loss.masks_truncated", "truncated completions left out of the loss"),
    ("loss.sapo_temperatures", "SAPO's gate temperatures (positive, other advantages)"),
    ("batch.dynamic_sampling", "groups whose rewards all agree dropped and refilled (DAPO)"),
    ("entropy.coef", "entropy bonus coefficient"),
    ("advantage.estimator", "advantage estimator"),
    ("advantage.scaling", "advantages divided by the std of"),
    ("advantage.std_epsilon", "epsilon added to that std"),
    ("critic.lr", "the critic's learning rate"),
    ("critic.value_clip", "the critic's value clip"),
    ("critic.gae", "GAE's gamma and lambda"),
    ("critic.warmup_steps", "steps that train only the critic"),
    ("rollout.importance_sampling", "correction for the sampler's numerics (vLLM)"),
    ("model.gradient_checkpointing", "gradient checkpointing (memory only)"),
    ("model.lora", "LoRA adapters (r, alpha, dropout, targets)"),
]
DESCRIPTIONS = dict(SETTINGS)

# Differences between the libraries that retrain cannot remove, and why. Shown in the table with the reason.
DECLARED: dict[str, str] = {
    "schedule.moves_within_a_step": "TRL's scheduler steps after every optimizer update, verl's once per step (after "
                                    "all its updates): with several updates per step, warmup and decay move the "
                                    "learning rate between them on TRL only",
    "batch.mini_batch_order": "TRL shuffles a generated batch's completions before splitting them into mini-batches; "
                              "verl takes them in order (actor.shuffle off). The same completions, the same number "
                              "of updates, a different grouping",
    "kl.clamp": "verl clamps each token's low_var_kl (k3) estimate to [-10, 10]; TRL does not (they agree while the "
                "policy stays near the reference)",
    "clip.dual": "verl bounds a negative-advantage token's loss at clip_ratio_c x advantage (dual clip, 3); TRL "
                 "has no dual clip (they agree while ratios stay under 3)",
    "advantage.std_epsilon": "TRL divides by std + 1e-4, verl by std + 1e-6 (the libraries' constants)",
    "loss.token_mean_over": "with several mini-batches, TRL's dapo loss divides each update by the generated "
                            "batch's tokens / mini_batches (an average), verl's by that mini-batch's own tokens "
                            "(the same when every mini-batch has as many tokens)",
}

# Differences declared only between these values (a difference in other values of the key is not covered).
DECLARED_VALUES: dict[str, list[tuple[frozenset[str], str]]] = {
    "loss.ratio": [(
        frozenset({"clipped, whole sequence", "clipped, per token"}),
        "RLOO: TRL's RLOOTrainer clips the completion's whole ratio (exp of its summed log-ratios), verl clips each "
        "token's: the same gradient while the policy has not moved (updates_per_batch 1, one mini-batch), different "
        "after; their `loss` values differ too (TRL: -A per completion, verl: -A x its tokens)",
    )],
}


def declared_reason(key: str, values: list[Any]) -> str | None:
    """Why these values of `key` may differ, if that is declared."""
    if key in DECLARED:
        return DECLARED[key]
    distinct = frozenset(str(value) for value in values)
    return next((reason for allowed, reason in DECLARED_VALUES.get(key, []) if distinct == allowed), None)


@dataclass
class SettingsRow:
    key: str
    description: str
    values: dict[str, Any]  # backend -> value (absent: the backend has no such setting)
    differs: bool
    reason: str | None  # why, for a declared difference


def _same(values: list[Any]) -> bool:
    def norm(value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return round(float(value), 12)  # 30 steps and 30.0 steps are the same
        if isinstance(value, list | tuple):
            return tuple(norm(v) for v in value)
        if isinstance(value, dict):
            return tuple(sorted((k, norm(v)) for k, v in value.items()))
        return value

    return len({repr(norm(v)) for v in values}) <= 1


def compare_settings(effective: dict[str, dict[str, Any]]) -> list[SettingsRow]:
    """One row per setting any backend gave, in table order, each difference marked (declared or not)."""
    keys = [key for key, _ in SETTINGS if any(key in values for values in effective.values())]
    extra = sorted({key for values in effective.values() for key in values} - set(keys))
    rows = []
    for key in keys + extra:
        values = {backend: settings[key] for backend, settings in effective.items() if key in settings}
        differs = len(values) < len(effective) or not _same(list(values.values()))
        rows.append(SettingsRow(key, DESCRIPTIONS.get(key, ""), values, differs,
                                declared_reason(key, list(values.values())) if differs else None))
    return rows


def undeclared(rows: Sequence[SettingsRow]) -> list[SettingsRow]:
    """The differences no reason covers: a translation bug, or a backend_options override to look at."""
    return [row for row in rows if row.differs and row.reason is None]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_cell(v)}" for k, v in value.items()) + "}" if value else "{}"
    return str(value)


def _marked(rows: Sequence[SettingsRow], declared: str, different: str) -> tuple[list[str], list[str]]:
    """Each row's mark (`declared` with the reason's number, `different`, or "") and the numbered reasons."""
    marks: list[str] = []
    reasons: list[str] = []
    for row in rows:
        if row.differs and row.reason:
            reasons.append(f"({len(reasons) + 1}) {row.key}: {row.reason}")
            marks.append(f"{declared} ({len(reasons)})")
        else:
            marks.append(different if row.differs else "")
    return marks, reasons


def _cells(row: SettingsRow, backends: list[str]) -> list[str]:
    return [_cell(row.values[b]) if b in row.values else "(none)" for b in backends]


def render_markdown(rows: list[SettingsRow], backends: list[str]) -> str:
    """The table as Markdown: one column per backend, a mark on every difference, reasons below it."""
    marks, reasons = _marked(rows, "≠ declared", "**≠ DIFFERENT**")
    lines = ["| setting | " + " | ".join(backends) + " | |", "|---|" + "---|" * len(backends) + "---|"]
    lines += [f"| {row.key} | " + " | ".join(_cells(row, backends)) + f" | {mark} |"
              for row, mark in zip(rows, marks, strict=True)]
    return "\n".join(lines + ([""] + reasons if reasons else []))


def render_text(rows: list[SettingsRow], backends: list[str]) -> str:
    """The table for a terminal: aligned columns, `!=` on an undeclared difference, `~` on a declared one."""
    marks, reasons = _marked(rows, "~", "!= DIFFERENT")
    header = ["setting", *backends, ""]
    table = [header] + [[row.key, *_cells(row, backends), mark] for row, mark in zip(rows, marks, strict=True)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * width for width in widths).rstrip())
    if reasons:
        lines += ["", *reasons]
    count = len(undeclared(rows))
    lines.append("")
    lines.append("no undeclared difference" if count == 0 else
                 f"{count} undeclared difference(s): the backends would not train the same way")
    return "\n".join(lines)


def side_by_side(config_path: str | Path, backends: list[str], model: str | None = None) -> list[SettingsRow]:
    """The config's effective settings on each backend, compared. Each backend validates the config first (a
    ConfigError names the backend that cannot run it)."""
    from retrain.core.run import load_config

    return compare_configs({name: load_config(config_path, backend=name, model=model) for name in backends})


def compare_configs(configs: dict[str, Any]) -> list[SettingsRow]:
    """{label: a TrainingConfig validated for its backend} -> the effective settings side by side."""
    from retrain.core.errors import ConfigError, ConfigIssue
    from retrain.core.registry import load_backend

    effective: dict[str, dict[str, Any]] = {}
    for label, config in configs.items():
        reader = getattr(load_backend(config.backend), "effective_settings", None)
        if reader is None:
            raise ConfigError([ConfigIssue("backend", None, f"backend '{config.backend}' does not report its "
                                                            "effective settings (Backend.effective_settings)")])
        effective[label] = reader(config)
    return compare_settings(effective)
