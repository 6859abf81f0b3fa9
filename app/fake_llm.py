"""A simulated OpenAI-compatible LLM upstream, over a real socket, for tests, demos and load runs.

It answers ``POST`` on any path ending in ``/chat/completions`` (so it can stand in for Kimi at
``http://H:P/v1`` and GLM at ``http://H:P/api/paas/v4`` at once), as JSON or as SSE, with usage
numbers derived from the prompt's length, in the dialect of the provider the daemon routes the
model to (``app.providers.table``): Kimi's (usage inside ``choices[0]``, ``usage.cached_tokens``)
for ``kimi-*``/``moonshot-*``; the OpenAI/GLM one (a final usage chunk,
``prompt_tokens_details.cached_tokens``) for the rest.

The answer is deterministic for a given prompt and never quotes it, so a test can check that no
prompt text leaked anywhere. Faults and delays are set at start (``FakeLLMConfig``) or at run time:

- ``POST /_fake/faults``  ``{"status": 429|500|503, "count": N, "retry_after": secs,
  "echo_key": false}``: the next N completions fail that way; with ``"echo_key": true`` the error
  body's ``error.code`` is the request's bearer token, as a careless gateway would echo it;
- ``POST /_fake/config``  ``{"latency_ms", "ttft_ms", "chunk_delay_ms", "error_rate",
  "answer_bytes", "raw_separator_text", "reasoning_tokens"}``;
- ``GET  /_fake/stats``   counts of requests received, completed, failed, answers written in
  pieces (every stream, and JSON answers padded by ``answer_bytes``) and how many of those the
  client abandoned (how a test proves a cancel or a refusal reached the upstream), and faults
  still queued;
- ``POST /_fake/reset``   zero the counts and drop queued faults (the config is kept).

Hostile answers, for proving the daemon's bounds: ``answer_bytes`` pads the answer's text to about
that many bytes with filler, made while it is sent (many SSE chunks, or a JSON body written in
pieces), so the fake never holds a large answer; ``raw_separator_text`` adds raw U+2028, U+2029
and U+0085 (unescaped, as JSON allows) to the answer's text (``SEPARATOR_TEXT``).

A thinking model: ``reasoning_tokens`` > 0 makes the fake reason that many tokens (words,
``reasoning_for``) before it answers, as GLM-4.5/4.6 and Kimi's thinking models do: streamed as
``delta.reasoning_content`` chunks ahead of the answer's, or as ``message.reasoning_content``, and
reported in usage as ``completion_tokens_details.reasoning_tokens``, counted inside
``completion_tokens``. Like the answer, the reasoning never quotes the prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from aiohttp import web

from app.providers.table import GLM, ProviderEntry, entry_for

COMPLETIONS_SUFFIX = "/chat/completions"
_WORDS = ("signal", "river", "lantern", "orbit", "quartz", "meadow", "cobalt", "harbor", "ember",
          "tundra", "velvet", "prism", "summit", "delta", "willow", "falcon", "cipher", "dune")
_ANSWER_WORDS = 24
_CHUNK_WORDS = 4
# Raw separators that str.splitlines() breaks on but SSE and JSON do not: an answer may hold them.
SEPARATOR_TEXT = " one\u2028two\u2029three\u0085four"
_FILLER = "filler " * 2340  # about 16 KiB: one streamed piece of a padded answer
_CONTENT_SLOT = "\x00content\x00"  # where the content goes in a JSON body written in pieces


@dataclass
class FakeLLMConfig:
    """Behaviour of the fake upstream. Delays are in milliseconds; ``error_rate`` in [0, 1]."""

    latency_ms: float = 0.0  # before any answer (and before the stream's headers)
    ttft_ms: float = 0.0  # streaming: before the first chunk
    chunk_delay_ms: float = 0.0  # streaming: between chunks
    error_rate: float = 0.0  # random 500s, or 429s with Retry-After
    retry_after_secs: float = 1.0  # Retry-After sent with random 429s
    answer_bytes: int = 0  # pad the answer's text to about this many bytes (0: no padding)
    raw_separator_text: bool = False  # add raw U+2028, U+2029 and U+0085 to the answer's text
    reasoning_tokens: int = 0  # reason this many tokens before answering (0: no reasoning)
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
    echo_key: bool = False


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


def reasoning_for(messages: list[dict[str, Any]], tokens: int) -> list[str]:
    """The reasoning's words (a token each) for these messages: ``tokens`` of them, deterministic,
    never quoting the prompt, and unlike any answer's (they open with ``Reasoning``)."""
    if tokens <= 0:
        return []
    digest = hashlib.sha256(b"reasoning:" + json.dumps(messages, sort_keys=True).encode()).digest()
    rng = random.Random(digest)
    words = ["Reasoning", digest[:4].hex() + ":"]
    words += [rng.choice(_WORDS) for _ in range(tokens - len(words))]
    return words[:tokens]


