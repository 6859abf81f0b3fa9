"""A simulated OpenAI-compatible LLM upstream, over a real socket, for tests, demos and load runs.

It answers ``POST`` on any path ending in ``/chat/completions`` (so it can stand in for Kimi at
``http://H:P/v1`` and GLM at ``http://H:P/api/paas/v4`` at once), as JSON or as SSE, with usage
numbers derived from the prompt's length. Models named ``kimi*``/``moonshot*`` get Kimi's dialect
(usage inside ``choices[0]``, ``usage.cached_tokens``); others get the OpenAI/GLM one
(a final usage chunk, ``prompt_tokens_details.cached_tokens``).

The answer is deterministic for a given prompt and never quotes it, so a test can check that no
prompt text leaked anywhere. Faults and delays are set at start (``FakeLLMConfig``) or at run time:

- ``POST /_fake/faults``  ``{"status": 429|500|503, "count": N, "retry_after": secs}``:
  the next N completions fail that way;
- ``POST /_fake/config``  ``{"latency_ms", "ttft_ms", "chunk_delay_ms", "error_rate"}``;
- ``GET  /_fake/stats``   counts of requests received, completed, failed, streams aborted by the
  client (how a test proves a cancel reached the upstream), and faults still queued;
- ``POST /_fake/reset``   zero the counts and drop queued faults.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from aiohttp import web

COMPLETIONS_SUFFIX = "/chat/completions"
_WORDS = ("signal", "river", "lantern", "orbit", "quartz", "meadow", "cobalt", "harbor", "ember",
          "tundra", "velvet", "prism", "summit", "delta", "willow", "falcon", "cipher", "dune")
_ANSWER_WORDS = 24
_CHUNK_WORDS = 4


@dataclass
class FakeLLMConfig:
    """Behaviour of the fake upstream. Delays are in milliseconds; ``error_rate`` in [0, 1]."""

    latency_ms: float = 0.0  # before any answer (and before the stream's headers)
    ttft_ms: float = 0.0  # streaming: before the first chunk
    chunk_delay_ms: float = 0.0  # streaming: between chunks
    error_rate: float = 0.0  # random 500s, or 429s with Retry-After
    retry_after_secs: float = 1.0  # Retry-After sent with random 429s
    seed: int | None = None


@dataclass
class FakeStats:
    received: int = 0
    completed: int = 0
    failed: int = 0
    unauthorized: int = 0
    streams_started: int = 0
    streams_aborted: int = 0


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: float | None


@dataclass
class _State:
    config: FakeLLMConfig
    rng: random.Random
    stats: FakeStats = field(default_factory=FakeStats)
    faults: deque[_Fault] = field(default_factory=deque)
    ids: int = 0


_STATE = web.AppKey("fake_llm_state", _State)


# --- the deterministic model -----------------------------------------------------------------

def count_tokens(text: str) -> int:
    """A stand-in tokenizer: about four characters per token, at least one."""
    return max(1, (len(text) + 3) // 4)


def answer_for(messages: list[dict[str, Any]], max_tokens: int | None) -> tuple[list[str], str]:
    """The answer's words for these messages, and the finish reason ("length" when cut short)."""
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).digest()
    rng = random.Random(digest)
    words = ["Simulated", "answer", digest[:4].hex() + ":"]
    words += [rng.choice(_WORDS) for _ in range(_ANSWER_WORDS - len(words))]
    if max_tokens is not None and max_tokens < len(words):
        return words[:max(max_tokens, 0)], "length"
    return words, "stop"


def usage_for(model: str, messages: list[dict[str, Any]], output_tokens: int) -> dict[str, Any]:
    """Usage in the dialect of the provider that serves ``model``; cached tokens are non-zero."""
    prompt = sum(count_tokens(str(m.get("content", ""))) + 4 for m in messages)
    cached = prompt // 2
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": output_tokens,
                             "total_tokens": prompt + output_tokens}
    if is_kimi(model):
        usage["cached_tokens"] = cached
    else:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


def is_kimi(model: str) -> bool:
    return model.lower().startswith(("kimi", "moonshot"))


# --- HTTP handlers ---------------------------------------------------------------------------

async def _completions(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    state.stats.received += 1
    if not request.headers.get("Authorization", "").startswith("Bearer ") or \
            not request.headers["Authorization"][7:].strip():
        state.stats.unauthorized += 1
        state.stats.failed += 1
        return _error(401, "invalid_authentication_error", "missing or malformed bearer token")
    try:
        body = await request.json()
        model = body["model"]
        messages = body["messages"]
        if not isinstance(model, str) or not isinstance(messages, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        state.stats.failed += 1
        return _error(400, "invalid_request_error", "expected a JSON body with model and messages")

    config = state.config
    if config.latency_ms > 0:
        await asyncio.sleep(config.latency_ms / 1000)
    fault = _next_fault(state)
    if fault is not None:
        state.stats.failed += 1
        status, retry_after = fault
        headers = {"Retry-After": _format_secs(retry_after)} if retry_after is not None else {}
        kind = "rate_limit_reached_error" if status == 429 else "server_error"
        return _error(status, kind, "simulated failure", headers)

    max_tokens = body.get("max_tokens")
    words, finish = answer_for(messages, max_tokens if isinstance(max_tokens, int) else None)
    usage = usage_for(model, messages, output_tokens=len(words))
    state.ids += 1
    response_id = f"chatcmpl-fake-{state.ids}"
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await _stream(request, state, model, response_id, words, finish, usage,
                             include_usage)
    state.stats.completed += 1
    return web.json_response({
        "id": response_id, "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(words)},
                     "finish_reason": finish}],
        "usage": usage,
    })


