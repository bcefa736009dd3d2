"""Answer rewards against a reference answer: exact, numeric and math-verify (real sympy, in worker processes)."""

from __future__ import annotations

import time

import pytest

from retrain.rewards.answers import (
    correct_answer,
    exact_match,
    math_equivalent,
    normalize_text,
    numeric_match,
    parse_number,
)


def test_exact_match_normalises_case_punctuation_and_articles():
    assert normalize_text("  The  Eiffel Tower! ") == "eiffel tower"
    assert exact_match("<answer>the Eiffel tower.</answer>", "Eiffel Tower") == 1.0
    assert exact_match("<answer>Eiffel</answer>", "Eiffel Tower") == 0.0
    assert exact_match("<answer>Paris</answer>", "paris", normalize=False) == 0.0
    with pytest.raises(ValueError, match="data.answer_column"):
        exact_match("x", None)


@pytest.mark.parametrize(("text", "value"), [
    ("1,234", 1234.0), ("-3.5", -3.5), (".5", 0.5), ("3/4", 0.75), ("50%", 0.5), ("$12.", 12.0),
    ("twelve", None), ("1/0", None), ("", None),
])
def test_parse_number(text, value):
    assert parse_number(text) == value


def test_numeric_match_with_tolerance_and_extraction():
    assert numeric_match("The total is 1,234.", 1234, extract="last_number") == 1.0
    assert numeric_match("So the answer is 3526", "3526") == 1.0  # auto: whole text, then its last number
    assert numeric_match(r"\boxed{0.333}", "1/3", rel_tol=0.01) == 1.0
    assert numeric_match(r"\boxed{0.333}", "1/3") == 0.0
    assert numeric_match("no numbers here", 5) == 0.0
    assert numeric_match("<answer>0</answer>", 0) == 1.0
    with pytest.raises(ValueError, match="not a number"):
        numeric_match("5", "five")


def test_math_equivalent_latex_fractions_and_boxed():
    completions = [
        r"So we get \boxed{\frac{1}{2}}.",
        r"<answer>0.5</answer>",
        r"The answer is $\frac{2}{4}$",
        r"\boxed{\frac{1}{3}}",
        "I don't know",
        r"\boxed{\frac{1}{",  # malformed LaTeX: never closed
        r"\boxed{\sqrt{}}",    # malformed LaTeX: empty root
    ]
    scores = math_equivalent(completions, [r"\frac{1}{2}"] * len(completions))
    assert scores == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_math_equivalent_sets_intervals_and_plain_numbers():
    scores = math_equivalent([r"\boxed{\{1, 2\}}", r"\boxed{[0, 1)}", "<answer>3526</answer>", r"\boxed{2\pi}"],
                             [r"\{2, 1\}", "[0, 1)", 3526, r"2\pi"])
    assert scores == [1.0, 1.0, 1.0, 1.0]


def test_math_equivalent_survives_a_pathological_expression():
    started = time.monotonic()
    scores = math_equivalent([r"\boxed{10^{10^{10^{10^{10}}}}}", r"\boxed{2}"], ["1", "2"], timeout_seconds=2)
    assert scores == [0.0, 1.0]
    assert time.monotonic() - started < 30


def test_correct_answer_verifier_gives_reasons():
    outcomes = correct_answer([r"\boxed{4}", r"\boxed{5}"], ["4", "4"])
    assert outcomes[0][0] and not outcomes[1][0]
    assert "!=" in outcomes[1][1]
    numeric = correct_answer(["<answer>4.0</answer>"], ["4"], method="numeric")
    assert numeric[0][0] and "matches" in numeric[0][1]
    with pytest.raises(ValueError, match="unknown method"):
        correct_answer(["x"], ["x"], method="fuzzy")


def test_math_workers_are_processes_stopped_by_pid():
    from retrain.rewards import answers

    math_equivalent([r"\boxed{1}"], ["1"])
    pool = answers._math_pool()
    processes = [worker.process for worker in pool.workers]
    assert processes and all(p.poll() is None for p in processes)
    answers.stop_math_workers()
    assert all(p.poll() is not None for p in processes)
    assert math_equivalent([r"\boxed{2}"], ["2"]) == [1.0]  # a fresh pool on demand