def usage_for(model: str, messages: list[dict[str, Any]], output_tokens: int,
              reasoning_tokens: int = 0) -> dict[str, Any]:
    """Usage in the dialect of the provider that serves ``model``; cached tokens are non-zero,
    reasoning tokens (when any) are counted inside the completion tokens and detailed."""
    prompt = sum(count_tokens(str(m.get("content", ""))) + 4 for m in messages)
    cached = prompt // 2
    completion = output_tokens + reasoning_tokens
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion}
    if _dialect(model).cached_tokens_top_level:
        usage["cached_tokens"] = cached
    else:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning_tokens:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return usage


def _dialect(model: str) -> ProviderEntry:
    """The table's entry whose dialect ``model`` is answered in; unknown models get GLM's."""
    return entry_for(model) or GLM


def content_pieces(words: list[str], answer_bytes: int = 0,
                   raw_separators: bool = False) -> Iterator[str]:
    """The answer's text in the pieces it is streamed in: the words a few at a time, then
    ``SEPARATOR_TEXT`` if asked, then filler until about ``answer_bytes`` bytes were made.
    Lazy, so a padded answer is made while it is sent and never held whole."""
    pieces = [" ".join(words[i:i + _CHUNK_WORDS]) + " " for i in range(0, len(words), _CHUNK_WORDS)]
    if pieces:
        pieces[-1] = pieces[-1].rstrip()
    if raw_separators:
        pieces.append(SEPARATOR_TEXT)
    made = 0
    for piece in pieces:
        made += len(piece.encode())
        yield piece
    while made < answer_bytes:
        piece = _FILLER[:answer_bytes - made]
        made += len(piece)
        yield piece


def completion_body(envelope: dict[str, Any], pieces: Iterable[str]) -> Iterator[bytes]:
    """A JSON body in pieces: ``envelope`` with its ``_CONTENT_SLOT`` string replaced by the
    concatenated ``pieces``, each encoded as it comes (raw non-ASCII, as JSON allows)."""
    head, tail = json.dumps(envelope, ensure_ascii=False).split(json.dumps(_CONTENT_SLOT), 1)
    yield (head + '"').encode()
    for piece in pieces:
        yield json.dumps(piece, ensure_ascii=False)[1:-1].encode()
    yield ('"' + tail).encode()


# --- HTTP handlers ---------------------------------------------------------------------------

