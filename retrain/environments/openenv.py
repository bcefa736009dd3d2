"""OpenEnv environments (`environment.type: openenv`): environments written for Meta/Hugging Face's OpenEnv, which
score themselves (`observation.reward`), trained on either backend.

    environment:
      type: openenv
      openenv:
        environment: examples.openenv_grid:GridWalk   # an OpenEnv Environment subclass, in this process
        params: {size: 4}
        # serve: true                                 # ... or as a local server the run starts and stops
        # url: http://localhost:8000                  # ... or a server you started
        action_format: json                            # or tool_call
      max_turns: 8

Each dataset row starts one episode: `reset(seed=row["seed"], **reset_options)`. The row's prompt (your
instructions: what the moves are, how to write them) comes first, then the environment's first observation, in
one user message. Each model turn is parsed into the environment's Action:

- `json`: the first JSON object in the reply (a ```json fence is fine) is the Action's fields;
- `tool_call`: the Action is offered as one tool (named after the Action class, its fields as parameters); the
  model calls it in the chat template's tool-call format, and the observation comes back as the tool's result.

A reply that is not an Action (no JSON object, a field missing or of the wrong type, `metadata`, which is not
the model's to set) ends the episode with an error that says why (`episode.error` in the samples,
`env/episode_error_rate` in the metrics); the episode keeps the rewards it had. So does an environment that fails
on a well-formed action (raises, times out, returns a reward that is not finite): the model cannot stop the run.
Each observation's `reward` is the turn's reward; their sum is the episode's environment reward (the
`environment_reward` built-in). A reward at reset (OpenEnv: "typically None") is not counted. `done` ends the
episode.

In this process, each episode gets its own instance of the class (episodes run concurrently). With `serve`,
retrain starts the class as an OpenEnv server (uvicorn, a free local port, its log in a temporary folder that a
start error names) and stops that process, by its id, when the run ends, also on failure; the server needs
`SUPPORTS_CONCURRENT_SESSIONS = True`. With `url`, each episode opens its own WebSocket session; a server with
fewer sessions than the batch's episodes needs `max_sessions`.

The `openenv` extra cannot share a virtual environment with the `mcp` extra (see OPENENV_MCP_CONFLICT).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from retrain.core.config.environment import OPENENV_MCP_CONFLICT, OpenEnvSpec
from retrain.core.environment import StepResult, opening_messages
from retrain.core.registry import import_attribute
from retrain.core.rollout import Message
from retrain.environments.parsing import parse_tool_calls
from retrain.environments.tools import Tool

_NOT_SHOWN = ("done", "reward", "metadata")  # observation fields that are signals, not text for the model
START_TIMEOUT_SECONDS = 60.0


def _openenv() -> Any:
    try:
        import openenv.core.env_server as server
    except ImportError as exc:
        raise ValueError(
            f"environment.type 'openenv' needs OpenEnv: pip install 'retrain[openenv]' ({exc}). "
            + OPENENV_MCP_CONFLICT
        ) from None
    return server


# -- what the config names --------------------------------------------------------------------------------------


def environment_class(reference: str) -> type:
    cls = import_attribute(reference, what="OpenEnv environment")
    if not (isinstance(cls, type) and issubclass(cls, _openenv().Environment)):
        raise ValueError(f"openenv.environment '{reference}' is not an OpenEnv Environment subclass "
                         "(openenv.core.env_server.Environment)")
    return cls


def _generic_arguments(cls: type) -> tuple[Any, ...]:
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            origin = getattr(base, "__origin__", None)
            if origin is not None and issubclass(origin, _openenv().Environment):
                arguments = getattr(base, "__args__", ())
                if arguments and all(isinstance(a, type) for a in arguments):
                    return tuple(arguments)
    return ()


def action_class(cls: type) -> type:
    """The environment's Action class, from its generic base: `class GridWalk(Environment[Move, ...])`."""
    arguments = _generic_arguments(cls)
    server = _openenv()
    if not arguments or not issubclass(arguments[0], server.Action):
        raise ValueError(f"openenv.environment '{cls.__module__}:{cls.__qualname__}' does not name its Action class: "
                         "declare it as `class MyEnv(Environment[MyAction, MyObservation, State])`")
    return arguments[0]


