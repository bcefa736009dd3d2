"""`environment`: multi-step episodes with tools and MCP servers."""

from __future__ import annotations

import importlib.util
from typing import Any

from pydantic import Field, field_validator, model_validator

from retrain.core.config._base import _Strict
from retrain.core.registry import import_attribute


class MCPServerSpec(_Strict):
    """An MCP server started over stdio for the run (and stopped when it ends)."""

    name: str = Field(description="Name of the server (in logs and errors).")
    command: str = Field(
        description="The executable, e.g. 'npx', or 'python' (the interpreter retrain runs in, not the first on PATH)."
    )
    args: list[str] = Field(default_factory=list, description="Its arguments.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables for the server. Only these and a few safe ones (PATH, HOME, USER, ...) "
        "reach it: the parent's secrets are not passed unless listed here.",
    )
    cwd: str | None = Field(None, description="Working directory of the server process.")


class EnvironmentConfig(_Strict):
    """A multi-step environment: the model may call tools and take several turns."""

    type: str = Field(
        "tools",
        description="'single_turn', 'tools' (Python functions and/or MCP servers' tools), 'mcp' (the same, with "
        "mcp_servers required), 'textarena' (a TextArena game: `game`), or 'module:Class' for your own "
        "Environment / MultiTurnEnv.",
    )
    game: str | None = Field(
        None, description="type 'textarena': the game's id, e.g. 'GuessTheNumber-v0' (single-player games)."
    )
    game_options: dict[str, Any] = Field(
        default_factory=dict, description="type 'textarena': keyword arguments of the game (e.g. max_turns)."
    )
    tools: list[str] = Field(
        default_factory=list, description="Tool functions: a built-in name ('calculator') or 'module:function'."
    )
    mcp_servers: list[MCPServerSpec] = Field(default_factory=list, description="MCP servers whose tools to offer.")
    max_turns: int = Field(4, gt=0, description="Most model turns per episode.")
    tool_timeout_seconds: float = Field(10.0, gt=0, description="Time limit of one tool call.")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for a 'module:Class' type.")

    @field_validator("tools")
    @classmethod
    def _tools_exist(cls, tools: list[str]) -> list[str]:
        from retrain.environments.tools import load_tool

        for tool in tools:
            load_tool(tool)
        return tools

    @model_validator(mode="after")
    def _type_fits(self) -> EnvironmentConfig:
        if self.type == "mcp" and not self.mcp_servers:
            raise ValueError("type 'mcp' needs at least one entry in mcp_servers")
        if self.mcp_servers and importlib.util.find_spec("mcp") is None:
            raise ValueError("mcp_servers need the MCP SDK: pip install 'retrain[mcp]'")
        if self.type == "tools" and not (self.tools or self.mcp_servers):
            raise ValueError("type 'tools' needs `tools` (Python functions) or `mcp_servers`")
        if self.type == "textarena":
            if not self.game:
                raise ValueError("type 'textarena' needs `game`, a TextArena game id such as 'GuessTheNumber-v0'")
            if importlib.util.find_spec("textarena") is None:
                raise ValueError("type 'textarena' needs TextArena: pip install 'retrain[textarena]'")
            from retrain.environments.textarena import check_game

            if self.tools or self.mcp_servers:
                raise ValueError("type 'textarena' offers no tools: the game reads the model's turns as moves")
            check_game(self.game, self.game_options)
            return self
        if self.game is not None or self.game_options:
            raise ValueError("`game` and `game_options` are for type 'textarena'")
        if self.type not in ("single_turn", "tools", "mcp"):
            if ":" not in self.type:
                raise ValueError(f"unknown environment type '{self.type}'; use 'single_turn', 'tools', 'mcp', "
                                 "'textarena' or 'module:Class'")
            import_attribute(self.type, what="environment")
        return self
