"""Token-exact episodes: the model's tokens are kept exactly as generated, the environment's are
appended once and masked out, and nothing is re-tokenized between turns.

The policy here is scripted (it stands in for a model that has learned to call tools, which the
tiny random test model cannot); the tokenizer, chat template, tools and episode code are real.
"""

from __future__ import annotations

import asyncio

import pytest
from transformers import AutoTokenizer

from retrain.config_models import TrainingConfig
from retrain.core.environment import MultiTurnEnv
from retrain.core.metrics import episode_metrics
from retrain.core.rollout import EpisodeStats, Message
from retrain.environments import EnvironmentFactory, ToolEnvironment
from retrain.environments.episode import BatchedGenerator, EpisodeLimits, HFChatTokens, run_episode, run_episodes
from retrain.environments.tools import load_tool
from retrain.models import resolve_model

CALL = '<tool_call>{"name": "calculator", "arguments": {"expression": "6*7"}}</tool_call>'
ROW = {"prompt": [{"role": "user", "content": "What is 6*7?"}], "answer": 42}


@pytest.fixture(scope="module")
def tokens() -> HFChatTokens:
    return HFChatTokens(AutoTokenizer.from_pretrained(resolve_model("retrain:tiny")))


class ScriptedPolicy:
    """Says `turns[i]` (tokenized once, ending in the end-of-turn token) on its i-th call; records inputs."""

    def __init__(self, tokens: HFChatTokens, turns: list[str]):
        eos = tokens.tokenizer.eos_token_id
        self.turns = [tokens.tokenizer(t, add_special_tokens=False)["input_ids"] + [eos] for t in turns]
        self.inputs: list[list[int]] = []

    async def __call__(self, token_ids: list[int], max_new_tokens: int) -> list[int]:
        self.inputs.append(list(token_ids))
        return self.turns[len(self.inputs) - 1][:max_new_tokens]


def _episode(tokens, policy, max_tokens=200, max_turns=4):
    environment = ToolEnvironment([load_tool("calculator")])
    return asyncio.run(run_episode(environment, ROW, policy, tokens, EpisodeLimits(max_tokens, max_turns)))


def test_trained_tokens_are_exactly_the_models_and_context_is_never_retokenized(tokens):
    policy = ScriptedPolicy(tokens, [CALL, "The answer is 42."])
    rollout = _episode(tokens, policy)
    ids, mask = rollout.completion_token_ids, rollout.trainable_mask
    assert len(ids) == len(mask)
    assert [t for t, m in zip(ids, mask, strict=True) if m] == policy.turns[0] + policy.turns[1]
    environment_tokens = [t for t, m in zip(ids, mask, strict=True) if not m]
    assert tokens.tokenizer.decode(environment_tokens) == "\n<|im_start|>tool\n42<|im_end|>\n<|im_start|>assistant\n"
    # What the model saw on its second turn is exactly the first turn's tokens plus the tool's.
    assert policy.inputs[1] == rollout.prompt_token_ids + ids[: len(policy.turns[0]) + len(environment_tokens)]
    # Rewards read the model's words apart from the tool's.
    assert rollout.completion == f"{CALL}\nThe answer is 42."
    assert [m["role"] for m in rollout.messages] == ["user", "assistant", "tool", "assistant"]
    assert [c.name for c in rollout.tool_calls] == ["calculator"]
    assert rollout.episode == EpisodeStats(turns=2, tool_calls=1, calls_per_tool={"calculator": 1})


def test_the_tools_are_offered_in_the_prompt(tokens):
    rollout = _episode(tokens, ScriptedPolicy(tokens, ["42"]))
    prompt = tokens.tokenizer.decode(rollout.prompt_token_ids)
    assert '"name": "calculator"' in prompt and "<tool_call>" in prompt and prompt.endswith("<|im_start|>assistant\n")


def test_limits_end_the_episode_and_say_so(tokens):
    cut = _episode(tokens, ScriptedPolicy(tokens, [CALL]), max_tokens=10)
    assert cut.episode.truncated and len(cut.completion_token_ids) == 10 and cut.episode.tool_calls == 0
    looping = _episode(tokens, ScriptedPolicy(tokens, [CALL, CALL, CALL]), max_turns=2)
    assert looping.episode.truncated and looping.episode.turns == 2 and looping.episode.tool_calls == 2


