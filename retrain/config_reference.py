"""Generate docs/config.md, the configuration reference, from the pydantic schema and the backends.

    python -m retrain.config_reference            # rewrite docs/config.md
    python -m retrain.config_reference --check    # exit 1 if it is stale (the test suite does the same)

Every field of `TrainingConfig`, section by section: its type, default and description (from the
schema), and which built-in backends honour it: the field probe of `retrain.testing.fields` (the one
the conformance kit runs), or the declared `Capabilities` where a backend accepts some values only.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from retrain.core.backend import Capabilities
from retrain.core.config import ALIASES, TrainingConfig
from retrain.core.config.messages import model_in
from retrain.core.generated_docs import write_or_check
from retrain.core.registry import BUILTIN_BACKENDS, load_backend

OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "config.md"

# Fields a backend may not honour, and how its capabilities say whether it does.
CAPABILITY_OF: dict[str, Callable[[Capabilities], bool | str]] = {
    "model.lora": lambda c: c.lora,
    "algorithm.kl_coef": lambda c: True if c.kl_penalty else "0 only",
    "algorithm.clip_range_high": lambda c: c.asymmetric_clip,
    "algorithm.loss_aggregation": lambda c: ", ".join(sorted(c.loss_aggregations)),
    "algorithm.reward_scaling": lambda c: ", ".join(sorted(c.reward_scalings)),
    "environment": lambda c: c.environments,
    "resources.nodes": lambda c: True if c.multi_node else "1 only",
    "resources.ray_address": lambda c: c.ray_cluster,
    "resources.gpus_per_node": lambda c: True if c.cpu else "1 or more (no CPU runs)",
    "model.loader": lambda c: ", ".join(sorted(c.model_loaders)),
    "rollout.engine": lambda c: ", ".join(sorted(c.rollout_engines | {"auto"})),
    "rollout.vllm_mode": lambda c: ", ".join(sorted(c.vllm_modes)) or False,
    "rollout.server_url": lambda c: "server" in c.vllm_modes,
}


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(repr(a).replace("'", '"') for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin in (list, tuple, dict):
        inner = ", ".join(_type_name(a) for a in args if a is not Ellipsis)
        return f"{origin.__name__}[{inner}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    default = field.default
    if default is PydanticUndefined:
        default = field.default_factory() if field.default_factory else None  # type: ignore[call-arg]
    if isinstance(default, BaseModel):
        return "(section)"
    if default is None:
        return "null"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, str):
        return f'"{default}"'
    return str(default)


def _sections(model: type[BaseModel], prefix: str = "") -> list[tuple[str, type[BaseModel]]]:
    found = [(prefix, model)]
    for name, field in model.model_fields.items():
        sub = model_in(field.annotation)
        if sub is not None:
            is_list = typing.get_origin(field.annotation) is list or any(
                typing.get_origin(a) is list for a in typing.get_args(field.annotation))
            found += _sections(sub, f"{prefix}{name}{'[]' if is_list else ''}.")
    return found


def _backends_cell(path: str, backends: dict[str, Capabilities]) -> str:
    """Which backends honour the field: retrain itself for fields it applies for every backend; otherwise
    the probe's verdict per backend (the same one the conformance kit checks), refined by the capability
    rule where a backend accepts some values only."""
    from retrain.testing.fields import PROBES, probe, retrain_side_reason

    if retrain_side_reason(path) is not None:
        return "all (retrain applies it)"
    rule = CAPABILITY_OF.get(path)
    if rule is None and path not in PROBES:
        return "by field (its section)"
    cells = []
    for name, capabilities in backends.items():
        if rule is not None:  # the values a backend accepts, whatever this machine has
            verdict: bool | str = rule(capabilities)
        else:
            verdicts: dict[str, bool | str] = {"honoured": True, "rejected": False, "ignored": "IGNORED",
                                               "noted": "yes (noted as unused without vLLM)"}
            verdict = verdicts[probe(name, path)]
        cells.append(f"{name}: {'yes' if verdict is True else 'no' if verdict is False else verdict}")
    return "; ".join(cells)


def render() -> str:
    backends = {name: load_backend(name).capabilities for name in BUILTIN_BACKENDS}
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m retrain.config_reference` from the schema in retrain/core/config.py and",
        "     the backends' capabilities; do not edit by hand. tests/unit/test_config_reference.py fails when",
        "     this file is stale. -->",
        "",
        "Every field of a retrain config, by section. A field that a backend cannot honour is an error when",
        "the config is validated (`retrain validate`), never silently ignored; the *backends* column says",
        "which built-in backends honour it, as found by changing the field and reading each translation",
        "(`retrain.testing.fields`, also run by the conformance kit), or `all (retrain applies it)` for fields",
        "retrain applies itself, the same way for every backend. Unknown fields are errors too, with",
        "a did-you-mean. Load a config in Python with `TrainingConfig.from_yaml(path)` from",
        "`retrain.config_models`. Limits that depend on the combination (verl on CPU: `kl_coef > 0` needs",
        "`model.lora`, float32 only; completions per step divisible by the GPUs) are checked at validation too",
        "and listed in [backends.md](backends.md).",
        "",
        "Shorthands accepted at the top level: "
        + ", ".join(f"`{alias}` = `{'.'.join(target)}`" for alias, target in ALIASES.items())
        + "; `model: <name>` = `model.name`.",
        "",
    ]
    for prefix, model in _sections(TrainingConfig):
        title = prefix.rstrip(".") or "top level"
        lines += [f"## `{title}`" if prefix else "## Top level", ""]
        doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        if doc:
            lines += [doc, ""]
        lines += ["| field | type | default | description | backends |", "| --- | --- | --- | --- | --- |"]
        for name, field in model.model_fields.items():
            path = f"{prefix}{name}".replace("[]", "")
            description = (field.description or "").replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {description} | "
                         f"{_backends_cell(path, backends)} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    return write_or_check(OUTPUT, render(), "python -m retrain.config_reference", argv)


if __name__ == "__main__":
    raise SystemExit(main())
