"""OpenEnv environments, real OpenEnv (0.10) offline: in this process, as a server the run starts and stops, and at
a URL; the model's text parsed into actions; observation rewards reaching the Scorer.

These tests need the `openenv` extra, which cannot share a virtual environment with the `mcp` extra (openenv's
fastmcp needs mcp<2): `make test-openenv` runs them in `.venv-openenv`, the dev environment plus OpenEnv.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from retrain.core.config import TrainingConfig
from retrain.core.errors import ConfigError
from retrain.core.scoring import Scorer
from retrain.environments import EnvironmentFactory
from retrain.environments.episode import EpisodeLimits, Turn, run_episode
from tests.scripted_games import walk_to_goal

pytestmark = pytest.mark.openenv
openenv = pytest.importorskip("openenv.core.env_server", reason="make test-openenv")

ROOT = Path(__file__).resolve().parents[2]
GRID = "examples.openenv_grid:GridWalk"
PROMPT = "Walk from S to G. Reply with JSON like {\"direction\": \"up\"}."


@pytest.fixture(autouse=True)
def _from_the_repository(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))


def environment_config(**openenv_fields):
    return TrainingConfig.from_data({
        "model_to_train": "retrain:tiny", "example_prompts": ["p"],
        "environment": {"type": "openenv", "max_turns": 8,
                        "openenv": {"environment": GRID, "params": {"size": 4, "max_moves": 6}, **openenv_fields}},
        "rewards": {"functions": [{"function": "environment_reward"}]},
    })


class CharTokens:
    """ChatTokens over characters (lossless), with the roles written out: enough for the episode runner and for a
    scripted player that reads the conversation (no model involved)."""

    eos_token_ids = {0}

    def encode_prompt(self, messages, tools):
        offered = "".join(json.dumps(t) for t in tools)
        return [ord(c) + 1 for c in offered + "".join(f"<{m.role}>{m.content}" for m in messages)]

    def encode_continuation(self, messages):
        return self.encode_prompt(messages, [])

    def decode(self, token_ids):
        return "".join(chr(t - 1) for t in token_ids if t)


def player(*fixed):
    """Replies `fixed` in order, then walks to the goal (tests/scripted_games.py)."""
    replies = list(fixed)
    tokens = CharTokens()

    async def generate(token_ids, budget):
        said = replies.pop(0) if replies else walk_to_goal(tokens.decode(token_ids))
        return Turn([ord(c) + 1 for c in said] + [0])

    return generate


def episodes(config, rows, generate_for=lambda row: player()):
    """Each row's episode through the environment factory the backends use, and its breakdown."""

    async def run():
        factory = EnvironmentFactory(config.environment)
        await factory.start()
        try:
            return [await run_episode(factory.new(), row, generate_for(row), CharTokens(),
                                      EpisodeLimits(max_tokens=20000, max_turns=config.environment.max_turns))
                    for row in rows]
        finally:
            await factory.close()

    rollouts = asyncio.run(run())
    return rollouts, Scorer.from_config(config).score_sync(rollouts)


ROWS = [{"prompt": PROMPT, "seed": seed} for seed in (0, 1, 2, 7)]


def test_an_episode_opens_with_the_rows_words_then_the_observation_and_sums_the_rewards():
    (rollout,), (breakdown,) = episodes(environment_config(), [{"prompt": PROMPT, "seed": 1}])
    (opening,) = rollout.prompt_messages
    assert opening.role == "user" and opening.content.startswith(PROMPT + "\n\nboard:\n")
    assert "message: You have 6 moves." in opening.content
    moves = [m.content for m in rollout.completion_messages if m.role == "assistant"]
    # reached: 1.0 minus 0.05 per move
    assert rollout.episode.reward == pytest.approx(1.0 - 0.05 * len(moves)) and rollout.episode.error is None
    assert rollout.completion_messages[-1].role == "assistant"  # the goal ends the episode: nothing after
    assert breakdown.rewards["environment_reward"] == pytest.approx(rollout.episode.reward)