def observation_class(cls: type) -> type:
    arguments = _generic_arguments(cls)
    server = _openenv()
    if len(arguments) > 1 and issubclass(arguments[1], server.Observation):
        return arguments[1]
    return server.Observation  # type: ignore[no-any-return]


def check_spec(spec: OpenEnvSpec) -> None:
    """Validation: what the config names exists and fits, before any episode."""
    _openenv()
    if (spec.environment is None) == (spec.url is None):
        raise ValueError("openenv needs exactly one of `environment` (module:Class, run by retrain) and `url` "
                         "(a server you started)")
    if spec.url is not None:
        if not re.match(r"^(https?|wss?)://[^/\s]+", spec.url):
            raise ValueError(f"openenv.url '{spec.url}' is not an http://, https://, ws:// or wss:// address")
        if spec.serve or spec.params:
            raise ValueError("openenv.serve and openenv.params are for `environment` (a class retrain runs), "
                             "not for `url`")
    else:
        assert spec.environment is not None
        cls = environment_class(spec.environment)
        action_class(cls)
        if spec.serve and not getattr(cls, "SUPPORTS_CONCURRENT_SESSIONS", False):
            raise ValueError(f"openenv.serve: '{spec.environment}' does not declare SUPPORTS_CONCURRENT_SESSIONS = "
                             "True, and a run's episodes play at once; run it in this process (serve: false)")
    if spec.max_sessions is not None and spec.url is None and not spec.serve:
        raise ValueError("openenv.max_sessions limits sessions on a server (url or serve); in this process every "
                         "episode has its own instance")
    if spec.render is not None:
        import_attribute(spec.render, what="OpenEnv observation renderer")


# -- turning observations into text and text into actions --------------------------------------------------------


def default_render(observation: dict[str, Any]) -> str:
    """A single text field as it is; otherwise `field: value` per field (a text of several lines below its
    name, values other than text as JSON); done, reward and metadata are left out."""
    shown = {k: v for k, v in observation.items() if k not in _NOT_SHOWN}
    if len(shown) == 1 and isinstance(next(iter(shown.values())), str):
        return str(next(iter(shown.values())))
    lines = []
    for name, value in shown.items():
        text = value if isinstance(value, str) else json.dumps(value)
        lines.append(f"{name}:\n{text}" if "\n" in text else f"{name}: {text}")
    return "\n".join(lines)


class ActionError(ValueError):
    """The model's reply is not an action of this environment (the episode ends with this as its error)."""


MAX_JSON_STARTS = 64  # each `{` is a place a JSON object may start; a reply of thousands is not a move


def json_object_in(text: str) -> dict[str, Any]:
    """The first JSON object in a reply (anywhere in it, fenced or not), trying at most MAX_JSON_STARTS places."""
    decoder = json.JSONDecoder(parse_constant=_no_constant)
    for tried, match in enumerate(re.finditer(r"\{", text)):
        if tried >= MAX_JSON_STARTS:
            break
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ActionError:
            raise
        except RecursionError:
            raise ActionError("the reply's JSON nests deeper than the decoder goes") from None
        except ValueError:  # not JSON here (JSONDecodeError), or an integer past Python's digit limit
            continue
        if isinstance(value, dict):
            if _depth(value) > MAX_JSON_DEPTH:
                raise ActionError(f"the reply's JSON nests deeper than {MAX_JSON_DEPTH} levels")
            return value
    raise ActionError("the reply has no JSON object")


MAX_JSON_DEPTH = 32


def _no_constant(name: str) -> Any:
    raise ActionError(f"{name} is not a number an action can hold")


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def _example(schema: dict[str, Any]) -> str:
    fields = [name for name in schema.get("properties", {}) if name != "metadata"]
    return "{" + ", ".join(f'"{name}": ...' for name in fields) + "}"


def tool_name(action_schema: dict[str, Any]) -> str:
    """The tool a `tool_call` action is offered as: the Action class's name in snake case (`Move` -> `move`)."""
    title = str(action_schema.get("title") or "act")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", title).lower()


