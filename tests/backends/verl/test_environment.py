"""Environments on verl: retrain's agent loop inside verl's agent-loop workers, on CPU."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer

from retrain.core.run import run_sync
from retrain.models import resolve_model
from tests.processes import assert_none_left
from tests.tiny_runs import QUIET, metrics

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow  # each test starts verl's trainer on a local Ray (1-2 minutes)


def test_a_recorded_episode_trains_only_the_models_tokens_on_verl(tmp_path, monkeypatch):
    """With the scripted policy (tests/backends/verl/scripted_rollout.py) every episode is: a
    calculator call, the tool's reply, the answer. The mask retrain's agent loop hands verl covers
    exactly the two model turns; the verifier passes because the answer came from the tool."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("VERL_USE_EXTERNAL_MODULES", "tests.backends.verl.scripted_rollout")
    started = time.time()
    config = yaml.safe_load((ROOT / "examples" / "calculator_tools.yaml").read_text())
    config["backend_options"] = {"verl": {"actor_rollout_ref.rollout.name": "scripted"}}
    summary = run_sync(config, backend="verl", model="retrain:tiny", max_steps=1, output_dir=tmp_path, console=QUIET)
    assert summary["status"] == "completed"
    run_dir = Path(summary["run_dir"])
    record = metrics(run_dir)[0]
    assert record["verifiers/correct_answer/pass_rate"] == 1.0
    assert record["env/tool_calls/mean"] == 1.0 and record["env/turns/mean"] == 2.0
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("retrain:tiny"))
    samples = [json.loads(line) for line in (run_dir / "samples" / "step_000001.jsonl").read_text().splitlines()]
    assert len(samples) == 8
    for sample in samples:
        ids, mask = sample["token_ids"], sample["trainable_mask"]
        model_turns = [m["content"] for m in sample["messages"] if m["role"] == "assistant"]
        trained = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m], skip_special_tokens=True)
        assert trained == "".join(model_turns)
        context = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m])
        tool_reply = sample["messages"][1]["content"]
        assert context == f"\n<|im_start|>tool\n{tool_reply}<|im_end|>\n<|im_start|>assistant\n"
    assert_none_left(since=started)


def test_the_mcp_example_trains_on_verl_and_its_servers_stop(tmp_path, monkeypatch):
    """The tiny model, generating for real; the example MCP server starts in verl's agent-loop
    worker (and briefly in the launcher, to size the prompts) and none is left after the run."""
    import psutil

    monkeypatch.chdir(ROOT)
    started = time.time()
    summary = run_sync("examples/mcp_tools.yaml", backend="verl", model="retrain:tiny", max_steps=1,
                       output_dir=tmp_path, console=QUIET)
    assert summary["status"] == "completed"
    record = metrics(Path(summary["run_dir"]))[0]
    assert {"env/turns/mean", "env/tool_calls/mean", "env/tool_error_rate"} <= set(record)
    assert_none_left(since=started)
    deadline = time.monotonic() + 15
    while (servers := [p.pid for p in psutil.process_iter(["cmdline"])
                       if "mcp_server.py" in " ".join(p.info["cmdline"] or [])]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not servers, "MCP servers left running after the run"


def test_the_same_games_get_the_same_breakdowns_on_trl_and_verl(tmp_path, monkeypatch):
    """TextArena's Guess The Number, two seeded games (one won, one lost with partial credit), four episodes
    each, played by the same scripted player (tests/scripted_games.py) on both backends: every episode's words
    and its breakdown (the game's reward through `environment_reward`) are the same. The games' openings (their
    rules) are longer than the rows' prompts: verl's prompt width comes from what `reset` returns."""
    from tests.environments.test_textarena import games_config
    from tests.scripted_games import episodes_of, guess_in_order, scripted_trl_run

    pytest.importorskip("textarena")
    monkeypatch.chdir(ROOT)
    config = games_config(tmp_path)
    on_trl = episodes_of(scripted_trl_run(config, tmp_path, guess_in_order))
    monkeypatch.setenv("VERL_USE_EXTERNAL_MODULES", "tests.backends.verl.scripted_rollout")
    config["backend_options"] = {"verl": {"actor_rollout_ref.rollout.name": "scripted"}}
    summary = run_sync(config, backend="verl", output_dir=tmp_path / "verl", console=QUIET)
    assert summary["status"] == "completed"
    on_verl = episodes_of(Path(summary["run_dir"]))
    assert on_verl == on_trl and len(on_verl) == 8
    assert sorted({round(json.loads(scores)["total"], 4) for _, scores in on_verl}) == [0.5263, 1.0]


def test_the_textarena_example_trains_two_steps_on_verl(tmp_path, monkeypatch):
    from tests.environments.test_textarena import example_config

    pytest.importorskip("textarena")
    monkeypatch.chdir(ROOT)
    config = example_config(tmp_path, max_completion_tokens=32)
    summary = run_sync(config, backend="verl", max_steps=2, console=QUIET)
    records = metrics(Path(summary["run_dir"]))
    assert [r["step"] for r in records] == [1, 2] and all("rewards/environment_reward/mean" in r for r in records)
