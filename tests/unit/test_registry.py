"""The registry: decorators, import paths, and backends found through entry points."""

from __future__ import annotations

import importlib.metadata

import pytest

from retrain import reward, verifier
from retrain.core.backend import Backend
from retrain.core.registry import ENTRY_POINT_GROUP, load_backend, registered_names, resolve_function


def test_decorators_register_by_function_name_or_given_name():
    @reward
    def registry_test_reward(completion: str) -> float:
        return 1.0

    @verifier(name="registry_test_check")
    def _check(completion: str) -> bool:
        return True

    assert "registry_test_reward" in registered_names("reward")
    assert resolve_function("registry_test_check", "verifier").fn is _check
    assert registry_test_reward("x") == 1.0  # the decorated function stays a plain function


def test_builtins_are_registered_under_their_documented_names():
    assert {"is_actually_a_poem", "mentions", "mentions_a_cat"} <= set(registered_names("verifier"))
    assert {"semantic_similarity", "contains", "regex", "length", "penalize_text_containing"} <= set(
        registered_names("reward"))


def test_import_path_errors_say_what_went_wrong(tmp_path, monkeypatch):
    (tmp_path / "broken_rewards.py").write_text("raise RuntimeError('bad import')\n")
    (tmp_path / "fine_rewards.py").write_text("def score(completion):\n    return 1.0\nLIMIT = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="raised RuntimeError: bad import"):
        resolve_function("broken_rewards:score", "reward")
    with pytest.raises(ValueError, match="did you mean 'score'"):
        resolve_function("fine_rewards:scor", "reward")
    with pytest.raises(ValueError, match="not a function"):
        resolve_function("fine_rewards:LIMIT", "reward")


@pytest.mark.parametrize("name", ["trl", "verl"])
def test_the_builtin_backends_are_registered_through_the_entry_point_group(name):
    names = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert name in names
    backend = load_backend(name)
    assert isinstance(backend, Backend) and backend.name == name


def test_an_unknown_backend_lists_the_available_ones():
    with pytest.raises(ValueError, match="available: trl, verl"):
        load_backend("torchforge")


def test_a_user_function_named_like_a_builtin_does_not_replace_it():
    import warnings

    from retrain.core.registry import resolve_function, verifier

    builtin = resolve_function("correct_answer", "verifier")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        @verifier
        def correct_answer(completion: str) -> bool:
            return True

    assert resolve_function("correct_answer", "verifier") is builtin
    assert "has the name of a built-in" in str(caught[0].message)
    assert correct_answer.__retrain__.fn is correct_answer  # still usable by its import path
