"""Built-in environments and the factory that builds a run's environment from its config.

- `single_turn`: the model answers once (what a run without `environment:` does).
- `tools`: the model may call tools (Python functions and/or MCP servers' tools) for up to
  `max_turns` turns; an answer without a tool call ends the episode.
- `textarena`: a TextArena game (`environment.game`), which scores itself (`retrain.environments.textarena`).
- `openenv`: an OpenEnv environment in this process, as a local server, or at a URL (`retrain.environments.openenv`).
- `module:Class`: your own environment (an `Environment` or a `MultiTurnEnv` subclass), built
  with `environment.params` as keyword arguments.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from retrain.core.environment import Environment, StepResult, opening_messages
from retrain.core.registry import import_attribute
from retrain.core.rollout import Message
from retrain.environments.parsing import parse_tool_calls
from retrain.environments.tools import Tool, ToolOutcome, load_tool, run_tool_call

if TYPE_CHECKING:
    from retrain.core.config import EnvironmentConfig
    from retrain.environments.mcp import MCPToolbox
    from retrain.environments.openenv import OpenEnvProvider


class SingleTurnEnvironment:
    """The model answers once."""

    tools: list[Tool] = []

    async def reset(self, row: dict[str, Any]) -> list[Message]:
        return opening_messages(row)

    async def step(self, action: Message) -> StepResult:
        return StepResult([], done=True)

    async def close(self) -> None:
        """Nothing to release."""


class ToolEnvironment:
    """The model calls tools by writing `<tool_call>` JSON; each call's result (or its error)
    comes back as a tool message. A turn without a call ends the episode."""

    def __init__(self, tools: list[Tool], tool_timeout_seconds: float = 10.0):
        self.tools = tools
        self._by_name = {tool.name: tool for tool in tools}
        self.timeout = tool_timeout_seconds

    async def reset(self, row: dict[str, Any]) -> list[Message]:
        return opening_messages(row)

    async def step(self, action: Message) -> StepResult:
        calls, errors = parse_tool_calls(action.content)
        action.tool_calls = calls
        if not calls and not errors:
            return StepResult([], done=True)
        outcomes: list[ToolOutcome] = list(
            await asyncio.gather(*(run_tool_call(self._by_name, call, self.timeout) for call in calls))
        )
        outcomes += [ToolOutcome("<malformed>", f"Error: {error}", "malformed") for error in errors]
        observation = [Message("tool", outcome.content) for outcome in outcomes]
        return StepResult(observation, done=False, info={"tool_outcomes": outcomes})

    async def close(self) -> None:
        """Tools are shared by the run's episodes; the factory releases them."""


class EnvironmentFactory:
    """Builds one environment per episode; holds what episodes share (tools, MCP servers).
    `start` (in the event loop that runs the episodes) before the first, `close` after the last."""

    def __init__(self, config: EnvironmentConfig | None):
        self.config = config
        self.python_tools = [load_tool(reference) for reference in (config.tools if config else [])]
        self.toolbox: MCPToolbox | None = None
        self.openenv: OpenEnvProvider | None = None
        self.tools: list[Tool] = list(self.python_tools)

    @property
    def kind(self) -> str:
        return self.config.type if self.config else "single_turn"

    @property
    def max_turns(self) -> int:
        return self.config.max_turns if self.config and self.kind != "single_turn" else 1

    async def start(self) -> None:
        if self.config and self.config.type == "openenv" and self.openenv is None:
            from retrain.environments.openenv import OpenEnvProvider

            assert self.config.openenv is not None  # validated
            provider = OpenEnvProvider(self.config.openenv)
            try:
                await provider.start()
            except BaseException:
                await provider.close()
                raise
            self.openenv = provider
        if self.config and self.config.mcp_servers and self.toolbox is None:
            from retrain.environments.mcp import MCPToolbox

            self.toolbox = MCPToolbox(self.config.mcp_servers)
            await self.toolbox.start()
            names = {tool.name for tool in self.python_tools}
            clashes = names & {tool.name for tool in self.toolbox.tools}
            if clashes:
                await self.toolbox.close()
                raise ValueError(f"tools named {sorted(clashes)} come from both environment.tools and an MCP server")
            self.tools = self.python_tools + self.toolbox.tools

    def new(self) -> Environment:
        config = self.config
        if config is None or config.type == "single_turn":
            return SingleTurnEnvironment()
        if config.type in ("tools", "mcp"):
            return ToolEnvironment(self.tools, config.tool_timeout_seconds)
        if config.type == "textarena":
            from retrain.environments.textarena import TextArenaEnvironment

            assert config.game is not None  # validated
            return TextArenaEnvironment(config.game, config.game_options)
        if config.type == "openenv":
            assert self.openenv is not None, "start() the factory first"
            return self.openenv.new()
        environment_class = import_attribute(config.type, what="environment")
        environment: Environment = environment_class(**config.params)
        return environment

    async def close(self) -> None:
        try:
            if self.toolbox is not None:
                await self.toolbox.close()
                self.toolbox = None
        finally:
            if self.openenv is not None:
                await self.openenv.close()
                self.openenv = None


async def _opening_lengths(config: EnvironmentConfig, rows: list[dict[str, Any]], tokens: Any) -> list[int]:
    factory = EnvironmentFactory(config)
    await factory.start()
    try:
        lengths = []
        for row in rows:
            environment = factory.new()
            try:
                opening = await environment.reset(row)
                offered = [tool.schema() for tool in getattr(environment, "tools", [])]
            finally:
                await environment.close()
            lengths.append(len(tokens.encode_prompt(opening, offered)))
        return lengths
    finally:
        await factory.close()


def longest_opening(config: EnvironmentConfig, rows: list[dict[str, Any]], tokens: Any,
                    max_prompt_tokens: int | None) -> int:
    """The longest prompt an episode really opens with, in tokens: what `reset` returns for each row (a game's
    board, the row's prompt) with the tools offered, as the chat template renders it. A ValueError naming the
    row when one is longer than `max_prompt_tokens` (data.max_prompt_tokens): no backend cuts a prompt."""
    unique: dict[str, tuple[int, dict[str, Any]]] = {}
    for index, row in enumerate(rows):  # rows in step order repeat each epoch: measure each once
        unique.setdefault(repr(sorted(row.items(), key=lambda item: item[0])), (index, row))
    indexed = list(unique.values())
    lengths = asyncio.run(_opening_lengths(config, [row for _, row in indexed], tokens))
    if max_prompt_tokens is not None:
        over = [(index, length) for (index, _), length in zip(indexed, lengths, strict=True)
                if length > max_prompt_tokens]
        if over:
            index, length = over[0]
            raise ValueError(
                f"{len(over)} episode opening(s) are longer than data.max_prompt_tokens ({max_prompt_tokens}): row "
                f"{index} opens with {length} tokens (what environment.reset returns, with the tools offered); raise "
                "data.max_prompt_tokens, or leave it unset and retrain sizes the prompt to the longest opening"
            )
    return max(lengths, default=0)
