"""Format: JSON validity, JSON-schema conformance, tag structure, and answer extraction.

`extract_answer` is the one place a final answer is pulled out of a completion (from an
`<answer>` tag, a `\\boxed{}`, or the last number); the answer rewards in `retrain.rewards.answers`
use it, and so can yours.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, Literal

from retrain.core.registry import reward, verifier

Extract = Literal["auto", "tag", "boxed", "last_number", "none"]

_FENCE = re.compile(r"```(?:json)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def extract_tag(text: str, tag: str) -> str | None:
    """The content of the last complete `<tag>...</tag>` in `text`, stripped; None if there is none."""
    matches = re.findall(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", text, re.DOTALL)
    return matches[-1].strip() if matches else None


def extract_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`), braces balanced; None if there is none
    or it is never closed."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    index = text.index("{", start) + 1
    depth = 1
    for position in range(index, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[index:position].strip()
    return None


def extract_last_number(text: str) -> str | None:
    """The last number in `text` (integers, decimals, thousands separators, simple fractions)."""
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def extract_answer(completion: str, extract: Extract = "auto", tag: str = "answer") -> str | None:
    """The final answer in a completion; None when the chosen method finds none.

    'tag': the last `<tag>...</tag>`; 'boxed': the last `\\boxed{}`; 'last_number': the last number;
    'none': the whole completion, stripped; 'auto': the tag, else the box, else the whole completion.
    """
    if extract == "tag":
        return extract_tag(completion, tag)
    if extract == "boxed":
        return extract_boxed(completion)
    if extract == "last_number":
        return extract_last_number(completion)
    if extract == "none":
        return completion.strip()
    if extract == "auto":
        found = extract_tag(completion, tag)
        if found is None:
            found = extract_boxed(completion)
        return completion.strip() if found is None else found
    raise ValueError(f"unknown extract {extract!r}; use 'auto', 'tag', 'boxed', 'last_number' or 'none'")


# -- JSON ------------------------------------------------------------------------------------------


def parse_json(completion: str) -> tuple[Any, str | None]:
    """(value, None) for the completion's JSON, or (None, why not). A ```json fenced block is used when
    the completion has one; otherwise the whole completion must be JSON."""
    fenced = _FENCE.findall(completion)
    text = fenced[-1] if fenced else completion
    if not text.strip():
        return None, "empty: no JSON"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        return None, "not readable JSON: nested deeper than the decoder goes"
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        return None, f"not readable JSON: {str(exc)[:120]}"


@verifier
def json_valid(completion: str) -> tuple[bool, str]:
    """Passes when the completion is valid JSON (or holds it in a ```json fenced block).

    Example:
        verifiers:
          - rule: json_valid
    """
    value, problem = parse_json(completion)
    if problem:
        return False, problem
    return True, f"valid JSON ({type(value).__name__})"


@functools.lru_cache(maxsize=32)
def _validator(schema_json: str) -> Any:
    try:
        import jsonschema
    except ImportError as exc:
        raise ImportError("json_schema needs jsonschema: pip install 'retrain[rewards]'") from exc
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)  # a broken schema is the config's fault: say so once, clearly
    return cls(schema)


def _load_schema(schema: dict[str, Any] | str) -> str:
    if isinstance(schema, dict):
        return json.dumps(schema, sort_keys=True)
    path = Path(schema).expanduser()
    if not path.exists():
        raise ValueError(f"schema file '{path}' does not exist; give the schema inline or a path to a .json file")
    return json.dumps(json.loads(path.read_text(encoding="utf-8")), sort_keys=True)


@verifier
def json_schema(completion: str, schema: dict[str, Any] | str) -> tuple[bool, str]:
    """Passes when the completion's JSON conforms to `schema` (inline, or a path to a JSON-schema file).

    The reason names the first violation and where it is (`$.items[2].name: 'x' is not of type
    'integer'`). Uses the `jsonschema` package, any draft the schema declares.

    Example:
        verifiers:
          - rule: json_schema
            params: {schema: {type: object, required: [name, age], properties: {age: {type: integer}}}}
    """
    value, problem = parse_json(completion)
    if problem:
        return False, problem
    errors = sorted(_validator(_load_schema(schema)).iter_errors(value), key=lambda e: list(e.absolute_path))
    if not errors:
        return True, "conforms to the schema"
    first = errors[0]
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.absolute_path)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return False, f"{where}: {first.message[:200]}{more}"


# -- tags ------------------------------------------------------------------------------------------


def _tag_pattern(tags: list[str]) -> re.Pattern[str]:
    body = r"\s*".join(rf"<{re.escape(t)}>(?:(?!<{re.escape(t)}>).)*?</{re.escape(t)}>" for t in tags)
    return re.compile(rf"\s*{body}\s*", re.DOTALL)


@verifier
def has_tags(completion: str, tags: list[str] | None = None, strict: bool = True) -> tuple[bool, str]:
    """Passes when the completion is the `tags` in order, each once (`<think>...</think><answer>...</answer>`).

    `strict` (default): nothing but whitespace outside the tags; otherwise the tags may sit anywhere.

    Example:
        verifiers:
          - rule: has_tags
            params: {tags: [think, answer]}
    """
    tags = tags or ["think", "answer"]
    for tag in tags:
        opened, closed = completion.count(f"<{tag}>"), completion.count(f"</{tag}>")
        if opened != 1 or closed != 1:
            return False, f"<{tag}> appears {opened} time(s) and </{tag}> {closed}; each must appear exactly once"
    pattern = _tag_pattern(tags)
    matched = pattern.fullmatch(completion) if strict else pattern.search(completion)
    if matched is None:
        where = "with nothing but whitespace around them" if strict else ""
        return False, f"tags not in the order {' then '.join(tags)} {where}".strip()
    return True, f"{', '.join(tags)} in order"


@reward(bounds=(0.0, 1.0))
def tag_format(completion: str, tags: list[str] | None = None) -> float:
    """Partial credit for a tag format: 1/len(tags) for each tag opened and closed exactly once, in order.

    A softer signal than `has_tags` early in training, when no completion has the whole format yet.

    Example:
        rewards:
          functions:
            - function: tag_format
              weight: 0.2
              params: {tags: [think, answer]}
    """
    tags = tags or ["think", "answer"]
    score, position = 0.0, 0
    for tag in tags:
        opened, closed = completion.find(f"<{tag}>"), completion.find(f"</{tag}>")
        once = completion.count(f"<{tag}>") == 1 and completion.count(f"</{tag}>") == 1
        if once and position <= opened < closed:
            score += 1 / len(tags)
            position = closed
    return score
