"""Rewards that read dataset columns, so the parity tests show both backends carry the columns."""

from __future__ import annotations


def names_the_answer(completion: str, answer: str) -> float:
    """1.0 when the completion names the row's answer (the config's `data.answer_column`)."""
    return float(str(answer).lower() in completion.lower())


def within_word_limit(completion: str, max_words: int) -> float:
    """1.0 when the completion has at most the row's `max_words` words (a plain dataset column)."""
    return float(len(completion.split()) <= max_words)