def test_the_same_seed_is_the_same_walk_and_running_out_of_moves_ends_it():
    config = environment_config(params={"size": 4, "max_moves": 2})
    first, _ = episodes(config, ROWS)
    again, _ = episodes(config, ROWS)
    assert [r.completion_messages for r in first] == [r.completion_messages for r in again]
    assert len({r.prompt_messages[0].content for r in first}) == 4  # four seeds, four boards
    out_of_moves = [r for r in first if r.episode.reward == pytest.approx(-0.1)]
    assert len(out_of_moves) == 2 and all(r.episode.turns == 2 and "1 moves left" in r.completion_messages[-2].content
                                          for r in out_of_moves)


@pytest.mark.parametrize(("reply", "error"), [
    ("I go up!", "the reply has no JSON object"),
    ('{"direction": "north"}', "direction: Input should be 'up', 'down', 'left' or 'right'"),
    ('{"way": "up"}', "direction: Field required"),
    ('{"direction": "up", "metadata": {"reward": 1}}', "`metadata` is not the model's to set"),
    ('{"direction": ' + "[" * 5000, "the reply's JSON nests deeper than the decoder goes"),
    ("{" * 5000 + '{"direction": "up"}', "the reply has no JSON object"),  # only the first 64 places are tried
    ('{"direction": "up", "x": 1' + "0" * 5000 + "}", "the reply has no JSON object"),  # past the digit limit
    ('{"direction": NaN}', "NaN is not a number an action can hold"),
    ('{"direction": ' + "[" * 40 + "]" * 40 + "}", "nests deeper than 32 levels"),
])
def test_a_reply_that_is_not_an_action_ends_the_episode_with_an_error_that_says_why(reply, error):
    for serve in (False, True):  # the same words from the class in this process and through its server
        (rollout,), (breakdown,) = episodes(environment_config(serve=serve), [ROWS[0]],
                                            lambda row: player('{"direction": "left"}', reply))
        assert rollout.episode.turns == 2 and rollout.episode.reward == pytest.approx(-0.05)  # keeps the first move
        assert error in rollout.episode.error and 'like {"direction": ...}' in rollout.episode.error
        assert breakdown.rewards["environment_reward"] == pytest.approx(-0.05)


def test_an_environment_that_fails_on_a_well_formed_action_ends_the_episode_not_the_run():
    for serve in (False, True):
        config = environment_config(serve=serve, environment="tests.environments.test_openenv:Fragile")
        (rollout,), _ = episodes(config, [ROWS[0]], lambda row: player('{"direction": "left"}',
                                                                       '{"direction": "down"}'))
        assert rollout.episode.turns == 2 and rollout.episode.reward == pytest.approx(-0.05)
        assert "the environment failed on this action" in rollout.episode.error
        assert "no way down" in rollout.episode.error


def test_a_json_object_is_found_inside_words_and_fences():
    (rollout,), _ = episodes(environment_config(), [ROWS[0]],
                             lambda row: player('Let me think. ```json\n{"direction": "up"}\n``` done'))
    assert rollout.episode.error is None and rollout.episode.turns >= 2


def test_tool_call_actions_offer_the_action_as_one_tool_and_answer_as_its_result():
    config = environment_config(action_format="tool_call")

    def calls(row):
        tokens = CharTokens()

        async def generate(token_ids, budget):
            move = json.loads(walk_to_goal(tokens.decode(token_ids).replace("<tool>", "<user>")))
            said = "<tool_call>" + json.dumps({"name": "move", "arguments": move}) + "</tool_call>"
            return Turn([ord(c) + 1 for c in said] + [0])

        return generate

    (rollout,), (breakdown,) = episodes(config, [ROWS[1]], calls)
    factory_tools = rollout.prompt_token_ids  # the offered schema is rendered first (CharTokens)
    offered = CharTokens().decode(factory_tools)
    assert '"name": "move"' in offered and '"enum": ["up", "down", "left", "right"]' in offered
    assert "metadata" not in offered
    assert {m.role for m in rollout.completion_messages} == {"assistant", "tool"}
    assert rollout.episode.error is None and breakdown.rewards["environment_reward"] > 0.5
    (wrong,), _ = episodes(config, [ROWS[1]], lambda row: player('<tool_call>{"name": "jump", "arguments": {}}'
                                                                 '</tool_call>'))
    assert "must call the tool 'move' once; it called jump" in wrong.episode.error


