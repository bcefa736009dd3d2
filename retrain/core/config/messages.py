"""Validation errors as messages for people: the field as the user wrote it, the line, what to do."""

from __future__ import annotations

import difflib
import reprlib
from datetime import date
from typing import Any

from pydantic import BaseModel, ValidationError

from retrain.core.config._base import _FieldValueError
from retrain.core.errors import ConfigIssue
from retrain.core.yaml_source import KeyPath

# Flat keys of the conceptual config, and where they live in the structured schema.
ALIASES: dict[str, tuple[str, ...]] = {
    "model_to_train": ("model", "name"),
    "learning_task": ("task",),
    "example_prompts": ("data", "prompts"),
}


def as_written(field: str | None, data: Any) -> str | None:
    """`field` named as the user wrote it: `example_prompts (data.prompts)` when the config used the alias."""
    if not field or not isinstance(data, dict):
        return field
    for alias, target in ALIASES.items():
        canonical = ".".join(target)
        if alias in data and (field == canonical or field.startswith((canonical + ".", canonical + "["))):
            return f"{alias}{field[len(canonical):]} ({field})"
    return field


def loc_of(field: str | None) -> tuple[str | int, ...]:
    if not field:
        return ()
    parts: list[str | int] = []
    for part in field.replace("[", ".[").split("."):
        parts.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(parts)


def _model_at(loc: tuple[str | int, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The pydantic model that holds the field at `loc` (skipping list indices)."""
    model: type[BaseModel] = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        inner = model_in(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field's annotation holds (`X`, `X | None`, `list[X]`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = model_in(arg)
        if found is not None:
            return found
    return None


def line_for(loc: tuple[str | int, ...], data: dict[str, Any], lines: dict[KeyPath, int]) -> int | None:
    candidates: list[KeyPath] = [loc]
    for alias, target in ALIASES.items():
        if alias in data and loc[: len(target)] == target:
            candidates.append((alias, *loc[len(target) :]))
        if alias in data and loc == target[:-1]:
            candidates.append((alias,))
    # A key with dots in it (backend_options.verl.<dotted.override>) reads as several parts of the field.
    candidates += [(*loc[:i], ".".join(map(str, loc[i:]))) for i in range(1, len(loc) - 1)]
    for candidate in candidates:
        if candidate in lines:
            return lines[candidate]
    for candidate in candidates:
        for end in range(len(candidate), -1, -1):
            line = lines.get(candidate[:end])
            if line is not None and (end > 0 or len(candidate) == 0):
                return line
    return None


_EXPECTED = {
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "finite_number": "a finite number",
    "string_too_short": "text that is not empty",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


# Values in messages are shortened: a config can hold long text, or a YAML alias that expands hugely.
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 80
_short.maxlist = _short.maxdict = _short.maxtuple = _short.maxset = 6
_short.maxlevel = 3


def _data_loc(loc: tuple[str | int, ...], data: Any) -> tuple[str | int, ...]:
    """The error's location without the union members pydantic names in it ('list[str]'), keeping keys of
    the data (which may hold '[' too)."""
    kept: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(part, str) and "[" in part:
            continue
        else:
            node = None
        kept.append(part)
    return tuple(kept)


def issues_from_validation(
    exc: ValidationError, data: dict[str, Any], lines: dict[KeyPath, int], root: type[BaseModel]
) -> list[ConfigIssue]:
    """pydantic's errors for the config `root` (TrainingConfig), as issues naming the field and its line."""
    issues: list[ConfigIssue] = []
    for error in exc.errors():
        loc = _data_loc(error["loc"], data)
        kind = error["type"]
        if isinstance(error.get("ctx", {}).get("error"), _FieldValueError):
            loc = (*loc, *error["ctx"]["error"].loc)
        got = "an empty value" if error.get("input") is None else _short.repr(error.get("input"))
        line = None
        if kind == "invalid_key":  # a key that is not text (a number, true, null): name the mapping holding it
            loc = loc[:-1]
            line = lines.get((*loc, str(error.get("input"))))
        elif kind == "missing" and len(loc) > 1 and loc[-2] == "bounds":
            loc = loc[:-1]  # an item missing from [low, high]: name the pair
        field = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[") or None
        if kind == "invalid_key":
            message = (f"the key {error.get('input')!r} is not a name; field names are text "
                       "(a number, true/false or null as a key is probably a mistake)")
        elif loc and loc[-1] == "bounds" and kind in ("missing", "too_long"):
            message = f"got {got}, expected two numbers: [low, high]"
        elif kind == "extra_forbidden":
            model = _model_at(loc, root)
            allowed = list(model.model_fields) if model else []
            if model is root:
                allowed += list(ALIASES)
            suggestion = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
            hint = f"; did you mean '{suggestion[0]}'?" if suggestion else f"; known fields: {', '.join(allowed)}"
            message = f"unknown field '{loc[-1]}'{hint}"
        elif kind == "missing":
            model = _model_at(loc, root)
            description = model.model_fields[str(loc[-1])].description if model else None
            message = f"required field is missing; add `{loc[-1]}:`" + (f" ({description})" if description else "")
        elif kind == "literal_error":
            message = f"got {got}, expected one of {error['ctx']['expected']}"
        elif kind == "string_type" and isinstance(error.get("input"), int | float | date):
            message = f"got {got}, expected text; put it in quotes if you mean the text {str(error.get('input'))!r}"
        elif kind in _EXPECTED:
            message = f"got {got}, expected {_EXPECTED[kind]}"
        elif kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
            message = f"got {got}: {error['msg'].lower()}"
        elif kind == "value_error":
            message = str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
        else:
            message = error["msg"]
        issues.append(ConfigIssue(as_written(field, data), line or line_for(loc, data, lines), message))
    return issues
