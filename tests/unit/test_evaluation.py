"""The evaluator's arithmetic and rules: pass@k, what counts as correct, the `evaluation` section's checks."""

from __future__ import annotations

import math

import pytest

from retrain.core.config import TrainingConfig
from retrain.core.errors import ConfigError
from retrain.core.rollout import RewardBreakdown, VerifierOutcome
from retrain.core.scoring import Scorer
from retrain.evaluation import correctness, pass_at_k


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (5, 2, 1, 2 / 5),                                  # pass@1 is the share correct
    (5, 2, 2, 1 - math.comb(3, 2) / math.comb(5, 2)),  # 1 - 3/10 = 0.7
    (5, 2, 3, 1 - 1 / 10),                             # C(3,3)/C(5,3) = 1/10
    (5, 2, 4, 1.0),                                    # fewer than 4 wrong ones: some pick is correct
    (10, 0, 5, 0.0),
    (10, 10, 1, 1.0),
    (16, 3, 8, 1 - math.comb(13, 8) / math.comb(16, 8)),
])
def test_pass_at_k_is_the_unbiased_estimator(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
    assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def config(evaluation: dict, **sections) -> TrainingConfig:
    return TrainingConfig.from_data({"model": "retrain:tiny", "example_prompts": ["x"], "evaluation": evaluation,
                                     **sections})


@pytest.mark.parametrize(("evaluation", "sections", "field", "words"), [
    ({"prompts": ["a"], "n": 4}, {}, "evaluation.n", "greedy"),
    ({"prompts": ["a"], "n": 2, "temperature": 1.0, "pass_at": [1, 4]}, {}, "evaluation.pass_at", "pass@4"),
    ({"prompts": ["a"], "every_steps": 3}, {"training": {"save_every": 2}}, "evaluation.every_steps",
     "multiple"),
    ({"prompts": ["a"], "correct": {"verifiers": ["nope"]}}, {}, "evaluation.correct.verifiers", "'nope'"),
    ({"prompts": ["a"], "correct": {"rewards": {"nope": 1.0}}}, {}, "evaluation.correct.rewards", "'nope'"),
    ({}, {}, "evaluation", "held-out"),
    ({"prompts": ["a"]}, {"environment": {"tools": ["retrain.tools:calculator"]}}, "evaluation", "environment"),
])
def test_evaluation_errors_name_the_field(evaluation, sections, field, words):
    with pytest.raises(ConfigError) as info:
        config(evaluation, **sections)
    (issue,) = info.value.issues
    assert issue.field == field and words in issue.message, info.value.render()


def breakdown(total: float, verifiers: dict[str, bool], rewards: dict[str, float | None]) -> RewardBreakdown:
    return RewardBreakdown("r", total, {name: VerifierOutcome(ok) for name, ok in verifiers.items()}, rewards)


ANSWER_CONFIG = {
    "verifiers": [{"rule": "mentions", "params": {"words": ["so"]}}],
    "rewards": {"functions": [{"function": "exact_match"}, {"function": "length", "params": {"max_words": 9}}]},
}


def test_by_default_correct_means_every_verifier_passes_and_answer_rewards_are_at_their_top():
    cfg = config({"prompts": ["a"]}, **ANSWER_CONFIG)
    rule, text = correctness(cfg, Scorer.from_config(cfg))
    assert text == "correct when verifier mentions passes and exact_match >= 1"  # length reads no answer
    assert rule is not None
    assert rule(breakdown(2.0, {"mentions": True}, {"exact_match": 1.0, "length": 0.0}))
    assert not rule(breakdown(2.0, {"mentions": False}, {"exact_match": 1.0, "length": 1.0}))
    assert not rule(breakdown(2.0, {"mentions": True}, {"exact_match": 0.0, "length": 1.0}))
    assert not rule(breakdown(2.0, {"mentions": True}, {"exact_match": None, "length": 1.0}))  # abstained


def test_the_user_sets_thresholds_and_which_verifiers_count():
    cfg = config({"prompts": ["a"], "correct": {"verifiers": "none", "rewards": {"length": 0.5},
                                                "min_total": 1.5}}, **ANSWER_CONFIG)
    rule, text = correctness(cfg, Scorer.from_config(cfg))
    assert text == "correct when length >= 0.5 and total >= 1.5"
    assert rule is not None
    assert rule(breakdown(1.5, {"mentions": False}, {"exact_match": 0.0, "length": 0.5}))
    assert not rule(breakdown(1.4, {"mentions": True}, {"exact_match": 1.0, "length": 1.0}))


def test_without_anything_to_judge_by_there_is_no_pass_at_k():
    cfg = config({"prompts": ["a"]}, rewards={"functions": [{"function": "length", "params": {"max_words": 9}}]})
    rule, text = correctness(cfg, Scorer.from_config(cfg))
    assert rule is None and "evaluation.correct" in text


def test_verl_counts_the_groups_whose_completions_all_scored_the_same():
    from retrain.backends.verl.launch import zero_spread_share

    def rows(group: str, totals: list[float]) -> list[RewardBreakdown]:
        return [RewardBreakdown(group, total) for total in totals]

    flat_and_spread = rows("row0", [1.0, 1.0, 1.0]) + rows("row1", [0.0, 1.0, 1.0]) + rows("row2", [0.5] * 3)
    assert zero_spread_share(flat_and_spread) == pytest.approx(2 / 3)
    assert zero_spread_share(rows("row0", [0.0, 1e-9])) == 1.0  # within 1e-8, as TRL's torch.isclose(std, 0)
    assert zero_spread_share([]) is None