async def _stream(request: web.Request, state: _State, model: str, response_id: str,
                  words: list[str], finish: str, usage: dict[str, Any],
                  include_usage: bool) -> web.StreamResponse:
    config = state.config
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    state.stats.streams_started += 1
    created = int(time.time())

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {"id": response_id, "object": "chat.completion.chunk", "created": created,
                 "model": model, "choices": choices, **extra}
        return f"data: {json.dumps(chunk)}\n\n".encode()

    pieces = [" ".join(words[i:i + _CHUNK_WORDS]) + " " for i in range(0, len(words), _CHUNK_WORDS)]
    if pieces:
        pieces[-1] = pieces[-1].rstrip()
    try:
        if config.ttft_ms > 0:
            await asyncio.sleep(config.ttft_ms / 1000)
        await response.write(event([{"index": 0, "delta": {"role": "assistant", "content": ""},
                                     "finish_reason": None}]))
        for piece in pieces:
            if config.chunk_delay_ms > 0:
                await asyncio.sleep(config.chunk_delay_ms / 1000)
            await response.write(event([{"index": 0, "delta": {"content": piece},
                                         "finish_reason": None}]))
        last: dict[str, Any] = {"index": 0, "delta": {}, "finish_reason": finish}
        if is_kimi(model):
            last["usage"] = usage  # Kimi's dialect, sent whether asked or not
            await response.write(event([last]))
        else:
            await response.write(event([last]))
            if include_usage:
                await response.write(event([], usage=usage))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        # ClientConnectionResetError is a ConnectionResetError: the client closed the stream.
        state.stats.streams_aborted += 1
        raise
    state.stats.completed += 1
    return response


async def _set_faults(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    try:
        body = await request.json()
        status = int(body["status"])
        count = int(body.get("count", 1))
        retry_after = body.get("retry_after")
        retry_after = None if retry_after is None else float(retry_after)
    except (ValueError, KeyError, TypeError):
        return _error(400, "invalid_request_error", 'expected {"status", "count", "retry_after"}')
    if not 400 <= status <= 599 or count < 1:
        return _error(400, "invalid_request_error", "status must be 4xx/5xx and count >= 1")
    state.faults.append(_Fault(status, count, retry_after))
    return web.json_response({"queued": sum(f.remaining for f in state.faults)})


async def _set_config(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    try:
        body = await request.json()
        known = {f.name for f in fields(FakeLLMConfig)} - {"seed"}
        updates = {k: float(v) for k, v in body.items() if k in known}
    except (ValueError, TypeError, AttributeError):
        return _error(400, "invalid_request_error", "expected a JSON object of numbers")
    for name, value in updates.items():
        setattr(state.config, name, value)
    return web.json_response(asdict(state.config))


async def _stats(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    return web.json_response({**asdict(state.stats),
                              "faults_queued": sum(f.remaining for f in state.faults)})


async def _reset(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    state.stats = FakeStats()
    state.faults.clear()
    return web.json_response({"ok": True})


async def _route(request: web.Request) -> web.StreamResponse:
    if request.method == "POST" and request.path.endswith(COMPLETIONS_SUFFIX):
        return await _completions(request)
    return _error(404, "not_found", "the fake serves POST .../chat/completions only")


def _next_fault(state: _State) -> tuple[int, float | None] | None:
    while state.faults:
        fault = state.faults[0]
        if fault.remaining > 0:
            fault.remaining -= 1
            if fault.remaining == 0:
                state.faults.popleft()
            return fault.status, fault.retry_after
        state.faults.popleft()
    if state.config.error_rate > 0 and state.rng.random() < state.config.error_rate:
        if state.rng.random() < 0.5:
            return 429, state.config.retry_after_secs
        return 500, None
    return None


def _error(status: int, kind: str, message: str,
           headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message}}, status=status,
                             headers=headers)


def _format_secs(secs: float) -> str:
    return str(int(secs)) if float(secs).is_integer() else f"{secs:g}"


# --- public API ------------------------------------------------------------------------------

def create_app(config: FakeLLMConfig | None = None) -> web.Application:
    """The fake upstream as an aiohttp application (control routes first, then any path)."""
    config = config or FakeLLMConfig()
    app = web.Application()
    app[_STATE] = _State(config=config, rng=random.Random(config.seed))
    app.router.add_post("/_fake/faults", _set_faults)
    app.router.add_post("/_fake/config", _set_config)
    app.router.add_get("/_fake/stats", _stats)
    app.router.add_post("/_fake/reset", _reset)
    app.router.add_route("*", "/{tail:.*}", _route)
    return app


async def start_fake_llm(host: str = "127.0.0.1", port: int = 0,
                         config: FakeLLMConfig | None = None) -> tuple[web.AppRunner, int]:
    """Start serving in the running loop; returns the runner (``await runner.cleanup()`` to stop)
    and the bound port (a free one when ``port`` is 0)."""
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, bound


def run_fake_llm(host: str = "127.0.0.1", port: int = 8090,
                 config: FakeLLMConfig | None = None) -> None:
    """Serve until interrupted (the ``exai fake-llm`` command)."""
    web.run_app(create_app(config), host=host, port=port, access_log=None,
                print=lambda _msg: print(f"fake LLM upstream on http://{host}:{port} "
                                         "(POST .../chat/completions; /_fake/stats)"))
