"""Built-in verifiers and rewards on real inputs (the semantic goal uses the real MiniLM encoder)."""

from __future__ import annotations

from retrain.rewards.semantic import semantic_similarity
from retrain.rewards.text import (
    contains,
    is_actually_a_poem,
    length,
    mentions,
    mentions_a_cat,
    penalize_text_containing,
    regex,
)


def test_is_actually_a_poem_wants_several_short_lines():
    assert is_actually_a_poem("Soft paw\nwarm sun\nnap time")[0]
    passed, reason = is_actually_a_poem("One line only")
    assert not passed and "1 non-empty line" in reason
    prose = "\n".join(["word " * 30] * 3)
    assert not is_actually_a_poem(prose)[0]


def test_mentions_matches_whole_words_case_insensitively():
    assert mentions("A KITTEN naps", ["kitten"])[0]
    assert not mentions("concatenate", ["cat"])[0]
    assert mentions_a_cat("the tabby purrs")[0]
    assert not mentions_a_cat("a dog barks")[0]


def test_penalize_text_containing_by_frequency_count_or_once():
    assert penalize_text_containing("Sassy cats", "s", -100.0) == -100.0 * 4 / 10
    assert penalize_text_containing("ss", "s", -100.0) == -100.0  # all of it: the full penalty
    assert penalize_text_containing("", "s", -100.0) == 0.0
    assert penalize_text_containing("Sassy cats", "s", -100.0, mode="count") == -400.0
    assert penalize_text_containing("Sassy cats", "s", -100.0, mode="count", case_sensitive=True) == -300.0
    assert penalize_text_containing("Sassy cats", "s", -100.0, mode="once") == -100.0
    assert penalize_text_containing("no match here", "z", -1.0) == 0.0


def test_contains_regex_and_length():
    assert contains("Hello Cat", "cat") == 1.0 and contains("Hello Cat", "cat", case_sensitive=True) == 0.0
    assert regex("answer: 42", r"\d+") == 1.0 and regex("answer: 42", r"\d+", full_match=True) == 0.0
    assert length("one two three", min_words=2, max_words=3) == 1.0 and length("one", min_words=2) == 0.0


def test_semantic_similarity_ranks_an_on_goal_poem_above_an_off_goal_text():
    goal = "Poem is happy, creative, and about a cat."
    on_goal, off_goal = semantic_similarity(
        ["A joyful kitten plays in the warm sun, purring with delight", "Quarterly tax filing deadlines for LLCs"],
        target=goal,
    )
    assert -1.0 <= off_goal < on_goal <= 1.0
    assert on_goal - off_goal > 0.2