def test_served_and_in_process_episodes_are_the_same_and_the_server_is_stopped_by_its_id():
    here, here_scores = episodes(environment_config(), ROWS)
    started: list[int] = []
    original = subprocess.Popen.__init__

    def record(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if "retrain.environments.openenv_server" in args[0]:
            started.append(self.pid)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", record)
        served, served_scores = episodes(environment_config(serve=True), ROWS)
    assert [r.completion_messages for r in served] == [r.completion_messages for r in here]
    assert [r.prompt_messages for r in served] == [r.prompt_messages for r in here]
    assert [b.to_dict() for b in served_scores] == [b.to_dict() for b in here_scores]
    assert len(started) == 1 and not psutil.pid_exists(started[0])


def test_a_served_environment_that_prints_a_lot_does_not_stall():
    """The run reads only the server's first line; what the environment prints after goes to its log, not into a
    pipe nobody reads (64 KiB would stall it)."""
    config = environment_config(serve=True, environment="tests.environments.test_openenv:Chatty")
    (rollout,), _ = episodes(config, [{"prompt": PROMPT, "seed": 1}])
    assert rollout.episode.error is None and rollout.episode.reward == pytest.approx(0.9)


def render_upper(observation):
    return f"[{observation['board'].upper()}] {observation['message']}"


def test_reset_options_reach_reset_and_render_is_yours():
    config = environment_config(environment="tests.environments.test_openenv:Options", params={},
                                reset_options={"level": 3}, render="tests.environments.test_openenv:render_upper")
    (rollout,), _ = episodes(config, [{"prompt": PROMPT, "seed": 4}],
                             lambda row: player('{"direction": "up"}', '{"direction": "left"}'))
    assert rollout.prompt_messages[0].content.endswith("\n\n[SEED 4, LEVEL 3] options")
    assert rollout.completion_messages[1].content == "[UP] again" and rollout.episode.reward == 1.0  # 2 x 0.5


def serve_by_hand(params):
    """An OpenEnv server started the way a user would, outside retrain: our server module, its own process."""
    process = subprocess.Popen([sys.executable, "-m", "retrain.environments.openenv_server", GRID, json.dumps(params)],
                               stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               start_new_session=True)
    port = process.stdout.readline().decode().rsplit(" ", 1)[1].strip()
    return process, f"http://127.0.0.1:{port}"


def test_a_server_at_a_url_plays_the_same_episodes_and_is_left_running():
    here, here_scores = episodes(environment_config(), ROWS)
    process, url = serve_by_hand({"size": 4, "max_moves": 6})
    try:
        config = TrainingConfig.from_data({
            "model_to_train": "retrain:tiny", "example_prompts": ["p"],
            "environment": {"type": "openenv", "max_turns": 8, "openenv": {"url": url, "max_sessions": 2}},
            "rewards": {"functions": [{"function": "environment_reward"}]},
        })
        remote, remote_scores = episodes(config, ROWS)
        assert [r.completion_messages for r in remote] == [r.completion_messages for r in here]
        assert [b.to_dict() for b in remote_scores] == [b.to_dict() for b in here_scores]
        (bad,), _ = episodes(config, [ROWS[0]], lambda row: player('{"direction": "north"}'))
        # checked against the server's /schema before it is sent (jsonschema's words: the class is not here)
        assert "direction: 'north' is not one of ['up', 'down', 'left', 'right']" in bad.episode.error
        assert process.poll() is None  # not the run's server: not the run's to stop
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def test_a_served_environment_stops_when_the_run_that_started_it_dies():
    code = (
        "import asyncio, sys; sys.path.insert(0, '.')\n"
        "from retrain.core.config.environment import OpenEnvSpec\n"
        "from retrain.environments.openenv import OpenEnvProvider\n"
        f"p = OpenEnvProvider(OpenEnvSpec(environment={GRID!r}, serve=True))\n"
        "asyncio.run(p.start()); print(p.server.pid, flush=True); import time; time.sleep(600)\n"
    )
    run = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=ROOT)
    try:
        server = int(run.stdout.readline())
        assert psutil.pid_exists(server)
    finally:
        run.kill()  # SIGKILL: the run has no chance to stop its server
        run.wait()
    deadline = time.monotonic() + 15
    while psutil.pid_exists(server) and psutil.Process(server).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the OpenEnv server outlived the run that started it"
        time.sleep(0.2)