async def _completions(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    state.stats.received += 1
    token = _bearer_token(request)
    if not token:
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
        headers = ({"Retry-After": _format_secs(fault.retry_after)}
                   if fault.retry_after is not None else {})
        kind = "rate_limit_reached_error" if fault.status == 429 else "server_error"
        return _error(fault.status, kind, "simulated failure", headers,
                      code=token if fault.echo_key else None)

    max_tokens = body.get("max_tokens")
    words, finish = answer_for(messages, max_tokens if isinstance(max_tokens, int) else None)
    reasoning = reasoning_for(messages, config.reasoning_tokens)
    usage = usage_for(model, messages, output_tokens=len(words), reasoning_tokens=len(reasoning))
    state.ids += 1
    response_id = f"chatcmpl-fake-{state.ids}"
    pieces = content_pieces(words, config.answer_bytes, config.raw_separator_text)
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = _sse_events(config, model, response_id, _deltas(content_pieces(reasoning), pieces),
                             finish, usage, include_usage)
        return await _send_in_pieces(request, state, "text/event-stream", events)
    message: dict[str, Any] = {"role": "assistant", "content": _CONTENT_SLOT}
    if reasoning:
        message["reasoning_content"] = " ".join(reasoning)
    json_body = completion_body({
        "id": response_id, "object": "chat.completion", "created": int(time.time()),
        "model": model, "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }, pieces)
    if config.answer_bytes > 0:
        return await _send_in_pieces(request, state, "application/json", _aiter(json_body))
    state.stats.completed += 1  # an ordinary answer keeps its Content-Length
    return web.Response(body=b"".join(json_body), content_type="application/json")


def _deltas(reasoning: Iterable[str], pieces: Iterable[str]) -> Iterator[dict[str, str]]:
    """The streamed deltas of one answer: its reasoning's pieces first, then its text's."""
    for piece in reasoning:
        yield {"reasoning_content": piece}
    for piece in pieces:
        yield {"content": piece}


async def _sse_events(config: FakeLLMConfig, model: str, response_id: str,
                      deltas: Iterable[dict[str, str]], finish: str, usage: dict[str, Any],
                      include_usage: bool) -> AsyncIterator[bytes]:
    """The SSE events of one answer, with the configured delays between them."""
    created = int(time.time())

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {"id": response_id, "object": "chat.completion.chunk", "created": created,
                 "model": model, "choices": choices, **extra}
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()

    if config.ttft_ms > 0:
        await asyncio.sleep(config.ttft_ms / 1000)
    yield event([{"index": 0, "delta": {"role": "assistant", "content": ""},
                  "finish_reason": None}])
    for delta in deltas:
        if config.chunk_delay_ms > 0:
            await asyncio.sleep(config.chunk_delay_ms / 1000)
        yield event([{"index": 0, "delta": delta, "finish_reason": None}])
    last: dict[str, Any] = {"index": 0, "delta": {}, "finish_reason": finish}
    if _dialect(model).usage_in_last_choice:
        last["usage"] = usage  # Kimi's dialect, sent whether asked or not
        yield event([last])
    else:
        yield event([last])
        if include_usage:
            yield event([], usage=usage)
    yield b"data: [DONE]\n\n"


async def _send_in_pieces(request: web.Request, state: _State, content_type: str,
                          pieces: AsyncIterator[bytes]) -> web.StreamResponse:
    """Write an answer piece by piece, counting it as abandoned if the client goes away."""
    response = web.StreamResponse(headers={"Content-Type": content_type,
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    state.stats.streams_started += 1
    try:
        async for piece in pieces:
            await response.write(piece)
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        # ClientConnectionResetError is a ConnectionResetError: the client closed the stream.
        state.stats.streams_aborted += 1
        raise
    state.stats.completed += 1
    return response


async def _aiter(items: Iterable[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def _set_faults(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    try:
        body = await request.json()
        status = int(body["status"])
        count = int(body.get("count", 1))
        retry_after = body.get("retry_after")
        retry_after = None if retry_after is None else float(retry_after)
        echo_key = _strict_bool(body.get("echo_key", False))
    except (ValueError, KeyError, TypeError):
        return _error(400, "invalid_request_error",
                      'expected {"status", "count", "retry_after", "echo_key"}')
    if not 400 <= status <= 599 or count < 1:
        return _error(400, "invalid_request_error", "status must be 4xx/5xx and count >= 1")
    state.faults.append(_Fault(status, count, retry_after, echo_key))
    return web.json_response({"queued": sum(f.remaining for f in state.faults)})


async def _set_config(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    try:
        body = await request.json()
        known = {f.name: _CONVERTERS[str(f.type)] for f in fields(FakeLLMConfig)
                 if f.name != "seed"}
        updates = {k: known[k](v) for k, v in body.items() if k in known}
    except (ValueError, TypeError, AttributeError):
        return _error(400, "invalid_request_error",
                      "expected a JSON object of numbers and booleans")
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


def _next_fault(state: _State) -> _Fault | None:
    while state.faults:
        fault = state.faults[0]
        if fault.remaining > 0:
            fault.remaining -= 1
            if fault.remaining == 0:
                state.faults.popleft()
            return fault
        state.faults.popleft()
    if state.config.error_rate > 0 and state.rng.random() < state.config.error_rate:
        if state.rng.random() < 0.5:
            return _Fault(429, 1, state.config.retry_after_secs)
        return _Fault(500, 1, None)
    return None


def _bearer_token(request: web.Request) -> str:
    """The request's bearer token, or "" when there is none."""
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() if auth.startswith("Bearer ") else ""


def _strict_bool(value: Any) -> bool:
    """A JSON boolean; anything else (``"false"``, 0) is refused rather than guessed at."""
    if not isinstance(value, bool):
        raise TypeError("expected true or false")
    return value


_CONVERTERS: dict[str, Callable[[Any], Any]] = {"float": float, "int": int, "bool": _strict_bool}


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None, *,
           code: str | None = None) -> web.Response:
    error: dict[str, Any] = {"type": kind, "message": message}
    if code is not None:
        error["code"] = code
    return web.json_response({"error": error}, status=status, headers=headers)


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
                         config: FakeLLMConfig | None = None, *,
                         shutdown_timeout: float = 60.0) -> tuple[web.AppRunner, int]:
    """Start serving in the running loop; returns the runner (``await runner.cleanup()`` to stop,
    which gives answers in flight ``shutdown_timeout`` s to finish) and the bound port (a free
    one when ``port`` is 0)."""
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, bound


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STOP_GRACE_SECS = 0.25  # what answers in flight get once a stop signal came; then they are cut


def run_fake_llm(host: str = "127.0.0.1", port: int = 8090,
                 config: FakeLLMConfig | None = None) -> None:
    """Serve until SIGTERM or SIGINT (the ``exai fake-llm`` command), then stop within about a
    second: answers in flight get ``STOP_GRACE_SECS`` to finish before their connections close."""
    asyncio.run(_serve_until_signalled(host, port, config))


async def _serve_until_signalled(host: str, port: int, config: FakeLLMConfig | None) -> None:
    loop = asyncio.get_running_loop()
    received: list[signal.Signals] = []
    stop = asyncio.Event()

    def stopping(sig: signal.Signals) -> None:
        received.append(sig)
        stop.set()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stopping, sig)
    runner, bound = await start_fake_llm(host, port, config, shutdown_timeout=STOP_GRACE_SECS)
    print(f"fake LLM upstream on http://{host}:{bound} (POST .../chat/completions; /_fake/stats)",
          flush=True)
    try:
        await stop.wait()
    finally:
        started = time.monotonic()
        # Bounded even if a handler ignores its cancellation: the process is leaving anyway.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_GRACE_SECS + 1.0):
                await runner.cleanup()
        why = received[0].name if received else "stop"
        print(f"fake LLM upstream stopped ({why}) in {time.monotonic() - started:.2f} s",
              flush=True)
