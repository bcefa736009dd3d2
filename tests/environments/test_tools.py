"""Tools: schemas from Python functions, Hermes tool-call parsing, and every way a call can go
wrong becoming a message the model reads (never an exception)."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest

from retrain.core.rollout import Message, ToolCall
from retrain.environments import ToolEnvironment
from retrain.environments.parsing import parse_tool_calls
from retrain.environments.tools import load_tool, run_tool_call, tool_from_function
from retrain.tools import calculator


def lookup(city: str, units: Literal["metric", "imperial"] = "metric", days: list[int] | None = None) -> str:
    """Look up the weather.

    Args:
        city: the city's name
        units: unit system
    """
    return f"{city}: sunny ({units}, {days})"


async def slow_tool(seconds: float) -> str:
    """Sleep for a while."""
    await asyncio.sleep(seconds)
    return "woke"


def broken(x: int) -> int:
    """Always fails."""
    raise RuntimeError("disk on fire")


def test_schema_comes_from_type_hints_and_docstring():
    schema = tool_from_function(lookup).schema()["function"]
    assert schema["name"] == "lookup" and schema["description"] == "Look up the weather."
    params = schema["parameters"]
    assert params["required"] == ["city"]
    assert params["properties"]["city"] == {"type": "string", "description": "the city's name"}
    assert params["properties"]["units"] == {"enum": ["metric", "imperial"], "description": "unit system"}
    assert params["properties"]["days"] == {"type": "array", "items": {"type": "integer"}}


def test_hermes_calls_are_parsed_and_malformed_ones_explained():
    text = ('<tool_call>{"name": "calculator", "arguments": {"expression": "2+2"}}</tool_call> and '
            '<tool_call>{"name": "lookup", "arguments": "{\\"city\\": \\"Oslo\\"}"}</tool_call>'
            '<tool_call>{"name": "x", "arguments": {oops}}</tool_call><tool_call>{"arguments": {}}</tool_call>'
            "<tool_call>{")
    calls, errors = parse_tool_calls(text)
    assert [(c.name, c.arguments) for c in calls] == [
        ("calculator", {"expression": "2+2"}), ("lookup", {"city": "Oslo"})
    ]
    assert len(errors) == 3
    assert "not valid JSON" in errors[0] and '"name"' in errors[1] and "never closed" in errors[2]


def test_a_call_nested_past_the_decoders_depth_is_malformed_not_a_crash():
    """A model can write 1000 `[` in a few hundred tokens; Python's JSON decoder raises RecursionError on it,
    which used to escape the parser and stop the run."""
    deep = "[" * 5000
    calls, errors = parse_tool_calls(f"<tool_call>{deep}</tool_call>"
                                     f'<tool_call>{{"name": "f", "arguments": "{deep}"}}</tool_call>')
    assert errors[0].startswith("tool call 1 nests too deeply to read")
    huge, _ = parse_tool_calls('<tool_call>{"name": "f", "arguments": {"x": 1' + "0" * 5000 + "}}</tool_call>")
    assert not huge and "cannot be read" in _[0]
    assert 'tool call 2 to f: "arguments" must be an object' in errors[1] and not calls


def _run(tools, call, timeout=1.0):
    return asyncio.run(run_tool_call({t.name: t for t in tools}, call, timeout))


def test_every_failure_is_a_message_with_a_kind():
    tools = [tool_from_function(lookup), tool_from_function(slow_tool), tool_from_function(broken)]
    unknown = _run(tools, ToolCall("lokup", {"city": "Oslo"}))
    assert unknown.error == "unknown_tool" and "Did you mean 'lookup'" in unknown.content
    bad = _run(tools, ToolCall("lookup", {"town": "Oslo"}))
    assert bad.error == "bad_arguments" and "missing city" in bad.content and "unexpected town" in bad.content
    raised = _run(tools, ToolCall("broken", {"x": 1}))
    assert raised.error == "raised" and "RuntimeError: disk on fire" in raised.content
    timeout = _run(tools, ToolCall("slow_tool", {"seconds": 5}), timeout=0.2)
    assert timeout.error == "timeout" and "0.2 s" in timeout.content and timeout.seconds < 2
    ok = _run(tools, ToolCall("lookup", {"city": "Oslo"}))
    assert ok.error is None and ok.content == "Oslo: sunny (metric, None)"


def test_calculator_evaluates_arithmetic_and_nothing_else():
    assert calculator("(3 + 4) * 2") == "14" and calculator("sqrt(16) / 8") == "0.5"
    for hostile in ("__import__('os').system('id')", "open('/etc/passwd')", "2 ** 10000", "(1).__class__"):
        with pytest.raises((ValueError, SyntaxError)):
            calculator(hostile)
    for hostile in ("(((9**100)**100)**100)**10", "(10**99)**100", "round(7, -10**8)", "exp(1000)",
                    "*".join(["9**100"] * 13), "min(2**100, 2**99)**100"):
        with pytest.raises(ValueError, match="too large|at most"):
            calculator(hostile)
    assert calculator("-(2**100)**40") == str(-(2**100) ** 40)  # 4000 bits: within the bound
    assert load_tool("calculator").name == "calculator"
    with pytest.raises(ValueError, match="did you mean 'calculator'"):
        load_tool("calculater")


def test_a_hostile_calculator_call_ends_within_the_tool_timeout():
    # Tool timeouts run in a thread pool that cannot stop a computation holding the interpreter lock:
    # the bound on the calculator's integers is what keeps this call short, not the timeout.
    environment = ToolEnvironment([load_tool("calculator")], tool_timeout_seconds=1)
    call = '<tool_call>{"name": "calculator", "arguments": {"expression": "(((9**100)**100)**100)**10"}}</tool_call>'

    async def episode():
        started = asyncio.get_running_loop().time()
        result = await environment.step(Message("assistant", call))
        return result, asyncio.get_running_loop().time() - started

    result, seconds = asyncio.run(episode())
    assert "result too large" in result.observation[0].content and not result.done
    assert seconds < 1.0


def test_tool_environment_runs_calls_concurrently_and_ends_on_an_answer():
    environment = ToolEnvironment([tool_from_function(slow_tool)], tool_timeout_seconds=2)
    call = '<tool_call>{"name": "slow_tool", "arguments": {"seconds": 0.3}}</tool_call>'
    action = Message("assistant", call * 3)

    async def episode():
        started = asyncio.get_running_loop().time()
        result = await environment.step(action)
        return result, asyncio.get_running_loop().time() - started, await environment.step(Message("assistant", "42"))

    result, seconds, answered = asyncio.run(episode())
    assert [m.content for m in result.observation] == ["woke"] * 3 and not result.done
    assert seconds < 0.8  # three 0.3 s calls at once
    assert len(action.tool_calls) == 3
    assert answered.done
