"""Text and format built-ins on real inputs, adversarial ones included."""

from __future__ import annotations

import json

import pytest

from retrain.rewards.format import (
    extract_answer,
    extract_boxed,
    extract_tag,
    has_tags,
    json_schema,
    json_valid,
    parse_json,
    tag_format,
)
from retrain.rewards.text import contains, length, length_penalty, not_contains, regex, repetition_penalty


def test_contains_words_any_all_case_and_whole_words():
    assert contains("The Sun rose", "sun") == 1.0
    assert contains("The Sun rose", "sun", case_sensitive=True) == 0.0
    assert contains("sun and moon", ["sun", "stars"]) == 1.0
    assert contains("sun and moon", ["sun", "stars"], match="all") == 0.0
    assert contains("sunny", "sun", whole_word=True) == 0.0
    assert contains("sunny", "sun") == 1.0
    with pytest.raises(ValueError, match="'any' or 'all'"):
        contains("x", "x", match="some")


def test_not_contains_is_the_complement():
    assert not_contains("As an AI, I cannot", ["As an AI"]) == 0.0
    assert not_contains("Here is your poem", ["As an AI", "I cannot"]) == 1.0
    assert not_contains("concatenate", "cat", whole_word=True) == 1.0


def test_regex_multiline_and_full_match():
    assert regex("Thinking...\nAnswer: 42", r"^Answer: \d+$") == 1.0
    assert regex("Answer: 42 or so", r"Answer: \d+", full_match=True) == 0.0


def test_length_hard_and_soft_bounds():
    ten = " ".join(["word"] * 10)
    assert length(ten, min_words=5, max_words=10) == 1.0
    assert length(ten, max_words=9) == 0.0
    assert length("a\n\nb\nc", min_words=3, unit="lines") == 1.0
    assert length_penalty(ten, max_words=10) == 0.0
    assert length_penalty(ten, max_words=5, scale=10) == pytest.approx(-0.5)
    assert length_penalty(" ".join(["w"] * 1000), max_words=5, scale=10) == -1.0  # clipped
    assert length_penalty("short", min_words=11, scale=10) == -1.0
    assert length_penalty("", min_words=5, scale=10) == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="unit"):
        length("x", unit="tokens")


def test_repetition_penalty_counts_repeated_ngrams():
    assert repetition_penalty("the cat sat on the mat today") == 0.0
    looping = "I am here. " * 20
    assert repetition_penalty(looping) < -0.8
    assert repetition_penalty("two words") == 0.0  # shorter than one 3-gram
    assert repetition_penalty(looping, max_penalty=-0.5) >= -0.5


def test_json_valid_and_its_reasons():
    assert json_valid('{"a": 1}')[0]
    assert json_valid('Here:\n```json\n[1, 2]\n```\nDone.')[0]
    for broken in ['{"a": 1', "{'a': 1}", "", "NaN-ish {", '{"a": 1}}', "```json\n{oops}\n```"]:
        passed, reason = json_valid(broken)
        assert not passed and ("not valid JSON" in reason or "empty" in reason), (broken, reason)
    assert "line 1 column" in json_valid('{"a": 1')[1]
    assert json_valid("[" * 5000) == (False, "not readable JSON: nested deeper than the decoder goes")
    assert not json_valid("1" * 5000)[0] and "not readable JSON" in json_valid("1" * 5000)[1]


SCHEMA = {"type": "object", "required": ["name", "age"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
                         "tags": {"type": "array", "items": {"type": "string"}}}}


def test_json_schema_conformance_names_the_violation(tmp_path):
    assert json_schema('{"name": "Tom", "age": 3}', SCHEMA)[0]
    passed, reason = json_schema('{"name": "Tom", "age": -1}', SCHEMA)
    assert not passed and reason.startswith("$.age:") and "minimum" in reason
    passed, reason = json_schema('{"name": "Tom", "age": 1, "tags": ["a", 2]}', SCHEMA)
    assert not passed and reason.startswith("$.tags[1]:")
    assert not json_schema('{"name": "Tom"', SCHEMA)[0]  # invalid JSON first
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMA))
    assert json_schema('{"name": "Tom", "age": 3}', str(path))[0]
    with pytest.raises(ValueError, match="does not exist"):
        json_schema("{}", str(tmp_path / "missing.json"))


def test_json_schema_rejects_a_broken_schema():
    import jsonschema

    with pytest.raises(jsonschema.SchemaError):
        json_schema("{}", {"type": "no-such-type"})


def test_tags_strict_order_once_and_partial_credit():
    good = "<think>2+2 is 4</think>\n<answer>4</answer>"
    assert has_tags(good)[0]
    assert not has_tags("Sure! " + good)[0]
    assert has_tags("Sure! " + good, strict=False)[0]
    assert not has_tags("<answer>4</answer><think>x</think>")[0]
    passed, reason = has_tags("<think>a</think><think>b</think><answer>4</answer>")
    assert not passed and "exactly once" in reason
    assert not has_tags("<think>a<answer>4</answer></think>")[0]  # nested, not in order
    assert tag_format(good) == 1.0
    assert tag_format("<think>only thinking</think>") == 0.5
    assert tag_format("</think>backwards<think>") == 0.0
    assert tag_format("<a>1</a><b>2</b><c>3</c>", tags=["a", "b", "c"]) == 1.0


def test_answer_extraction():
    assert extract_tag("<answer>1</answer> then <answer> 2 </answer>", "answer") == "2"
    assert extract_tag("<answer>unclosed", "answer") is None
    assert extract_boxed(r"so \boxed{\frac{1}{2}} and") == r"\frac{1}{2}"
    assert extract_boxed(r"\boxed{1} then \boxed{x^{2}}") == "x^{2}"
    assert extract_boxed(r"\boxed{never closed") is None
    assert extract_answer("It is 12, no, 1,234.") == "It is 12, no, 1,234."
    assert extract_answer("It is 12, no, 1,234.", "last_number") == "1,234"
    assert extract_answer(r"<answer>7</answer> \boxed{8}") == "7"
    assert extract_answer(r"think \boxed{8}") == "8"
    with pytest.raises(ValueError, match="unknown extract"):
        extract_answer("x", "first")  # type: ignore[arg-type]


def test_parse_json_prefers_the_last_fenced_block():
    value, problem = parse_json('```json\n{"a": 1}\n```\nand\n```json\n{"b": 2}\n```')
    assert problem is None and value == {"b": 2}


def test_matches_regex_verifier_names_what_is_missing():
    from retrain.rewards.text import matches_regex

    pattern = r"(?i)answer\s*(is)?\s*:?\s*\$?-?\d"
    assert matches_regex("so... The answer is: 12", pattern)[0]
    assert matches_regex("ANSWER 3", pattern)[0]
    passed, reason = matches_regex("I think twelve", pattern, description="a final answer")
    assert not passed and reason == "no a final answer"
