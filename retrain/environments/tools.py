"""Tools are plain Python functions (sync or async). Their JSON schema comes from the type hints
and the docstring: the first paragraph is the description, and `name: text` lines under an
`Args:` section describe the parameters.

    def add(a: float, b: float) -> float:
        '''Add two numbers.

        Args:
            a: the first number
            b: the second number
        '''
        return a + b
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import json
import re
import types
import typing
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any, Literal, get_args, get_origin

from retrain.core.registry import import_attribute
from retrain.core.rollout import ToolCall

_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
MAX_RESULT_CHARS = 4000  # what the model sees of one result; longer output is cut, saying so


@dataclass
class Tool:
    """One callable tool: its name, description and JSON-schema parameters, and how to call it."""

    name: str
    description: str
    parameters: dict[str, Any]
    call: Callable[[dict[str, Any]], Awaitable[Any]]

    def schema(self) -> dict[str, Any]:
        """The OpenAI-style function schema that chat templates render."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass
class ToolOutcome:
    """The result of one call as the model will read it, and whether it went wrong."""

    name: str
    content: str
    error: str | None = None  # "unknown_tool", "bad_arguments", "raised", "timeout", "malformed"
    call_id: str | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _json_type(annotation: Any) -> dict[str, Any]:
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    origin = get_origin(annotation)
    if origin is Literal:
        return {"enum": list(get_args(annotation))}
    if origin in (list, tuple, set, frozenset):
        (item, *_) = get_args(annotation) or (Any,)
        return {"type": "array", "items": _json_type(item)}
    if origin is dict or annotation is dict:
        return {"type": "object"}
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        return _json_type(options[0]) if len(options) == 1 else {"anyOf": [_json_type(a) for a in options]}
    return {}  # Any or an unknown type: no constraint


def _docstring_parts(doc: str) -> tuple[str, dict[str, str]]:
    doc = inspect.cleandoc(doc or "")
    description = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    params: dict[str, str] = {}
    section = re.search(r"^(Args|Arguments|Parameters):\s*\n(?P<body>(?:[ \t]+.*\n?|\s*\n)+)", doc, re.MULTILINE)
    if section:
        for match in re.finditer(r"^\s+(\w+)(?:\s*\([^)]*\))?\s*:\s*(.+)$", section.group("body"), re.MULTILINE):
            params[match.group(1)] = match.group(2).strip()
    return description, params


@cache
def _sync_tool_pool() -> ThreadPoolExecutor:
    """Sync tools (HTTP clients, subprocesses, sleeps) wait in threads; asyncio's default pool has
    only cpu + 4 of them, which would serialise a batch of episodes on a small machine."""
    return ThreadPoolExecutor(max_workers=64, thread_name_prefix="retrain-tool")


def tool_from_function(function: Callable[..., Any], name: str | None = None) -> Tool:
    """A Tool from a Python function: schema from its signature, type hints and docstring."""
    signature = inspect.signature(function)
    hints = typing.get_type_hints(function)
    description, param_docs = _docstring_parts(function.__doc__ or "")
    properties: dict[str, Any] = {}
    required = []
    for pname, parameter in signature.parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        prop = _json_type(hints.get(pname, Any))
        if pname in param_docs:
            prop["description"] = param_docs[pname]
        properties[pname] = prop
        if parameter.default is inspect.Parameter.empty:
            required.append(pname)
    tool_name = name or function.__name__
    accepted = set(properties)

    async def call(arguments: dict[str, Any]) -> Any:
        unexpected = set(arguments) - accepted
        missing = [p for p in required if p not in arguments]
        if unexpected or missing:
            raise ToolArgumentError(tool_name, sorted(unexpected), missing, sorted(accepted))
        if inspect.iscoroutinefunction(function):
            return await function(**arguments)
        return await asyncio.get_running_loop().run_in_executor(_sync_tool_pool(), partial(function, **arguments))

    parameters = {"type": "object", "properties": properties, "required": required}
    return Tool(tool_name, description or f"The {tool_name} tool.", parameters, call)


class ToolArgumentError(Exception):
    def __init__(self, tool: str, unexpected: list[str], missing: list[str], accepted: list[str]):
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected)}")
        super().__init__(f"{tool}: {'; '.join(parts)} (it takes: {', '.join(accepted) or 'no arguments'})")


def load_tool(reference: str) -> Tool:
    """A built-in tool name (see `retrain.tools`) or 'package.module:function'; ValueError if not found."""
    from retrain import tools as builtin

    if ":" not in reference:
        names = builtin.BUILTIN_TOOLS
        if reference not in names:
            close = difflib.get_close_matches(reference, list(names), n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(
                f"unknown tool '{reference}'; {hint}built-ins: {', '.join(sorted(names))}; "
                "or give an import path 'package.module:function'"
            )
        return tool_from_function(names[reference])
    target = import_attribute(reference, what="tool")
    if not callable(target):
        raise ValueError(f"'{reference}' is a {type(target).__name__}, not a function")
    return tool_from_function(target)


def _render(value: Any) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = str(value)
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + f"... [cut: {len(text)} characters in all]"
    return text


async def run_tool_call(tools: dict[str, Tool], call: ToolCall, timeout_seconds: float) -> ToolOutcome:
    """Run one call. Every failure becomes a message the model reads (and an error kind for the
    metrics), never an exception: an unknown tool, bad arguments, a raise, a timeout."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    tool = tools.get(call.name)
    if tool is None:
        close = difflib.get_close_matches(call.name, list(tools), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return ToolOutcome(call.name, f"Error: there is no tool named '{call.name}'.{hint} "
                           f"Tools: {', '.join(sorted(tools))}.", "unknown_tool", call.id)
    try:
        value = await asyncio.wait_for(tool.call(call.arguments), timeout=timeout_seconds)
    except ToolArgumentError as exc:
        return ToolOutcome(call.name, f"Error: bad arguments for {exc}.", "bad_arguments", call.id,
                           loop.time() - started)
    except TimeoutError:
        return ToolOutcome(call.name, f"Error: {call.name} did not answer within {timeout_seconds:g} s.", "timeout",
                           call.id, loop.time() - started)
    except Exception as exc:  # the tool's own bug or refusal: the model reads it, the run goes on
        return ToolOutcome(call.name, f"Error: {call.name} raised {type(exc).__name__}: {exc}", "raised", call.id,
                           loop.time() - started)
    return ToolOutcome(call.name, _render(value), None, call.id, loop.time() - started)
