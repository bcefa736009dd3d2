"""Similarity (real MiniLM encoder) and sentiment (real VADER lexicon)."""

from __future__ import annotations

import pytest

from retrain.rewards.semantic import semantic_similarity, sentiment


def test_similarity_to_each_rows_answer():
    completions = ["A small cat sleeps in the sun.", "Stock markets fell sharply today."]
    answers = ["A kitten naps in sunlight.", "A kitten naps in sunlight."]
    to_answer = semantic_similarity(completions, answer=answers)
    assert to_answer[0] > 0.5 > to_answer[1]
    to_target = semantic_similarity(completions, target="A kitten naps in sunlight.")
    assert to_target == pytest.approx(to_answer, abs=1e-5)
    with pytest.raises(ValueError, match="answer_column"):
        semantic_similarity(completions)


def test_sentiment_positive_negative_and_flipped():
    happy, sad = "What a happy, joyful little cat!", "The cat died, sad and alone."
    assert sentiment(happy) > 0.5
    assert sentiment(sad) < -0.5
    assert sentiment(sad, target="negative") > 0.5
    assert sentiment("") == 0.0
    with pytest.raises(ValueError, match="positive"):
        sentiment(happy, target="happy")
