"""A small OpenAI-compatible chat server for tests and benchmarks of the LLM judge.

    python -m retrain.testing.openai_server --model retrain:tiny --port 8000

It serves a transformers causal LM (any reference retrain accepts: `retrain:tiny`, a folder, a
hub id; `--model none` serves only the scripted behaviours) at `POST /v1/chat/completions` and
lists it at `GET /v1/models`. The request's `model` field selects a deterministic behaviour:

- `echo-score:<x>`  replies "Score: <x>" at once, without the model.
- `echo:<text>`     replies <text> verbatim.
- `echo-prompt`     replies the last message's content (what the judge was sent).
- `garbage`         replies text with no number and no yes/no in it.
- `slow:<seconds>`  waits that long (without blocking other requests), then replies "Score: 5".
- `flaky:<n>`       HTTP 500 to the first n requests of each distinct conversation, then "Score: 8".
- `ratelimit:<n>`   HTTP 429 (Retry-After: 0) to the first n requests of each conversation, then "Score: 6".
- `unauthorized`    HTTP 401, as OpenAI answers a wrong key.
- `require-key:<k>` HTTP 401 unless the request carries `Authorization: Bearer <k>`, else "Score: 9".
- `status:<code>`   that HTTP status with an OpenAI-style error body.
- anything else     the served model generates: greedy, up to `max_tokens` (default 16) new tokens,
  one request at a time, in a worker thread.

`GET /stats` counts requests, in flight and at most in flight, in total and per `model` value;
`POST /stats/reset` zeroes them. `serve()` starts the server as a subprocess for a `with` block.
"""


import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from retrain.core.ports import free_port

GARBAGE_REPLY = "Purple elephants dance quietly under the moonlit bridge tonight."
DEFAULT_MAX_TOKENS = 16


@dataclass
class _Counter:
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "in_flight": self.in_flight, "max_in_flight": self.max_in_flight}


@dataclass
class _Stats:
    total: _Counter = field(default_factory=_Counter)
    by_model: dict[str, _Counter] = field(default_factory=dict)
    failures_left: dict[tuple[str, str], int] = field(default_factory=dict)  # (model, conversation) -> n

    def enter(self, model: str) -> None:
        for counter in (self.total, self.by_model.setdefault(model, _Counter())):
            counter.requests += 1
            counter.in_flight += 1
            counter.max_in_flight = max(counter.max_in_flight, counter.in_flight)

    def leave(self, model: str) -> None:
        self.total.in_flight -= 1
        self.by_model[model].in_flight -= 1

    def to_dict(self) -> dict[str, Any]:
        return {**self.total.to_dict(), "by_model": {name: c.to_dict() for name, c in self.by_model.items()}}


class _LocalModel:
    """A transformers causal LM, loaded the way retrain loads models; generation in a worker thread."""

    def __init__(self, reference: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from retrain.models import resolve_model

        path = resolve_model(reference)
        self.name = reference
        self.tokenizer: Any = AutoTokenizer.from_pretrained(path)
        self.model: Any = AutoModelForCausalLM.from_pretrained(path)
        self.model.eval()
        self._torch = torch
        self._lock = threading.Lock()

    def generate(self, messages: list[dict[str, Any]], max_tokens: int) -> tuple[str, int, int, str]:
        """Greedy reply: (text, prompt tokens, completion tokens, finish reason)."""
        tokenizer = self.tokenizer
        chat = [{"role": m.get("role", "user"), "content": str(m.get("content") or "")} for m in messages]
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)
            ids = list(ids["input_ids"])
        else:
            ids = tokenizer("\n".join(m["content"] for m in chat))["input_ids"]
        limit = getattr(self.model.config, "max_position_embeddings", 2048) - max_tokens
        ids = ids[-max(limit, 1):]
        with self._lock, self._torch.no_grad():
            inputs = self._torch.tensor([ids])
            output = self.model.generate(
                input_ids=inputs, attention_mask=self._torch.ones_like(inputs), max_new_tokens=max_tokens,
                do_sample=False, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
        new = output[0, len(ids):].tolist()
        finish = "stop" if new and new[-1] == tokenizer.eos_token_id else "length"
        return tokenizer.decode(new, skip_special_tokens=True), len(ids), len(new), finish


def _conversation_key(messages: Any) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()


def _error(status: int, message: str, kind: str = "server_error", code: str | None = None) -> Any:
    from fastapi.responses import JSONResponse

    headers = {"Retry-After": "0"} if status == 429 else None
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}},
                        status_code=status, headers=headers)