def offered_schema(action_schema: dict[str, Any]) -> dict[str, Any]:
    """The Action's JSON schema without `metadata` (not the model's to set)."""
    schema = {k: v for k, v in action_schema.items() if k not in ("title", "description")}
    schema["properties"] = {k: v for k, v in action_schema.get("properties", {}).items() if k != "metadata"}
    if "required" in schema:
        schema["required"] = [name for name in schema["required"] if name != "metadata"]
    schema.setdefault("type", "object")
    return schema


# -- sessions: one episode's connection to the environment ------------------------------------------------------


@dataclass
class Observed:
    observation: dict[str, Any]
    reward: float | None
    done: bool


class Session(Protocol):
    async def reset(self, **kwargs: Any) -> Observed: ...

    async def step(self, action: dict[str, Any]) -> Observed: ...

    async def close(self) -> None: ...


def _observed(observation: Any) -> Observed:
    """The observation as a server would send it (JSON types; reward and done beside it, not in it)."""
    data = observation.model_dump(mode="json", exclude={"reward", "done"})
    reward = observation.reward
    return Observed(data, None if reward is None else float(reward), bool(observation.done))


class InProcessSession:
    """The environment class, instantiated for this episode; its blocking calls run in a thread."""

    def __init__(self, cls: type, params: dict[str, Any], action_cls: type):
        self.cls, self.params, self.action_cls = cls, params, action_cls
        self.env: Any = None

    async def reset(self, **kwargs: Any) -> Observed:
        # Built here, inside the episode (whose close runs whatever happens), not when the episodes are listed.
        self.env = await asyncio.to_thread(lambda: self.cls(**self.params))
        return _observed(await asyncio.to_thread(self.env.reset, **kwargs))

    async def step(self, action: dict[str, Any]) -> Observed:
        return _observed(await asyncio.to_thread(self.env.step, parse_action(action, self.action_cls)))

    async def close(self) -> None:
        if self.env is not None:
            await asyncio.to_thread(self.env.close)


def parse_action(action: dict[str, Any], action_cls: type) -> Any:
    """The Action, parsed as an OpenEnv server parses what a client sends (its `deserialize_action`)."""
    from openenv.core.env_server.serialization import deserialize_action
    from pydantic import ValidationError

    try:
        return deserialize_action(action, action_cls)
    except ValidationError as exc:
        raise ActionError(_validation_message(exc)) from None


def _validation_message(exc: Any) -> str:
    problems = []
    for error in exc.errors()[:3]:
        where = ".".join(str(part) for part in error.get("loc", ())) or "the action"
        problems.append(f"{where}: {error.get('msg')}")
    return "; ".join(problems)


class ClientSession:
    """A WebSocket session with an OpenEnv server (OpenEnv's own GenericEnvClient), opened for this episode."""

    def __init__(self, url: str):
        from openenv.core.generic_client import GenericEnvClient

        self.client = GenericEnvClient(base_url=url)

    @staticmethod
    def _observed(result: Any) -> Observed:
        reward = result.reward
        return Observed(dict(result.observation or {}), None if reward is None else float(reward), bool(result.done))

    async def reset(self, **kwargs: Any) -> Observed:
        await self.client.connect()
        return self._observed(await self.client.reset(**kwargs))

    async def step(self, action: dict[str, Any]) -> Observed:
        try:
            return self._observed(await self.client.step(action))
        except RuntimeError as exc:
            if "(code: VALIDATION_ERROR)" in str(exc):  # the server's words for an action it cannot parse
                raise ActionError(str(exc).removeprefix("Server error: ")) from None
            raise

    async def close(self) -> None:
        await self.client.close()


# -- the environment retrain's episodes talk to ------------------------------------------------------------------


