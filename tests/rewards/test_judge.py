"""The LLM judge against a real local OpenAI-compatible server (retrain.testing.openai_server, serving
`retrain:tiny` through transformers, plus scripted behaviours chosen by the request's `model`)."""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from retrain.config_models import TrainingConfig
from retrain.core.errors import RewardError
from retrain.core.registry import resolve_function
from retrain.core.rollout import Message, Rollout
from retrain.core.scoring import Scorer
from retrain.rewards import judge
from retrain.rewards.judge import JudgeError, JudgeReplyError, llm_judge, parse_score, render_rubric
from retrain.testing.openai_server import GARBAGE_REPLY, free_port, serve

KEY_ENV = "RETRAIN_TEST_JUDGE_KEY"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve("retrain:tiny") as base_url:
        yield base_url


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    judge.clear_cache()


def stats(base_url: str, model: str | None = None) -> dict[str, Any]:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats", timeout=5) as response:
        data = json.loads(response.read())
    return data if model is None else data["by_model"].get(model, {"requests": 0, "max_in_flight": 0})


def judged(base_url: str, model: str, prompt: str = "What is 2+2?", completion: str = "4", **params: Any) -> Any:
    params.setdefault("backoff_seconds", 0.01)
    return asyncio.run(llm_judge(prompt, completion, base_url=base_url, model=model, **params))


# -- pure parts: registration, docstring, parsing, the rubric ----------------------------------------


def test_registered_async_with_bounds_and_a_docstring_in_the_documented_shape():
    function = resolve_function("llm_judge", "reward")
    assert function.is_async and function.bounds == (0.0, 1.0)
    assert {"base_url", "model"} <= set(function.required_parameters)
    doc = inspect.getdoc(llm_judge) or ""
    assert "\n" not in doc.split("\n\n")[0]  # a one-line summary; the `Example:` paragraph comes last
    head, marker, example = doc.partition("\nExample:\n")
    assert marker and "Example:" not in head
    config = yaml.safe_load(textwrap.dedent(example))
    assert config["rewards"]["functions"][0]["function"] == "llm_judge"


def test_importing_the_rewards_does_not_import_httpx():
    code = "import sys, retrain.rewards.judge; assert 'httpx' not in sys.modules, 'httpx imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("reply", "parser", "low", "high", "expected"), [
    ("7", "number", 0, 10, 0.7),
    ("Score: 7.5", "number", 0, 10, 0.75),
    ("On a scale of 1 to 10, score: 8", "number", 1, 10, 7 / 9),
    ("<think>maybe 2, maybe 9</think>6", "number", 0, 10, 0.6),
    ("Yes, it is.", "yes_no", 0, 10, 1.0),
    ("no.", "yes_no", 0, 10, 0.0),
    ("Rating: 4/5", r"Rating:\s*(\d+)/5", 1, 5, 0.75),
    ("GOOD", lambda text: 3.0 if text == "GOOD" else None, 0, 3, 1.0),
])
def test_parse_score_reads_and_normalises(reply, parser, low, high, expected):
    assert parse_score(reply, parser, low, high) == pytest.approx(expected)


@pytest.mark.parametrize(("reply", "parser", "message"), [
    (GARBAGE_REPLY, "number", "has no score"),
    (GARBAGE_REPLY, "yes_no", "neither yes nor no"),
    ("Score: 11", "number", "outside the score range"),
    ("Rating: x", r"Rating: (\w)", "not a number"),
])
def test_parse_score_names_the_reply_it_cannot_read(reply, parser, message):
    with pytest.raises(JudgeReplyError, match=message) as raised:
        parse_score(reply, parser, 0, 10)
    assert reply[:20] in str(raised.value)


def test_bad_parsers_and_rubrics_are_config_errors():
    with pytest.raises(ValueError, match="exactly one group"):
        parse_score("1", r"\d", 0, 10)
    with pytest.raises(ValueError, match="no \\{completion\\}"):
        render_rubric("Rate {prompt}", "p", "c", None, 0, 10)
    with pytest.raises(ValueError, match="answer_column"):
        render_rubric("{completion} vs {answer}", "p", "c", None, 0, 10)
    # One pass: placeholders inside the completion are not filled; other braces stay.
    assert render_rubric('{"a": 1} {completion} {answer}', "p", "{answer}", "42", 0, 10) == '{"a": 1} {answer} 42'


