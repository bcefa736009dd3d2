"""TextArena games as environments, real games offline; and environment rewards reaching the Scorer."""

from __future__ import annotations

import asyncio
import math

import pytest

from retrain.core.config import TrainingConfig
from retrain.core.environment import MultiTurnEnv, StepResult
from retrain.core.errors import ConfigError
from retrain.core.rollout import Message
from retrain.core.scoring import Scorer
from retrain.environments.episode import EpisodeLimits, Turn, run_episode

pytest.importorskip("textarena", reason="pip install 'retrain[textarena]'")

from retrain.environments.textarena import TextArenaEnvironment  # noqa: E402

ROW = {"prompt": [{"role": "user", "content": "Answer like [7]."}], "seed": 3}


def play(environment, moves):
    async def game():
        opening = await environment.reset(ROW)
        results = []
        for move in moves:
            result = await environment.step(Message("assistant", move))
            results.append(result)
            if result.done:
                break
        await environment.close()
        return opening, results

    return asyncio.run(game())


def test_a_game_opens_with_the_rows_instructions_then_the_rules_and_scores_a_win():
    environment = TextArenaEnvironment("GuessTheNumber-v0")
    opening, _ = play(environment, [])
    (message,) = opening
    assert message.role == "user" and message.content.startswith("Answer like [7].\n\n")
    assert "guess the number between 1 and 20" in message.content
    lo, hi, moves = 1, 20, []
    environment = TextArenaEnvironment("GuessTheNumber-v0")

    async def binary_search():
        await environment.reset(ROW)
        nonlocal lo, hi
        while True:
            guess = (lo + hi) // 2
            moves.append(guess)
            result = await environment.step(Message("assistant", f"I think [{guess}]"))
            if result.done:
                return result
            (reply,) = result.observation
            assert result.reward is None and "[" not in reply.content.split("\n")[0][:1]  # no echo of the move
            if "lower" in reply.content:
                hi = guess - 1
            else:
                lo = guess + 1

    result = asyncio.run(binary_search())
    assert result.done and result.reward == 1.0 and "Congratulations" in result.info["game_end"]
    assert moves[-1] == 8  # seed 3's number


def test_the_same_seed_is_the_same_game_and_another_seed_another():
    def target(seed):
        environment = TextArenaEnvironment("GuessTheNumber-v0")

        async def find():
            await environment.reset({**ROW, "seed": seed})
            for guess in range(1, 21):
                result = await environment.step(Message("assistant", f"[{guess}]"))
                if result.done and result.reward == 1.0:
                    return guess
                if result.done:
                    return None
            return None

        return asyncio.run(find())

    assert target(3) == target(3) == 8
    assert len({target(seed) for seed in range(6)}) > 1


@pytest.mark.parametrize(("options", "error"), [
    ({"game": "GuessTheNumbr-v0"}, "TextArena has no game 'GuessTheNumbr-v0'; did you mean 'GuessTheNumber-v0'"),
    ({"game": "GuessTheNumber-v0", "game_options": {"colour": "red"}}, "does not take these game_options"),
    ({"game": "TicTacToe-v0"}, "cannot start a single-player game here"),
    ({"game": "Chess-v0"}, "cannot be loaded here"),  # its module needs Python 3.12's f-strings
    ({}, "type 'textarena' needs `game`"),
    ({"game": "GuessTheNumber-v0", "tools": ["calculator"]}, "offers no tools"),
])
def test_bad_game_settings_are_validation_errors(options, error):
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_data({"model_to_train": "retrain:tiny", "example_prompts": ["p"],
                                  "environment": {"type": "textarena", **options}})
    assert error in str(info.value)


# -- environment rewards through the episode runner and the Scorer -----------------------------------


class Tokens:
    """ChatTokens over characters: enough for the runner's bookkeeping (no model involved)."""

    eos_token_ids = {0}

    def encode_prompt(self, messages, tools):
        return [ord(c) % 200 + 1 for m in messages for c in m.content]

    def encode_continuation(self, messages):
        return self.encode_prompt(messages, [])

    def decode(self, token_ids):
        return "".join(chr(t) for t in token_ids if t)


def scripted(*turns):
    replies = iter(turns)

    async def generate(token_ids, budget):
        return Turn([ord(c) for c in next(replies)] + [0])

    return generate


class Scored(MultiTurnEnv):
    """Gives 0.25 for each turn and 1.0 when the model says 'done'."""

    async def is_completed(self, messages, state):
        return False

    async def env_response(self, messages, state):
        state["reward"] = 0.25
        return [Message("user", "go on")]

    async def step(self, action):
        if "done" in action.content:
            return StepResult([], done=True, reward=1.0)
        return await super().step(action)


