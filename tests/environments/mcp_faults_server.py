"""An MCP server for the fault tests: a tool that reads the server's environment, one that
makes the server exit mid-run, and a slow one."""

from __future__ import annotations

import os
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("faults")


@server.tool()
def read_env(name: str) -> str:
    """The value of an environment variable in the server process, or 'unset'."""
    return os.environ.get(name, "unset")


@server.tool()
def exit_now() -> str:
    """The server process exits without answering."""
    os._exit(3)


@server.tool()
def slow(seconds: float) -> str:
    """Sleep, then answer."""
    time.sleep(seconds)
    return "done"


if __name__ == "__main__":
    server.run()