class OpenEnvEnvironment:
    """One OpenEnv episode (see the module docstring)."""

    def __init__(self, session: Session, action_schema: dict[str, Any], spec: OpenEnvSpec,
                 validate: Any = None, limit: asyncio.Semaphore | None = None):
        self.session = session
        self.spec = spec
        self.action_schema = action_schema
        self.validate = validate  # a client-side check for server sessions (jsonschema), or None
        self.render = import_attribute(spec.render, what="OpenEnv observation renderer") if spec.render \
            else default_render
        self.limit = limit
        self._held = False
        self.tools: list[Tool] = []
        if spec.action_format == "tool_call":
            self.tools = [Tool(tool_name(action_schema), f"Your move: a {action_schema.get('title', 'action')}.",
                               offered_schema(action_schema), _not_called)]

    async def reset(self, row: dict[str, Any]) -> list[Message]:
        if self.limit is not None:
            await self.limit.acquire()
            self._held = True
        options = dict(self.spec.reset_options)
        if row.get("seed") is not None:
            options["seed"] = int(row["seed"])
        first = await self.session.reset(**options)
        text = str(self.render(first.observation))
        messages = opening_messages(row) if row.get("prompt") else []
        if messages and messages[-1].role == "user":  # the row's instructions, then the first observation
            messages[-1] = Message("user", f"{messages[-1].content}\n\n{text}" if messages[-1].content else text)
        else:
            messages.append(Message("user", text))
        return messages

    def _action(self, action: Message) -> dict[str, Any]:
        if self.spec.action_format == "tool_call":
            calls, errors = parse_tool_calls(action.content)
            action.tool_calls = calls
            if errors:
                raise ActionError(errors[0])
            name = self.tools[0].name
            if len(calls) != 1 or calls[0].name != name:
                called = ", ".join(call.name for call in calls) or "no tool"
                raise ActionError(f"the reply must call the tool '{name}' once; it called {called}")
            data = dict(calls[0].arguments)
            if _depth(data) > MAX_JSON_DEPTH:
                raise ActionError(f"the call's arguments nest deeper than {MAX_JSON_DEPTH} levels")
        else:
            data = json_object_in(action.content)
        if "metadata" in data:
            raise ActionError("`metadata` is not the model's to set")
        if self.validate is not None:
            self.validate(data)
        return data

    async def step(self, action: Message) -> StepResult:
        try:
            data = self._action(action)
            observed = await self.session.step(data)
        except ActionError as exc:
            example = _example(self.action_schema)
            hint = "" if self.spec.action_format == "tool_call" else f" (expected a JSON object like {example})"
            return StepResult([], done=True, info={"episode_error": f"not an action of this environment: {exc}{hint}"})
        except Exception as exc:  # the environment failed on a well-formed action: the model must not stop the run
            return StepResult([], done=True, info={
                "episode_error": f"the environment failed on this action: {type(exc).__name__}: {str(exc)[:300]}"})
        if observed.reward is not None and not math.isfinite(observed.reward):
            return StepResult([], done=True, info={
                "episode_error": f"the environment returned a reward of {observed.reward} for this action"})
        text = str(self.render(observed.observation))
        reply = Message("tool", text) if self.spec.action_format == "tool_call" else Message("user", text)
        return StepResult([reply], done=observed.done, reward=observed.reward)

    async def close(self) -> None:
        try:
            await self.session.close()
        finally:
            if self._held and self.limit is not None:
                self.limit.release()
                self._held = False


async def _not_called(arguments: dict[str, Any]) -> str:
    raise RuntimeError("the OpenEnv action tool is read by the environment, not called")


def _schema_validator(schema: dict[str, Any]) -> Any:
    import jsonschema

    checker = jsonschema.Draft202012Validator(schema)

    def validate(data: dict[str, Any]) -> None:
        errors = sorted(checker.iter_errors(data), key=lambda e: list(e.path))
        if errors:
            raise ActionError("; ".join(f"{'.'.join(str(p) for p in e.path) or 'the action'}: {e.message}"
                                        for e in errors[:3]))

    return validate


# -- the run's side: what all episodes share ---------------------------------------------------------------------


