"""The verifier and reward of examples/calculator_tools.yaml."""

from __future__ import annotations

import re

from retrain import reward, verifier

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@verifier
def final_number_is_correct(messages: list[dict], answer: float) -> bool:
    """The last number in the model's final turn equals the dataset's answer (tool output does not count)."""
    turns = [m["content"] for m in messages if m["role"] == "assistant"]
    numbers = _NUMBER.findall(turns[-1]) if turns else []
    return bool(numbers) and abs(float(numbers[-1]) - float(answer)) < 1e-6


@reward(bounds=(0.0, 1.0))
def used_the_calculator(tool_calls: list) -> float:
    """1 if the model called the calculator at least once in the episode."""
    return 1.0 if any(call.name == "calculator" for call in tool_calls) else 0.0


@reward(bounds=(0.0, 1.0))
def used_a_tool(tool_calls: list) -> float:
    """1 if the model called any tool in the episode."""
    return 1.0 if tool_calls else 0.0