@pytest.mark.parametrize(("fields", "error"), [
    ({"url": "http://localhost:1"}, "exactly one of `environment`"),
    ({"environment": None, "url": "localhost:8000"}, "is not an http://, https://, ws:// or wss:// address"),
    ({"environment": "examples.openenv_grid:Move"}, "is not an OpenEnv Environment subclass"),
    ({"max_sessions": 2}, "openenv.max_sessions limits sessions on a server"),
    ({"environment": "tests.environments.test_openenv:Lonely", "serve": True},
     "does not declare SUPPORTS_CONCURRENT_SESSIONS = True"),
    ({"environment": "tests.environments.test_openenv:Unnamed"}, "does not name its Action class"),
])
def test_bad_openenv_settings_are_validation_errors(fields, error):
    with pytest.raises(ConfigError) as info:
        environment_config(**fields)
    assert error in str(info.value) and "environment" in str(info.value)


def test_a_url_without_a_server_is_a_clear_error_at_start():
    config = TrainingConfig.from_data({
        "model_to_train": "retrain:tiny", "example_prompts": ["p"],
        "environment": {"type": "openenv", "openenv": {"url": "http://127.0.0.1:9"}},
        "rewards": {"functions": [{"function": "environment_reward"}]},
    })
    with pytest.raises(RuntimeError, match=r"could not read the environment's action schema .*is an OpenEnv server"):
        episodes(config, [ROWS[0]])


def test_mcp_servers_beside_openenv_are_refused_with_why_and_what_to_do():
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_data({
            "model_to_train": "retrain:tiny", "example_prompts": ["p"],
            "environment": {"type": "mcp", "mcp_servers": [{"name": "a", "command": "python",
                                                            "args": ["examples/mcp_server.py"]}]},
        })
    message = str(info.value)
    assert "mcp_servers need the MCP SDK 2.x" in message and "openenv 0.10 needs fastmcp 3" in message
    assert "separate virtual environment" in message


def test_the_example_is_valid_here():
    assert TrainingConfig.from_yaml(ROOT / "examples" / "openenv_grid.yaml").environment.type == "openenv"


def test_the_example_trains_two_steps_on_trl_with_the_environments_reward_in_the_metrics(tmp_path):
    from retrain.core.run import run_sync
    from tests.tiny_runs import QUIET, metrics

    summary = run_sync(example_config(tmp_path, max_completion_tokens=32), max_steps=2, console=QUIET)
    assert summary["status"] == "completed"
    records = metrics(Path(summary["run_dir"]))
    assert [r["step"] for r in records] == [1, 2]
    assert all("rewards/environment_reward/mean" in r and "env/episode_error_rate" in r for r in records)


# -- shared with the verl tests (tests/backends/verl/test_environment.py) --------------------------------------


def example_config(tmp_path, **algorithm):
    import yaml

    config = yaml.safe_load((ROOT / "examples" / "openenv_grid.yaml").read_text())
    config["data"]["source"] = str(ROOT / "examples" / "data" / "grid_walk.jsonl")
    config["model_to_train"] = "retrain:tiny"
    config["algorithm"].update(algorithm)
    config["training"]["output_dir"] = str(tmp_path / "runs")
    return config


