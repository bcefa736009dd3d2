"""Tool calls in the model's text, by the Hermes convention that Qwen- and SmolLM-style chat
templates use: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one or more per turn.
Also how tools are offered to a model whose chat template does not render them itself."""

from __future__ import annotations

import json
import re
from typing import Any

from retrain.core.rollout import ToolCall

_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_OPEN = "<tool_call>"


def parse_tool_calls(text: str) -> tuple[list[ToolCall], list[str]]:
    """The well-formed calls, and a message for each malformed one (which the model is shown)."""
    calls: list[ToolCall] = []
    errors: list[str] = []
    for index, match in enumerate(_CALL.finditer(text)):
        body = match.group(1).strip()
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            errors.append(f"tool call {index + 1} is not valid JSON ({exc.msg} at character {exc.pos}): {body[:200]}")
            continue
        except RecursionError:  # nesting deeper than Python's decoder goes: the model's text, not our error
            errors.append(f"tool call {index + 1} nests too deeply to read: {body[:200]}")
            continue
        except ValueError as exc:  # e.g. an integer past Python's digit limit
            errors.append(f"tool call {index + 1} cannot be read ({str(exc)[:120]}): {body[:200]}")
            continue
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(name, str) or not name:
            errors.append(f'tool call {index + 1} needs a "name" string: {body[:200]}')
            continue
        arguments = data.get("arguments", data.get("parameters", {}))
        if isinstance(arguments, str):  # some models send the arguments as a JSON string
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
                pass
        if not isinstance(arguments, dict):
            errors.append(f'tool call {index + 1} to {name}: "arguments" must be an object, got {body[:200]}')
            continue
        calls.append(ToolCall(name=name, arguments=arguments, id=f"call_{index}"))
    if text.count(_OPEN) > len(_CALL.findall(text)):
        errors.append("a <tool_call> was opened but never closed with </tool_call>")
    return calls, errors


def tools_system_prompt(schemas: list[dict[str, Any]]) -> str:
    """The Hermes function-calling instructions, for templates that do not take `tools=`."""
    listed = "\n".join(json.dumps(schema) for schema in schemas)
    return (
        "You may call one or more functions to help with the user's request. The functions are:\n"
        f"<tools>\n{listed}\n</tools>\n"
        "To call a function, write a JSON object with its name and arguments inside <tool_call></tool_call> "
        'tags, for example:\n<tool_call>\n{"name": "function_name", "arguments": {"arg": "value"}}\n</tool_call>\n'
        "The results come back in a tool message. When you have the answer, reply without a tool call."
    )