class OpenEnvProvider:
    """Builds each episode's OpenEnvEnvironment; with `serve`, owns the server process. `start` before the first
    episode (in the loop that runs them), `close` after the last, also on failure."""

    def __init__(self, spec: OpenEnvSpec, log_dir: Path | None = None):
        self.spec = spec
        self.log_dir = log_dir  # where a served environment's log goes (default: a temporary folder)
        self._temporary_log_dir: Path | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.url = spec.url
        self.action_schema: dict[str, Any] = {}
        self.cls: type | None = None
        self.action_cls: type | None = None
        self.limit = asyncio.Semaphore(spec.max_sessions) if spec.max_sessions else None

    async def start(self) -> None:
        if self.spec.environment is not None:
            self.cls = environment_class(self.spec.environment)
            self.action_cls = action_class(self.cls)
            self.action_schema = self.action_cls.model_json_schema()  # type: ignore[attr-defined]
            if self.spec.serve and self.server is None:
                self.url = await asyncio.to_thread(self._serve)
        else:
            self.action_schema = await asyncio.to_thread(_server_action_schema, str(self.url))

    def _serve(self) -> str:
        """Start `python -m retrain.environments.openenv_server` on a free port; its first line says which."""
        import tempfile

        if self.log_dir is None:  # removed at close, after a clean stop; named in the error when the start fails
            self.log_dir = self._temporary_log_dir = Path(tempfile.mkdtemp(prefix="retrain-openenv-"))
        log = Path(self.log_dir) / "openenv_server.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        errors = log.open("ab")
        command = [sys.executable, "-m", "retrain.environments.openenv_server", str(self.spec.environment),
                   json.dumps(self.spec.params)]
        with errors:
            self.server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, start_new_session=True)
        assert self.server.stdout is not None
        line = _read_line(self.server, START_TIMEOUT_SECONDS)
        self.server.stdout.close()  # nothing else comes that way (the server sends the rest to its log)
        match = re.match(r"^openenv server listening on port (\d+)$", line.strip())
        if not match:
            self._stop_server()
            self._temporary_log_dir = None  # kept: the error names it
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise RuntimeError(f"the OpenEnv server for '{self.spec.environment}' did not start (its log: {log})"
                               + (f"\n--- its log ---\n{tail}" if tail.strip() else ""))
        return f"http://127.0.0.1:{match.group(1)}"

    def new(self) -> OpenEnvEnvironment:
        if self.url is not None:
            # Checked before it is sent (the server's own answer says only "Invalid message"): with the Action class
            # when retrain serves it (the same words as in this process), else with the server's JSON schema.
            action_cls = self.action_cls
            validate = (lambda data: parse_action(data, action_cls)) if action_cls is not None \
                else _schema_validator(self.action_schema)
            return OpenEnvEnvironment(ClientSession(self.url), self.action_schema, self.spec, validate=validate,
                                      limit=self.limit)
        assert self.cls is not None and self.action_cls is not None, "start() first"
        return OpenEnvEnvironment(InProcessSession(self.cls, self.spec.params, self.action_cls), self.action_schema,
                                  self.spec)

    def _stop_server(self) -> None:
        server, self.server = self.server, None
        if server is None or server.poll() is not None:
            return
        try:
            os.killpg(server.pid, signal.SIGTERM)  # the server's own session: it and whatever it started
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)

    async def close(self) -> None:
        await asyncio.to_thread(self._stop_server)
        if self._temporary_log_dir is not None:
            import shutil

            shutil.rmtree(self._temporary_log_dir, ignore_errors=True)
            self._temporary_log_dir = None


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    import selectors

    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data and time.monotonic() < deadline and process.poll() is None:
        if selector.select(timeout=0.2):
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            data += chunk
    selector.close()
    return data.decode(errors="replace").split("\n", 1)[0]


def _server_action_schema(url: str) -> dict[str, Any]:
    """The Action's JSON schema from the server's /schema endpoint."""
    import httpx

    base = re.sub(r"^ws", "http", url.rstrip("/"))
    try:
        response = httpx.get(f"{base}/schema", timeout=15)
        response.raise_for_status()
        schema = response.json()["action"]
    except Exception as exc:
        raise RuntimeError(f"openenv.url {url}: could not read the environment's action schema from {base}/schema "
                           f"({type(exc).__name__}: {exc}); is an OpenEnv server running there?") from None
    if not isinstance(schema, dict):
        raise RuntimeError(f"openenv.url {url}: /schema gave no action schema")
    return schema
