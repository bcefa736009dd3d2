"""Built-in tools, usable by name in `environment.tools`."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

# The largest integer a calculation may produce or pass through: every operation below is then a few
# microseconds of big-integer work. Without a bound, `(((9**100)**100)**100)**10` (26 characters) is
# seconds of work holding the interpreter lock inside the trainer, which no tool timeout can stop.
MAX_INT_BITS = 4096
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max, "log": math.log, "exp": math.exp,
}
_TOO_LARGE = f"result too large (integers up to {MAX_INT_BITS} bits)"


def _bits(value: float) -> int:
    return abs(value).bit_length() if isinstance(value, int) else 0


def _check_cost(op: ast.operator, left: float, right: float) -> None:
    """Refuse, before computing it, an integer operation whose result would exceed MAX_INT_BITS."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return  # floats overflow to inf or raise OverflowError at once
    if isinstance(op, ast.Pow):
        if abs(right) > 100:
            raise ValueError("exponent too large (at most 100)")
        if right > 0 and abs(left) > 1 and right * _bits(left) > MAX_INT_BITS:
            raise ValueError(_TOO_LARGE)
    elif isinstance(op, ast.Mult) and _bits(left) + _bits(right) > MAX_INT_BITS:
        raise ValueError(_TOO_LARGE)


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        value = node.value
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        _check_cost(node.op, left, right)
        value = _BINARY[type(node.op)](left, right)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        value = _UNARY[type(node.op)](_evaluate(node.operand))
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        if node.keywords:
            raise ValueError(f"unsupported expression: {ast.unparse(node)} (no keyword arguments)")
        args = [_evaluate(arg) for arg in node.args]
        if node.func.id == "round" and len(args) > 1 and abs(args[1]) > 100:
            raise ValueError("round to at most 100 digits")
        value = _FUNCTIONS[node.func.id](*args)
    else:
        raise ValueError(f"unsupported expression: {ast.unparse(node)}")
    if _bits(value) > MAX_INT_BITS:
        raise ValueError(_TOO_LARGE)
    return value


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression, such as "(3 + 4) * 2" or "sqrt(16) / 2".

    Args:
        expression: numbers with + - * / // % ** and parentheses; sqrt, abs, round, min, max, log, exp
    """
    if len(expression) > 200:
        raise ValueError("expression too long (at most 200 characters)")
    try:
        value = _evaluate(ast.parse(expression, mode="eval"))
    except OverflowError:
        raise ValueError("result too large") from None
    except RecursionError:
        raise ValueError("expression nested too deeply") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


BUILTIN_TOOLS: dict[str, Callable[..., Any]] = {"calculator": calculator}
