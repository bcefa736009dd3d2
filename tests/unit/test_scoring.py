"""The Scorer: verifiers gate, rewards weigh, constraints always apply, failures are named."""

from __future__ import annotations

import asyncio
import time

import pytest

from retrain import reward, verifier
from retrain.config_models import TrainingConfig
from retrain.core.errors import RewardError
from retrain.core.rollout import Message, Rollout
from retrain.core.scoring import Scorer


def rollout(completion: str, prompt: str = "Write a poem", rollout_id: str = "", **metadata) -> Rollout:
    return Rollout([Message("user", prompt)], [Message("assistant", completion)], metadata=metadata,
                   rollout_id=rollout_id)


POEM = "A cat upon the mat\nit purr and nap\nwhat a happy cat"
PROSE = "This is one long line of prose about a cat that goes on and on without any line break at all really."


def scorer_for(**sections) -> Scorer:
    return Scorer.from_config(TrainingConfig.from_data({"model_to_train": "retrain:tiny", "example_prompts": ["p"],
                                                         **sections}))


@verifier(name="test_has_answer_tag")
def _has_answer(completion: str) -> bool:
    return "<answer>" in completion


@reward(name="test_length_ratio")
def _length_ratio(completion: str, answer: str) -> float:
    return len(completion) / len(answer)


@reward(name="test_slow_async")
async def _slow_async(completion: str) -> float:
    await asyncio.sleep(0.3)
    return 1.0


@reward(name="test_raises")
def _raises(completion: str) -> float:
    raise ValueError("boom")


@reward(name="test_hangs")
async def _hangs(completion: str) -> float:
    await asyncio.sleep(30)
    return 0.0


@reward(name="test_abstains")
def _abstains(completion: str) -> float | None:
    return None


def test_failed_verifier_replaces_rewards_with_its_penalty_and_records_the_reason():
    scorer = scorer_for(verifiers=[{"rule": "is_actually_a_poem", "penalty": -5}],
                        rewards={"functions": [{"function": "contains", "params": {"text": "cat"}, "weight": 3}]})
    poem, prose = scorer.score_sync([rollout(POEM), rollout(PROSE)])
    assert poem.verifiers["is_actually_a_poem"].passed and poem.total == 3.0
    assert not prose.verifiers["is_actually_a_poem"].passed
    assert "line" in prose.verifiers["is_actually_a_poem"].reason
    assert prose.rewards["contains"] == 1.0  # still computed and reported
    assert prose.total == -5.0


def test_constraints_apply_whether_or_not_the_gate_passes():
    scorer = scorer_for(verifiers=[{"rule": "is_actually_a_poem", "penalty": -1}],
                        rewards={"gate": "penalty", "constraints": [
                            {"type": "penalize_text_containing", "text_to_avoid": "a", "penalty_score": -2,
                             "mode": "count"}]})
    poem, prose = scorer.score_sync([rollout(POEM), rollout(PROSE)])
    assert poem.constraints["penalize_text_containing"] == -2 * POEM.lower().count("a") != 0
    assert poem.total == -2 * POEM.lower().count("a")
    assert prose.total == -1 + -2 * PROSE.lower().count("a")


def test_weighted_rewards_sum_and_abstentions_are_skipped():
    scorer = scorer_for(rewards={"functions": [
        {"function": "contains", "params": {"text": "cat"}, "weight": 2},
        {"function": "regex", "params": {"pattern": "^A"}, "weight": 0.5},
        {"function": "test_abstains"},
    ]})
    (breakdown,) = scorer.score_sync([rollout(POEM)])
    assert breakdown.rewards == {"contains": 1.0, "regex": 1.0, "test_abstains": None}
    assert breakdown.total == 2.5


def test_dataset_columns_and_answer_are_injected_by_name():
    scorer = scorer_for(rewards={"functions": [{"function": "test_length_ratio"}]})
    (breakdown,) = scorer.score_sync([rollout("abcd", answer="ab")])
    assert breakdown.total == 2.0


def test_async_rewards_run_concurrently():
    scorer = scorer_for(rewards={"functions": [{"function": "test_slow_async", "name": "a"},
                                               {"function": "test_slow_async", "name": "b"}]})
    started = time.monotonic()
    breakdowns = scorer.score_sync([rollout(POEM), rollout(POEM), rollout(POEM)])
    elapsed = time.monotonic() - started
    assert [b.total for b in breakdowns] == [2.0, 2.0, 2.0]
    assert elapsed < 6 * 0.3 / 2  # six calls of 0.3 s overlap rather than queue


def test_a_raising_reward_fails_the_run_naming_the_reward_and_the_rollout():
    scorer = scorer_for(rewards={"functions": [{"function": "test_raises"}]})
    with pytest.raises(RewardError) as info:
        scorer.score_sync([rollout(POEM, rollout_id="step3-7")])
    message = str(info.value)
    assert "'test_raises'" in message and "step3-7" in message and "ValueError: boom" in message
    assert "on_error: penalize" in message


def test_penalize_policy_scores_failures_with_the_stated_penalty_and_counts_them():
    scorer = scorer_for(rewards={"functions": [{"function": "test_raises"}, {"function": "contains",
                                                                             "params": {"text": "cat"}}],
                                 "on_error": "penalize", "error_penalty": -7})
    breakdowns = scorer.score_sync([rollout(POEM), rollout(PROSE)])
    assert [b.total for b in breakdowns] == [-7, -7]
    assert "ValueError: boom" in breakdowns[0].errors["test_raises"]
    metrics = scorer.summarize(breakdowns)
    assert metrics["errors/test_raises/count"] == 2
    assert metrics["errors/contains/count"] == 0