def walks_config(tmp_path, **openenv_fields):
    """Two walks, four episodes each: seed 0 (goal 3 moves away: reached) and seed 2 (5 away: out of moves at 3)."""
    rows = tmp_path / "walks.jsonl"
    rows.write_text("".join(json.dumps({"prompt": PROMPT, "seed": seed}) + "\n" for seed in (0, 2)))
    config = example_config(tmp_path, max_completion_tokens=1024, max_steps=1, group_size=4, prompts_per_step=2)
    config["data"]["source"] = str(rows)
    config["environment"]["openenv"]["params"] = {"size": 4, "max_moves": 3}
    config["environment"]["openenv"].update(openenv_fields)
    config["training"]["samples_per_step"] = 8
    return config


def test_a_reached_and_a_lost_walk_reach_the_breakdown_on_trl(tmp_path):
    from tests.scripted_games import episodes_of, scripted_trl_run

    walks = episodes_of(scripted_trl_run(walks_config(tmp_path), tmp_path, walk_to_goal))
    totals = sorted({round(json.loads(scores)["total"], 4) for _, scores in walks})
    assert len(walks) == 8 and totals == [-0.15, 0.85]  # out of moves after 3; reached in 3 (1 - 0.05 * 3)


class Chatty(__import__("examples.openenv_grid", fromlist=["GridWalk"]).GridWalk):
    """The example's walk, printing 200 KB at every move."""

    def step(self, action, timeout_s=None, **kwargs):
        print("x" * 200_000, flush=True)
        return super().step(action, timeout_s, **kwargs)


class Options(openenv.Environment[
        __import__("examples.openenv_grid", fromlist=["Move"]).Move,
        __import__("examples.openenv_grid", fromlist=["GridObservation"]).GridObservation, openenv.State]):
    """Shows what reset received; two moves end it (0.5 each)."""

    def reset(self, seed=None, episode_id=None, **kwargs):
        from examples.openenv_grid import GridObservation

        return GridObservation(board=f"seed {seed}, level {kwargs.get('level')}", message="options")

    def step(self, action, timeout_s=None, **kwargs):
        from examples.openenv_grid import GridObservation

        self.moves = getattr(self, "moves", 0) + 1
        return GridObservation(board=action.direction, message="again", done=self.moves == 2, reward=0.5)

    @property
    def state(self):
        return openenv.State()


class Fragile(__import__("examples.openenv_grid", fromlist=["GridWalk"]).GridWalk):
    """The example's walk, raising on a move down."""

    def step(self, action, timeout_s=None, **kwargs):
        if action.direction == "down":
            raise ValueError("no way down")
        return super().step(action, timeout_s, **kwargs)


# Fixtures for the validation tests above: classes that break one rule each.
class Lonely(openenv.Environment[openenv.Action, openenv.Observation, openenv.State]):
    """An environment that does not declare concurrent sessions."""

    def reset(self, seed=None, episode_id=None, **kwargs):
        return openenv.Observation()

    def step(self, action, timeout_s=None, **kwargs):
        return openenv.Observation(done=True)

    @property
    def state(self):
        return openenv.State()


class Unnamed(openenv.Environment):  # type: ignore[type-arg]
    """An environment that does not say which Action it takes."""

    reset = Lonely.reset
    step = Lonely.step
    state = Lonely.state


@pytest.mark.slow
def test_pip_refuses_the_openenv_extra_beside_the_mcp_extra():
    """What a user who asks for both sees: pip's own refusal, naming the two mcp requirements (the registry's
    real metadata; no install happens)."""
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                           f"retrain[mcp,openenv] @ {ROOT.as_uri()}"], capture_output=True, text=True, timeout=600)
    said = done.stdout + done.stderr
    assert done.returncode != 0 and "ResolutionImpossible" in said
    assert 'depends on mcp==2.3.0; extra == "mcp"' in said and "depends on mcp<2.0" in said
