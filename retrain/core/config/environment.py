"""`environment`: multi-step episodes with tools and MCP servers."""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

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


# Why the `openenv` extra cannot share a virtual environment with the `mcp` extra, and what to do.
OPENENV_MCP_CONFLICT = (
    "OpenEnv cannot share a virtual environment with retrain[mcp]: openenv 0.10 needs fastmcp 3, which needs "
    "mcp<2, and retrain's MCP client (environment.mcp_servers) needs mcp 2.3. Install OpenEnv in a separate "
    "virtual environment (python -m venv .venv-openenv; .venv-openenv/bin/pip install 'retrain[trl,openenv]') "
    "and keep MCP servers in another"
)


class OpenEnvSpec(_Strict):
    """An OpenEnv environment: in this process, as a local server the run starts and stops, or at a URL."""

    environment: str | None = Field(
        None,
        description="'module:Class', an OpenEnv Environment subclass: run in this process (one instance per "
        "episode), or as a local server with `serve: true`.",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the Environment class.")
    serve: bool = Field(
        False,
        description="Start `environment` as an OpenEnv server (a child process, on a free local port) for the run "
        "and talk to it over WebSocket like a remote one; stopped when the run ends.",
    )
    url: str | None = Field(
        None,
        description="A running OpenEnv server (http://, https://, ws:// or wss://) that you started; one WebSocket "
        "session per episode.",
    )
    action_format: Literal["json", "tool_call"] = Field(
        "json",
        description="How the model writes its action: 'json' (a JSON object of the Action's fields anywhere in "
        "its reply) or 'tool_call' (the Action offered as one tool; the observation comes back as the tool's "
        "result).",
    )
    reset_options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of reset() besides the row's seed."
    )
    render: str | None = Field(
        None,
        description="'module:function' turning an observation (a dict of its fields) into the text the model "
        "reads. Default: a single text field as it is, else one 'field: value' line per field (done, reward "
        "and metadata left out).",
    )
    max_sessions: int | None = Field(
        None, gt=0,
        description="Most episodes open at once against a server (url or serve); None: as many as the batch has.",
    )


class EnvironmentConfig(_Strict):
    """A multi-step environment: the model may call tools and take several turns."""

    type: str = Field(
        "tools",
        description="'single_turn', 'tools' (Python functions and/or MCP servers' tools), 'mcp' (the same, with "
        "mcp_servers required), 'textarena' (a TextArena game: `game`), 'openenv' (an OpenEnv environment: "
        "`openenv`), or 'module:Class' for your own Environment / MultiTurnEnv.",
    )
    openenv: OpenEnvSpec | None = Field(None, description="type 'openenv': which environment, and how to talk to it.")
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
        if self.mcp_servers:
            _check_mcp_sdk()
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
        if self.type == "openenv":
            if self.openenv is None:
                raise ValueError("type 'openenv' needs `openenv:` with `environment: module:Class` (an OpenEnv "
                                 "Environment) or `url:` (a running OpenEnv server)")
            if self.tools or self.mcp_servers:
                raise ValueError("type 'openenv' offers no tools of retrain's: the environment reads the model's "
                                 "turns as its actions")
            from retrain.environments.openenv import check_spec

            check_spec(self.openenv)
            return self
        if self.openenv is not None:
            raise ValueError("`openenv` is for type 'openenv'")
        if self.type not in ("single_turn", "tools", "mcp"):
            if ":" not in self.type:
                raise ValueError(f"unknown environment type '{self.type}'; use 'single_turn', 'tools', 'mcp', "
                                 "'textarena', 'openenv' or 'module:Class'")
            import_attribute(self.type, what="environment")
        return self


def _check_mcp_sdk() -> None:
    if importlib.util.find_spec("mcp") is None:
        raise ValueError("mcp_servers need the MCP SDK: pip install 'retrain[mcp]'")
    from importlib.metadata import PackageNotFoundError, version

    try:
        major = int(version("mcp").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return
    if major < 2:  # e.g. downgraded by installing openenv (fastmcp 3 needs mcp<2)
        raise ValueError(f"mcp_servers need the MCP SDK 2.x (retrain[mcp]); this environment has mcp "
                         f"{version('mcp')}. {OPENENV_MCP_CONFLICT}")