def test_a_reward_that_hangs_times_out():
    scorer = scorer_for(rewards={"functions": [{"function": "test_hangs"}], "timeout_seconds": 0.2,
                                 "on_error": "penalize", "error_penalty": -3})
    started = time.monotonic()
    (breakdown,) = scorer.score_sync([rollout(POEM)])
    assert time.monotonic() - started < 5
    assert breakdown.total == -3
    assert "timed out after 0.2s" in breakdown.errors["test_hangs"]


@reward(name="test_sync_hangs_on_slow")
def _sync_hangs_on_slow(completion: str) -> float:
    if "slow" in completion:
        time.sleep(3)
    return float(len(completion))


def test_a_sync_reward_that_hangs_on_one_completion_fails_only_that_one():
    # Sync rules run many completions per thread; the one that overruns fails alone, the rest go on.
    scorer = scorer_for(rewards={"functions": [{"function": "test_sync_hangs_on_slow"}], "timeout_seconds": 0.5,
                                 "on_error": "penalize", "error_penalty": -3})
    texts = [f"poem {i}" for i in range(20)]
    texts[3] = "slow poem"
    started = time.monotonic()
    breakdowns = scorer.score_sync([rollout(text) for text in texts])
    assert time.monotonic() - started < 3
    assert breakdowns[3].total == -3 and "timed out after 0.5s" in breakdowns[3].errors["test_sync_hangs_on_slow"]
    assert [b.total for i, b in enumerate(breakdowns) if i != 3] == [len(t) for i, t in enumerate(texts) if i != 3]


def test_summary_uses_the_neutral_metric_names():
    scorer = scorer_for(verifiers=[{"rule": "mentions_a_cat"}], rewards={
        "functions": [{"function": "contains", "params": {"text": "mat"}}],
        "constraints": [{"type": "penalize_text_containing", "text_to_avoid": "s", "penalty_score": -1}]})
    metrics = scorer.summarize(scorer.score_sync([rollout(POEM), rollout("no felines here")]))
    assert metrics["verifiers/mentions_a_cat/pass_rate"] == 1.0  # "felines" counts
    assert metrics["rewards/contains/mean"] == 0.5
    assert set(metrics) >= {"reward/mean", "reward/std", "constraints/penalize_text_containing/mean"}


def test_module_attribute_import_path_resolves_a_plain_function(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text("def shout(completion):\n    return float(completion.isupper())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    scorer = scorer_for(rewards={"functions": [{"function": "my_rewards:shout"}]})
    assert [b.total for b in scorer.score_sync([rollout("HEY"), rollout("hey")])] == [1.0, 0.0]


def test_gate_floor_ranks_every_failed_completion_below_every_passing_one():
    """An empty answer dodges the 's' penalty; under the default gate it still scores below any poem."""
    sections = dict(verifiers=[{"rule": "is_actually_a_poem", "penalty": -1}], rewards={
        "functions": [{"function": "contains", "params": {"text": "cat"}, "weight": 2}],
        "constraints": [{"type": "penalize_text_containing", "text_to_avoid": "s", "penalty_score": -100}]})
    nearly_all_s = rollout("sss\nsss\nsss")  # 9 of 11 characters: about the worst a passing poem can do
    batch = [nearly_all_s, rollout(""), rollout("Kitty naps\nin a warm lap\nall day")]
    worst_poem, empty, poem = scorer_for(**sections).score_sync(batch)
    assert worst_poem.total == pytest.approx(-100 * 9 / 11)
    assert empty.gate_floor == -100.0  # min(0, 2 x 0) + min(0, -100): the lowest passing total
    assert empty.total == -101.0 < worst_poem.total < poem.total
    sections["rewards"]["gate"] = "penalty"
    worst_poem, empty, _ = scorer_for(**sections).score_sync(batch)
    assert empty.total == -1.0 > worst_poem.total  # the plain penalty lets failing pay
    assert empty.gate_floor is None


def test_a_completion_scores_the_same_alone_or_in_any_batch():
    scorer = scorer_for(verifiers=[{"rule": "is_actually_a_poem"}], rewards={"constraints": [
        {"type": "penalize_text_containing", "text_to_avoid": "s", "penalty_score": -100}]})
    batch = [rollout(POEM), rollout(""), rollout(PROSE)]
    together = [b.total for b in scorer.score_sync(batch)]
    alone = [scorer.score_sync([r])[0].total for r in batch]
    assert together == alone


def test_gate_floor_without_a_known_range_is_a_config_error_naming_the_reward():
    from retrain.core.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        scorer_for(verifiers=[{"rule": "mentions_a_cat"}], rewards={"functions": [{"function": "test_length_ratio"}]})
    assert info.value.issues[0].field == "rewards.functions[0]"
    assert "'test_length_ratio' has no known range" in info.value.issues[0].message
    scorer = scorer_for(verifiers=[{"rule": "mentions_a_cat"}], rewards={
        "functions": [{"function": "test_length_ratio", "bounds": [0, 10]}]})
    assert scorer.gate_floor == 0.0


def test_a_bare_false_from_a_verifier_says_how_to_give_a_reason():
    from retrain.core.verifier import coerce_outcome

    outcome = coerce_outcome(False, "is_short")
    assert not outcome.passed and outcome.reason == "is_short returned False (return (False, reason) to say why)"
