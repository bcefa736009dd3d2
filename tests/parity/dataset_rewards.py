"""Rewards that read dataset columns, so the parity tests show both backends carry the columns."""

from __future__ import annotations


def names_the_answer(completion: str, answer: str) -> float:
    """1.0 when the completion names the row's answer (the config's `data.answer_column`)."""
    return float(str(answer).lower() in completion.lower())


def within_word_limit(completion: str, max_words: int) -> float:
    """1.0 when the completion has at most the row's `max_words` words (a plain dataset column)."""
    return float(len(completion.split()) <= max_words)


def prompt_messages_seen(rollout) -> float:  # type: ignore[no-untyped-def]
    """How many prompt messages the Scorer got (the system prompt and the user turn: 2)."""
    return float(len(rollout.prompt_messages))


def completion_tokens_seen(rollout) -> float:  # type: ignore[no-untyped-def]
    """How many completion token ids the Scorer got (one per token the model generated)."""
    return float(len(rollout.completion_token_ids))
