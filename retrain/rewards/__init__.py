"""Built-in verifiers and rewards, registered by name for YAML (`rule: mentions`) and Python.

One module per family: `text` (words, patterns, length, repetition), `format` (JSON, JSON schema,
tags and answer extraction), `answers` (exact, numeric, mathematical equivalence against the
dataset's answer), `code` (tests run in a sandbox), `semantic` (similarity, sentiment), `judge`
(an LLM through any OpenAI-compatible endpoint) and `tasks` (a task's own checker: reasoning-gym).
`docs/rewards.md` is generated from their docstrings (`python -m retrain.rewards.docs`).

Importing this package is cheap: encoders, sympy and HTTP clients load on first use.
"""

from retrain.rewards import answers, code, format, judge, semantic, tasks, text

__all__ = ["answers", "code", "format", "judge", "semantic", "tasks", "text"]