def test_concurrent_episodes_are_batched_for_the_model(tokens):
    eos = tokens.tokenizer.eos_token_id
    call_ids = tokens.tokenizer(CALL, add_special_tokens=False)["input_ids"] + [eos]
    answer_ids = tokens.tokenizer("42", add_special_tokens=False)["input_ids"] + [eos]
    calls: list[int] = []

    def generate_batch(sequences, budgets):
        calls.append(len(sequences))
        seen_tool = ["<|im_start|>tool" in tokens.tokenizer.decode(s) for s in sequences]
        return [answer_ids if seen else call_ids for seen in seen_tool]

    generator = BatchedGenerator(generate_batch)
    environment = lambda: ToolEnvironment([load_tool("calculator")])  # noqa: E731
    rollouts = asyncio.run(run_episodes(environment, [ROW] * 8, generator, tokens, EpisodeLimits(300, 3)))
    assert calls[0] == 8 and sum(calls) == 16  # the first turns in one batch; the second as tools finish
    assert all(r.episode.turns == 2 and r.completion.endswith("42") for r in rollouts)
    metrics = episode_metrics([r.episode for r in rollouts])
    assert metrics["env/tools/calculator/calls"] == 8 and metrics["env/tool_error_rate"] == 0.0


def test_episode_metrics_count_errors_by_kind():
    episodes = [EpisodeStats(turns=2, tool_calls=2, tool_errors=1, calls_per_tool={"a": 2},
                             errors_per_kind={"timeout": 1}),
                EpisodeStats(turns=1, truncated=True)]
    assert episode_metrics(episodes) == {
        "env/turns/mean": 1.5, "env/tool_calls/mean": 1.0, "env/tool_error_rate": 0.5, "env/truncated_rate": 0.5,
        "env/episode_error_rate": 0.0,
        "env/tools/a/calls": 2.0, "env/tool_errors/timeout": 1.0,
    }


class Guess(MultiTurnEnv):
    """The two-hook environment of docs/environments.md."""

    def __init__(self, tries: int = 3):
        super().__init__()
        self.tries = tries

    async def is_completed(self, messages, state):
        return str(state["row"]["answer"]) in messages[-1].content or len(messages) > 2 * self.tries

    async def env_response(self, messages, state):
        return [Message("user", "No, try again.")]


def test_a_two_hook_environment_from_config_runs_token_exactly(tokens):
    config = TrainingConfig.from_data({"model_to_train": "retrain:tiny", "example_prompts": ["p"], "environment": {
        "type": "tests.environments.test_episode:Guess", "params": {"tries": 3}, "max_turns": 5}})
    factory = EnvironmentFactory(config.environment)
    policy = ScriptedPolicy(tokens, ["41", "43", "42"])
    rollout = asyncio.run(run_episode(factory.new(), ROW, policy, tokens, EpisodeLimits(200, factory.max_turns)))
    assert [m.content for m in rollout.completion_messages] == ["41", "No, try again.", "43", "No, try again.", "42"]
    assert [t for t, m in zip(rollout.completion_token_ids, rollout.trainable_mask, strict=True) if m] == sum(
        policy.turns, [])
    assert rollout.episode.turns == 3 and not rollout.episode.truncated


def test_the_chat_template_arguments_reach_the_episode_prompts():
    """data.chat_template_kwargs (e.g. enable_thinking) shape episode prompts as they shape single-turn ones."""
    from transformers import AutoTokenizer

    from retrain.core.rollout import Message
    from retrain.environments.episode import HFChatTokens
    from retrain.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("retrain:tiny"))
    tokenizer.chat_template = "{% for m in messages %}{{ greeting }}{{ m['content'] }}\n{% endfor %}"
    tokens = HFChatTokens(tokenizer, {"greeting": "Hello: "})
    assert tokenizer.decode(tokens.encode_prompt([Message("user", "two plus two")], [])) == "Hello: two plus two\n"
