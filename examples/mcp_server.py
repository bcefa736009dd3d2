"""A small MCP server (official `mcp` SDK) with arithmetic tools, for examples/mcp_tools.yaml.

retrain starts it over stdio for the run (`python examples/mcp_server.py`) and stops it at the end.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("arithmetic")


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@server.tool()
def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


@server.tool()
def subtract(a: float, b: float) -> float:
    """Subtract b from a."""
    return a - b


if __name__ == "__main__":
    server.run()