def scorer(**params):
    config = TrainingConfig.from_data({"model_to_train": "retrain:tiny", "example_prompts": ["p"],
                                       "rewards": {"functions": [{"function": "environment_reward",
                                                                  "params": params}]}})
    return Scorer.from_config(config)


def test_the_episode_reward_is_the_sum_of_the_turns_and_reaches_the_breakdown():
    rollout = asyncio.run(run_episode(Scored(), {"prompt": "p"}, scripted("a", "b", "done"), Tokens(),
                                      EpisodeLimits(max_tokens=1000, max_turns=5)))
    assert rollout.episode.reward == pytest.approx(1.5)
    (breakdown,) = scorer().score_sync([rollout])
    assert breakdown.rewards["environment_reward"] == pytest.approx(1.5) and breakdown.total == pytest.approx(1.5)


class Silent(MultiTurnEnv):
    """Never scores: what a game cut off before its end looks like to the Scorer."""

    async def is_completed(self, messages, state):
        return False

    async def env_response(self, messages, state):
        return [Message("user", "go on")]


def test_an_unscored_episode_counts_what_unscored_says():
    rollout = asyncio.run(run_episode(Silent(), {"prompt": "p"}, scripted("a", "b"), Tokens(),
                                      EpisodeLimits(max_tokens=1000, max_turns=2)))
    assert rollout.episode.reward is None and rollout.episode.truncated
    assert scorer().score_sync([rollout])[0].rewards["environment_reward"] == 0.0
    assert scorer(unscored=-1.0).score_sync([rollout])[0].rewards["environment_reward"] == -1.0


def test_a_reward_that_is_not_a_finite_number_is_an_error_naming_it():
    class Broken(Scored):
        async def step(self, action):
            return StepResult([], done=True, reward=math.nan)

    with pytest.raises(ValueError, match="the environment returned a reward of nan"):
        asyncio.run(run_episode(Broken(), {"prompt": "p"}, scripted("a"), Tokens(),
                                EpisodeLimits(max_tokens=1000, max_turns=2)))


def test_environment_reward_without_an_environment_says_so():
    from retrain.core.rollout import Rollout

    config = TrainingConfig.from_data({"model_to_train": "retrain:tiny", "example_prompts": ["p"],
                                       "rewards": {"functions": [{"function": "environment_reward"}]}})
    with pytest.raises(Exception, match="environment_reward needs an environment"):
        Scorer.from_config(config).score_sync([Rollout([Message("user", "p")], [Message("assistant", "a")])])


# -- the example, and the same games on both backends ---------------------------------------------------

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def example_config(tmp_path, **algorithm):
    import yaml

    config = yaml.safe_load((ROOT / "examples" / "textarena_guess.yaml").read_text())
    config["data"]["source"] = str(ROOT / "examples" / "data" / "guess_the_number.jsonl")
    config["model_to_train"] = "retrain:tiny"
    config["algorithm"].update(algorithm)
    config["training"]["output_dir"] = str(tmp_path / "runs")
    return config


def test_the_example_trains_two_steps_on_trl_with_the_games_reward_in_the_metrics(tmp_path):
    from retrain.core.run import run_sync
    from tests.tiny_runs import QUIET, metrics

    # The tiny model never ends a turn: a short budget keeps its one-turn games short.
    summary = run_sync(example_config(tmp_path, max_completion_tokens=32), max_steps=2, console=QUIET)
    assert summary["status"] == "completed"
    records = metrics(__import__("pathlib").Path(summary["run_dir"]))
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["rewards/environment_reward/mean"] == 0.0 and r["env/truncated_rate"] == 1.0 for r in records)


def games_config(tmp_path):
    """Two games: seed 3 (number 8: won on the 8th guess) and seed 5 (number 20: lost after 11, partial credit)."""
    import json

    rows = tmp_path / "games.jsonl"
    rows.write_text("".join(json.dumps({"prompt": "Guess.", "seed": seed}) + "\n" for seed in (3, 5)))
    config = example_config(tmp_path, max_completion_tokens=1024, max_steps=1, group_size=4, prompts_per_step=2)
    config["data"]["source"] = str(rows)
    config["training"]["samples_per_step"] = 8
    return config


def test_a_won_and_a_lost_game_reach_the_breakdown_on_trl(tmp_path):
    from tests.scripted_games import episodes_of, guess_in_order, scripted_trl_run

    episodes = episodes_of(scripted_trl_run(games_config(tmp_path), tmp_path, guess_in_order))
    totals = sorted({round(__import__("json").loads(scores)["total"], 4) for _, scores in episodes})
    assert totals == [0.5263, 1.0]  # the loss's partial credit (last guess 11, number 20), the win
    assert len(episodes) == 8 and all("My guess is [8]" in text or "[11]" in text for text, _ in episodes)
