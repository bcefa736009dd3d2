"""Tools from MCP servers, started over stdio with the official `mcp` SDK for the run and
stopped when it ends.

Each server runs as a child process with only the environment the config gives it
(`mcp_servers[].env`) plus the SDK's short list of safe variables (PATH, HOME, USER, ...): the
parent's secrets do not leak into it unless the config passes them on. A server's stderr goes
to a log file whose tail is shown when it fails to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.environments.tools import Tool

if TYPE_CHECKING:
    from retrain.core.config import MCPServerSpec

START_TIMEOUT_SECONDS = 60.0


class MCPToolError(Exception):
    """The server answered the call with is_error (the tool's own failure)."""


class MCPToolbox:
    """Starts every configured server, lists its tools, routes calls; `close` stops the servers."""

    def __init__(self, specs: list[MCPServerSpec], log_dir: Path | None = None):
        self.specs = specs
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="retrain-mcp-"))
        self.tools: list[Tool] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for spec in self.specs:
            ready: asyncio.Future[list[Tool]] = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._serve(spec, ready), name=f"mcp:{spec.name}")
            self._tasks.append(task)
            try:
                tools = await asyncio.wait_for(asyncio.shield(ready), timeout=START_TIMEOUT_SECONDS)
            except Exception as exc:
                await self.close()
                log = self._log(spec).read_text(errors="replace")[-1500:] if self._log(spec).exists() else ""
                reason = f"did not answer within {START_TIMEOUT_SECONDS:g} s" if isinstance(exc, TimeoutError) else (
                    f"{type(exc).__name__}: {exc}")
                raise RuntimeError(
                    f"MCP server '{spec.name}' ({spec.command} {' '.join(spec.args)}) could not start: {reason}"
                    + (f"\n--- its stderr ---\n{log}" if log.strip() else "")
                ) from None
            self.tools += tools

    def _log(self, spec: MCPServerSpec) -> Path:
        return self.log_dir / f"{spec.name}.stderr.log"

    async def _serve(self, spec: MCPServerSpec, ready: asyncio.Future[list[Tool]]) -> None:
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        # "python" means the interpreter retrain runs in (its venv has the SDK), not whichever is first on PATH.
        command = sys.executable if spec.command in ("python", "python3") else spec.command
        parameters = StdioServerParameters(command=command, args=spec.args, env=spec.env or None, cwd=spec.cwd)
        try:
            with self._log(spec).open("a") as errlog:
                transport = stdio_client(parameters, errlog=errlog)
                async with transport as (read, write), ClientSession(read, write) as session:
                    await session.initialize()
                    listed = await session.list_tools()
                    tools = [_tool(session, item) for item in listed.tools]
                    if not ready.done():
                        ready.set_result(tools)
                    await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            if not isinstance(exc, Exception):
                raise

    async def close(self) -> None:
        """Stop every server (the SDK closes its stdin, then terminates and kills the process)."""
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=15)
        self._tasks = []


def _tool(session: Any, item: Any) -> Tool:
    name = item.name

    async def call(arguments: dict[str, Any]) -> str:
        result = await session.call_tool(name, arguments)
        text = "\n".join(getattr(block, "text", "") or str(block) for block in getattr(result, "content", []) or [])
        if getattr(result, "is_error", False):
            raise MCPToolError(text or "the server reported an error")
        if not text and getattr(result, "structured_content", None) is not None:
            return str(result.structured_content)
        return text

    schema = dict(item.input_schema or {"type": "object", "properties": {}})
    return Tool(name, item.description or f"The {name} tool.", schema, call)
