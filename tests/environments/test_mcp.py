"""MCP tools for real: servers written with the official `mcp` SDK, started over stdio, listed,
called, and stopped; faults become tool messages; the parent's secrets do not leak."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import psutil
import pytest

from retrain.core.config import MCPServerSpec
from retrain.core.rollout import Message
from retrain.environments import ToolEnvironment
from retrain.environments.mcp import MCPToolbox

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = MCPServerSpec(name="arithmetic", command=sys.executable, args=[str(ROOT / "examples" / "mcp_server.py")])
FAULTS = str(Path(__file__).with_name("mcp_faults_server.py"))


def _servers_alive() -> list[str]:
    children = psutil.Process().children(recursive=True)
    return [" ".join(c.cmdline()) for c in children if c.is_running() and "server.py" in " ".join(c.cmdline())]


def _call(name: str, arguments: str) -> Message:
    return Message("assistant", f'<tool_call>{{"name": "{name}", "arguments": {arguments}}}</tool_call>')


def test_the_example_server_is_started_listed_called_and_stopped():
    async def scenario():
        toolbox = MCPToolbox([EXAMPLE])
        await toolbox.start()
        try:
            names = sorted(t.name for t in toolbox.tools)
            running = _servers_alive()
            result = await ToolEnvironment(toolbox.tools).step(_call("multiply", '{"a": 6, "b": 7}'))
            wrong = await ToolEnvironment(toolbox.tools).step(_call("add", '{"a": "six"}'))
        finally:
            await toolbox.close()
        return names, running, result, wrong

    names, running, result, wrong = asyncio.run(scenario())
    assert names == ["add", "multiply", "subtract"] and len(running) == 1
    assert result.observation[0].content == "42.0"
    assert wrong.info["tool_outcomes"][0].error == "raised" and "validation error" in wrong.observation[0].content
    assert not _servers_alive()


def test_servers_get_only_the_environment_the_config_gives(monkeypatch):
    monkeypatch.setenv("RETRAIN_TEST_SECRET", "hunter2")
    spec = MCPServerSpec(name="faults", command=sys.executable, args=[FAULTS], env={"GIVEN": "yes"})

    async def scenario():
        toolbox = MCPToolbox([spec])
        await toolbox.start()
        try:
            read = {t.name: t for t in toolbox.tools}["read_env"]
            return await read.call({"name": "RETRAIN_TEST_SECRET"}), await read.call({"name": "GIVEN"})
        finally:
            await toolbox.close()

    assert asyncio.run(scenario()) == ("unset", "yes")


def _steps(actions: list[Message], timeout: float) -> tuple[list, float]:
    """Start the faults server, send the model turns to a ToolEnvironment, stop the server."""

    async def scenario():
        toolbox = MCPToolbox([MCPServerSpec(name="faults", command=sys.executable, args=[FAULTS])])
        await toolbox.start()
        environment = ToolEnvironment(toolbox.tools, tool_timeout_seconds=timeout)
        started = time.monotonic()
        try:
            return [await environment.step(action) for action in actions], time.monotonic() - started
        finally:
            await toolbox.close()

    return asyncio.run(scenario())


def test_a_server_that_dies_mid_run_gives_tool_errors_not_a_hang():
    (died, after), seconds = _steps([_call("exit_now", "{}"), _call("read_env", '{"name": "HOME"}')], timeout=5)
    assert died.info["tool_outcomes"][0].error in ("raised", "timeout")
    assert after.info["tool_outcomes"][0].error in ("raised", "timeout")
    assert seconds < 15 and not _servers_alive()


def test_a_slow_tool_times_out_and_the_server_stays_usable():
    (slow, quick), _ = _steps([_call("slow", '{"seconds": 3}'), _call("read_env", '{"name": "NOPE"}')], timeout=0.5)
    assert slow.info["tool_outcomes"][0].error == "timeout"
    assert quick.observation[0].content == "unset"


def test_a_server_that_cannot_start_is_named_with_its_stderr(tmp_path):
    script = tmp_path / "broken_server.py"
    script.write_text("raise SystemExit('no config file found')\n")
    spec = MCPServerSpec(name="broken", command=sys.executable, args=[str(script)])
    with pytest.raises(RuntimeError, match=r"MCP server 'broken' .* could not start[\s\S]*no config file found"):
        asyncio.run(MCPToolbox([spec]).start())
    assert not _servers_alive()