def _completion(model: str, text: str, prompt_tokens: int = 0, completion_tokens: int = 0,
                finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def create_app(model: str | None = "retrain:tiny") -> Any:
    """The FastAPI app; loads `model` now (None: scripted behaviours only)."""
    from fastapi import FastAPI, Request

    local = _LocalModel(model) if model else None
    stats = _Stats()
    app = FastAPI(title="retrain test OpenAI-compatible server")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        names = [local.name] if local else []
        return {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "retrain"} for n in names]}

    @app.get("/stats")
    async def get_stats() -> dict[str, Any]:
        return stats.to_dict()

    @app.post("/stats/reset")
    async def reset_stats() -> dict[str, Any]:
        stats.total, stats.by_model = _Counter(), {}
        stats.failures_left.clear()
        return stats.to_dict()

    async def wait_or_disconnect(request: Request, seconds: float) -> bool:
        """Sleep; False as soon as the client hangs up (so it no longer counts as in flight)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.02))
            if await request.is_disconnected():
                return False
        return True

    async def respond(request: Request, body: dict[str, Any]) -> Any:
        name = str(body.get("model", ""))
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' must be a non-empty list", "invalid_request_error")
        behaviour, _, argument = name.partition(":")
        if behaviour == "echo-score":
            return _completion(name, f"Score: {argument}")
        if behaviour == "echo":
            return _completion(name, argument)
        if name == "echo-prompt":
            return _completion(name, str(messages[-1].get("content") if isinstance(messages[-1], dict) else ""))
        if name == "garbage":
            return _completion(name, GARBAGE_REPLY)
        if behaviour == "slow":
            if not await wait_or_disconnect(request, float(argument)):
                return _error(499, "client closed the request")
            return _completion(name, "Score: 5")
        if behaviour in ("flaky", "ratelimit"):
            key = (name, _conversation_key(messages))
            left = stats.failures_left.setdefault(key, int(argument))
            if left > 0:
                stats.failures_left[key] = left - 1
                if behaviour == "flaky":
                    return _error(500, "flaky: failing on purpose")
                return _error(429, "Rate limit reached; retry after 0s", "requests", "rate_limit_exceeded")
            return _completion(name, "Score: 8" if behaviour == "flaky" else "Score: 6")
        if name == "unauthorized":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        if behaviour == "require-key":
            if request.headers.get("authorization") != f"Bearer {argument}":
                return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
            return _completion(name, "Score: 9")
        if behaviour == "status":
            return _error(int(argument), f"status {argument} on purpose")
        if local is None:
            return _error(404, f"the model '{name}' does not exist (this server has no model loaded)",
                          "invalid_request_error", "model_not_found")
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_MAX_TOKENS)
        text, prompt_tokens, completion_tokens, finish = await asyncio.to_thread(
            local.generate, messages, max(1, min(max_tokens, 512))
        )
        return _completion(name, text, prompt_tokens, completion_tokens, finish)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON", "invalid_request_error")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object", "invalid_request_error")
        name = str(body.get("model", ""))
        stats.enter(name)
        try:
            return await respond(request, body)
        except ValueError as exc:  # a malformed behaviour argument, e.g. slow:abc
            return _error(400, f"bad behaviour argument in model {name!r}: {exc}", "invalid_request_error")
        finally:
            stats.leave(name)

    return app


# -- running it ----------------------------------------------------------------------------------


@contextlib.contextmanager
def serve(model: str | None = "retrain:tiny", port: int | None = None, startup_timeout: float = 300.0) -> Iterator[str]:
    """Run the server in a subprocess for the `with` block; yields its base URL (`http://127.0.0.1:PORT/v1`).

    Waits until it answers (the model is loaded before it listens); stops it by pid on exit.
    `model=None` serves only the scripted behaviours (starts in about a second).
    """
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    command = [sys.executable, "-m", "retrain.testing.openai_server", "--model", model or "none", "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-3000:]
                    raise RuntimeError(f"the OpenAI-compatible test server exited with {process.returncode}:\n{tail}")
                try:
                    with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the OpenAI-compatible test server did not answer within {startup_timeout:g}s")
                time.sleep(0.1)
            yield base_url
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m retrain.testing.openai_server", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="retrain:tiny", help="model reference to serve; 'none' for none")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    import uvicorn

    app = create_app(None if args.model.lower() == "none" else args.model)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