def test_missing_api_key_for_a_remote_endpoint_fails_before_any_request(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ValueError, match=KEY_ENV):
        judged("https://judge.invalid/v1", "gpt-judge", api_key_env=KEY_ENV)


def test_unreachable_endpoint_is_retried_then_named():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(JudgeError, match="failed 2 attempt.*ConnectError"):
        judged(url, "any", retries=1)


# -- against the server ------------------------------------------------------------------------


def test_the_real_model_replies_and_its_reply_is_parsed_or_refused_as_configured(server):
    import httpx

    body = {"model": "retrain:tiny", "messages": [{"role": "user", "content": "Rate this: 4"}], "max_tokens": 8}
    first, second = (httpx.post(f"{server}/chat/completions", json=body, timeout=60).json() for _ in range(2))
    assert first["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]  # greedy
    assert 1 <= first["usage"]["completion_tokens"] <= 8

    try:
        score = judged(server, "retrain:tiny", max_tokens=8)
        assert 0.0 <= score <= 1.0
    except JudgeReplyError as error:  # a random model says nothing sensible: the error quotes its reply
        assert "judge reply" in str(error)
    abstained = judged(server, "retrain:tiny", max_tokens=8, on_unparseable="abstain")
    assert abstained is None or 0.0 <= abstained <= 1.0


def test_scores_are_normalised_from_the_score_range(server):
    assert judged(server, "echo-score:7") == pytest.approx(0.7)
    assert judged(server, "echo-score:4", min_score=1, max_score=5) == pytest.approx(0.75)
    assert judged(server, "echo:Yes, a happy poem.", parser="yes_no") == 1.0
    assert judged(server, "echo:No.", parser="yes_no") == 0.0
    assert judged(server, "echo:Rating: 4/5", parser=r"Rating:\s*(\d)/5", min_score=1, max_score=5) == 0.75


def test_the_rubric_is_filled_with_prompt_completion_and_answer(server):
    rubric = "P={prompt} C={completion} A={answer} range {min_score}-{max_score}"
    assert judged(server, "echo-prompt", prompt="q", completion="c", answer="3", rubric=rubric,
                  parser=r"A=(\d)", max_score=5) == pytest.approx(0.6)
    default = judged(server, "echo-prompt", completion="my reply", answer="4", parser=r"(?s)<reference>\s*(\d)")
    assert default == pytest.approx(0.4)  # the default rubric carries the reference answer when there is one


def test_garbage_raises_naming_the_reply_or_abstains(server):
    with pytest.raises(JudgeReplyError, match="Purple elephants"):
        judged(server, "garbage")
    assert judged(server, "garbage", on_unparseable="abstain") is None
    with pytest.raises(JudgeReplyError, match="outside the score range"):
        judged(server, "echo-score:11")


def test_a_judge_that_hangs_times_out_after_the_retries_quickly(server):
    started = time.monotonic()
    with pytest.raises(JudgeError, match=r"failed 2 attempt.*no reply within 0.5s"):
        judged(server, "slow:5", timeout_seconds=0.5, retries=1)
    assert time.monotonic() - started < 2.5
    assert stats(server, "slow:5")["requests"] == 2


def test_server_errors_and_rate_limits_are_retried(server):
    assert judged(server, "flaky:2", retries=3) == pytest.approx(0.8)
    assert stats(server, "flaky:2")["requests"] == 3
    with pytest.raises(JudgeError, match="HTTP 500"):
        judged(server, "flaky:3", retries=1)
    assert stats(server, "flaky:3")["requests"] == 2
    assert judged(server, "ratelimit:1", retries=1) == pytest.approx(0.6)


def test_auth_errors_are_not_retried_and_name_the_key_variable(server, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(JudgeError, match=f"401.*{KEY_ENV}"):
        judged(server, "unauthorized", api_key_env=KEY_ENV)
    assert stats(server, "unauthorized")["requests"] == 1
    with pytest.raises(JudgeError, match="404"):
        judged(server, "status:404")
    assert stats(server, "status:404")["requests"] == 1

    monkeypatch.setenv(KEY_ENV, "sekret")
    assert judged(server, "require-key:sekret", api_key_env=KEY_ENV) == pytest.approx(0.9)


def test_the_concurrency_limit_is_shared_by_concurrent_calls(server):
    async def many() -> list[float | None]:
        return await asyncio.gather(*(
            llm_judge(f"prompt {i}", "c", base_url=server, model="slow:0.15", max_concurrency=4) for i in range(16)
        ))

    started = time.monotonic()
    assert asyncio.run(many()) == [0.5] * 16
    assert time.monotonic() - started >= 4 * 0.15
    assert stats(server, "slow:0.15") == {"requests": 16, "in_flight": 0, "max_in_flight": 4}


def test_slow_judges_overlap(server):
    async def many(limit: int) -> float:
        started = time.monotonic()
        await asyncio.gather(*(
            llm_judge(f"prompt {i}", "c", base_url=server, model="slow:0.1", max_concurrency=limit) for i in range(32)
        ))
        return time.monotonic() - started

    assert asyncio.run(many(32)) < 0.1 * 32 / 4  # serial: 3.2 s


def test_the_cache_answers_repeats_without_a_request(server):
    assert judged(server, "echo-score:3") == judged(server, "echo-score:3") == pytest.approx(0.3)
    assert stats(server, "echo-score:3")["requests"] == 1
    assert judge.cache_info()["hits"] == 1
    judged(server, "echo-score:3", completion="another")
    assert stats(server, "echo-score:3")["requests"] == 2  # keyed on the completion too

    async def duplicates() -> list[float | None]:  # the same completion five times in one batch: one request
        return await asyncio.gather(*(llm_judge("p", "same", base_url=server, model="echo-score:2") for _ in range(5)))

    assert asyncio.run(duplicates()) == [pytest.approx(0.2)] * 5
    assert stats(server, "echo-score:2")["requests"] == 1
    judged(server, "echo-score:1", cache=False)
    judged(server, "echo-score:1", cache=False)
    assert stats(server, "echo-score:1")["requests"] == 2


def test_clients_are_closed_with_their_event_loop(server):
    for _ in range(2):  # a fresh loop per batch, as Scorer.score_sync does
        assert judged(server, "echo-score:6", cache=False) == pytest.approx(0.6)
        assert judge.active_clients() == 0


# -- through the Scorer ------------------------------------------------------------------------------


def scorer(server: str, on_error: str = "fail", **params: Any) -> Scorer:
    config = TrainingConfig.from_yaml_text(textwrap.dedent(f"""\
        model_to_train: retrain:tiny
        example_prompts: ["What is 2+2?"]
        rewards:
          on_error: {on_error}
          error_penalty: -3
          functions:
            - function: llm_judge
              weight: 2
              params: {json.dumps({"base_url": server, "backoff_seconds": 0.01, **params})}
        """))
    return Scorer.from_config(config)


def rollout(completion: str, answer: str | None = None) -> Rollout:
    metadata = {} if answer is None else {"answer": answer}
    return Rollout([Message("user", "What is 2+2?")], [Message("assistant", completion)], metadata=metadata)


def test_the_scorer_weighs_judge_scores(server):
    breakdowns = scorer(server, model="echo-score:7").score_sync([rollout("4"), rollout("5")])
    assert [b.rewards["llm_judge"] for b in breakdowns] == [pytest.approx(0.7)] * 2
    assert [b.total for b in breakdowns] == [pytest.approx(1.4)] * 2

    with_answer = scorer(server, model="echo-prompt", rubric="{completion} ANSWER={answer}", parser=r"ANSWER=(\d)")
    assert with_answer.score_sync([rollout("x", answer="9")])[0].rewards["llm_judge"] == pytest.approx(0.9)


def test_the_scorer_fails_or_penalises_a_garbage_judge(server):
    with pytest.raises(RewardError, match="llm_judge.*Purple elephants"):
        scorer(server, model="garbage").score_sync([rollout("4")])
    penalised = scorer(server, on_error="penalize", model="garbage").score_sync([rollout("4")])[0]
    assert penalised.total == -3 and "Purple elephants" in penalised.errors["llm_judge"]
    abstained = scorer(server, model="garbage", on_unparseable="abstain").score_sync([rollout("4")])[0]
    assert abstained.rewards["llm_judge"] is None and abstained.total == 0.0
