"""Frames that are legal JSON but poison what comes after: lone surrogates (text no UTF-8 encoder
takes), numbers too long for Python's int, control characters meant to forge console lines.

Each is answered with an error frame on a session that stays usable, and costs neither this
session nor any other its replies or telemetry. Last, a prompt Redis refuses to store: its text
must not come back out through error text (console, exported logs and spans, ``/health``).
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.protocol import CloseCode
from otel.logs import bridge_handler, console_handler
from tests.harness.redis_server import redis_process

from .conftest import TOKEN, eventually
from .raw_session import exchange, raw_session, still_usable

LONE = "\udc00"
HUGE = "9" * 5000  # past Python's 4300-digit limit for int <-> str


def _call(request_id: str, **fields) -> dict:
    return {"op": "call_tool", "request_id": request_id, "name": "chat",
            "arguments": {"prompt": "hi"}, **fields}


# json.dumps writes a lone surrogate as its \u escape: legal JSON, as a client would send it.
@pytest.mark.parametrize("frame, echoed", [
    ({"op": "ping", "request_id": f"a{LONE}"}, None),
    ({"op": "ping", "id": "\ud800"}, None),
    ({"op": f"pi{LONE}ng", "request_id": "r1"}, "r1"),
    ({"op": "call_tool", "request_id": "r2", "name": f"ch{LONE}at"}, "r2"),
    (_call("r3", correlation_id=LONE), "r3"),
    (_call("r4", arguments={"prompt": f"hello {LONE}"}), "r4"),
    (_call("r5", arguments={"prompt": "hi", LONE: 1}), "r5"),
    (_call("r6", _meta={"traceparent": [LONE]}), "r6"),
], ids=["request_id", "id", "op", "name", "correlation_id", "prompt", "key", "meta"])
async def test_lone_surrogate_anywhere_is_a_validation_error_and_the_session_lives(
        running, frame, echoed):
    async with raw_session(running.url) as ws:
        reply = await exchange(ws, json.dumps(frame))
        assert reply["op"] == "error" and reply["error"]["code"] == "VALIDATION_ERROR", reply
        assert reply.get("request_id") == echoed  # a poisonous id is never echoed
        await still_usable(ws)


@pytest.mark.parametrize("raw_id, decoded", [
    ("\\ud83d\\ude00", "\U0001f600"),  # a valid pair is one astral code point
    ("\\\\udc00", "\\udc00"),          # an escaped backslash, then plain letters
])
async def test_surrogate_pairs_and_lookalikes_are_accepted(running, raw_id, decoded):
    async with raw_session(running.url) as ws:
        reply = await exchange(ws, '{"op": "ping", "request_id": "%s"}' % raw_id)
        assert reply == {"op": "pong", "request_id": decoded}


async def test_upper_case_surrogate_escape_is_caught_too(running):
    async with raw_session(running.url) as ws:
        reply = await exchange(ws, '{"op": "ping", "request_id": "\\uDC00"}')
        assert reply["error"]["code"] == "VALIDATION_ERROR" and "request_id" not in reply
        await still_usable(ws)


async def test_a_poisonous_frame_costs_nobody_their_telemetry(running, capture):
    """The OTLP encoders run over the whole batch: one unencodable string would drop it all."""
    async with raw_session(running.url) as ws, raw_session(running.url) as other:
        for socket, request_id in ((ws, "before-1"), (other, "other-1")):
            reply = await exchange(socket, json.dumps(
                {"op": "call_tool", "request_id": request_id, "name": "no-such-tool"}))
            assert reply["error"]["code"] == "TOOL_NOT_FOUND"
        for poison in ({"op": "call_tool", "request_id": LONE, "name": "no-such-tool"},
                       {"op": "call_tool", "request_id": "p2", "name": f"no-such{LONE}"}):
            assert (await exchange(ws, json.dumps(poison)))["op"] == "error"
        reply = await exchange(ws, json.dumps(
            {"op": "call_tool", "request_id": "after-1", "name": "no-such-tool"}))
        assert reply["error"]["code"] == "TOOL_NOT_FOUND"

    def bodies() -> list[str]:
        return [str(record.log_record.body) for record in capture.logs()]

    await eventually(lambda: any("after-1" in body for body in bodies()))
    encode_logs(capture.logs()).SerializeToString()
    encode_spans(capture.spans()).SerializeToString()
    for request_id in ("before-1", "other-1", "after-1"):
        assert any(request_id in body for body in bodies()), request_id


@pytest.mark.parametrize("payload", [
    '{"op": "ping", "request_id": %s}' % HUGE,
    json.dumps(_call("r1", arguments={"prompt": "hi"})).replace('"hi"', '"hi", "max_tokens": '
                                                                 + HUGE),
    '{"op": "ping", "request_id": %s}' % ("9" * 129),
    '{"op": "ping", "request_id": -%s}' % ("9" * 128),
])
async def test_over_long_numbers_are_an_error_frame_not_a_closed_session(running, payload):
    async with raw_session(running.url) as ws:
        reply = await exchange(ws, payload)
        assert reply["op"] == "error" and reply["error"]["code"] == "VALIDATION_ERROR", reply
        assert "request_id" not in reply
        await still_usable(ws)


async def test_integer_ids_up_to_the_id_length_are_their_decimal_string(running):
    async with raw_session(running.url) as ws:
        reply = await exchange(ws, '{"op": "ping", "request_id": %s}' % ("9" * 128))
        assert reply == {"op": "pong", "request_id": "9" * 128}


async def _close_code_after_hello(url: str, payload: str) -> int | None:
    async with connect(url) as ws:
        await ws.send(payload)
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass
        return ws.close_code


@pytest.mark.parametrize("payload", [
    json.dumps({"op": "hello", "token": f"{TOKEN}{LONE}"}),
    json.dumps({"op": "hello", "token": TOKEN, "session_id": f"abc{LONE}"}),
    '{"op": "hello", "token": "%s", "n": %s}' % (TOKEN, HUGE),
], ids=["token", "session_id", "number"])
async def test_a_poisonous_hello_is_refused_with_a_close_code_not_a_crash(running, payload):
    assert await _close_code_after_hello(running.url, payload) == CloseCode.NOT_JSON


# --- the console -----------------------------------------------------------------------------

CONSOLE_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+ trace_id=\S+ ")


@pytest.fixture
def console(capture) -> Iterator[io.StringIO]:
    """What the daemon's own console handler (its filters and format) writes during the test."""
    handler = next(h for h in logging.getLogger().handlers
                   if getattr(h, "_exai", False) and isinstance(h, logging.StreamHandler))
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(previous)


FORGED = "\n2026-01-01 00:00:00,000 CRITICAL app.server trace_id=- FORGED\r\x1b[2K\u2028x"


async def test_client_text_cannot_forge_console_lines_or_exported_records(running, console,
                                                                          capture):
    async with raw_session(running.url) as ws:
        reply = await exchange(ws, json.dumps(
            {"op": "call_tool", "request_id": f"forge{FORGED}", "name": "no-such-tool"}))
        assert reply["request_id"] == f"forge{FORGED}"  # the client's id comes back unchanged
    await eventually(lambda: "forge" in console.getvalue())
    lines = console.getvalue().splitlines()
    assert lines and all(CONSOLE_LINE.match(line) for line in lines), lines
    assert "\x1b" not in console.getvalue() and "\u2028" not in console.getvalue()
    exported = [str(r.log_record.body) for r in capture.logs() if "forge" in str(r.log_record.body)]
    assert exported and all("\n" not in body and "\x1b" not in body for body in exported)



# --- a prompt Redis refuses ----------------------------------------------------------------

async def test_a_prompt_redis_refuses_stays_out_of_error_text(start_daemon, tmp_path, console,
                                                              capture):
    secret_word = "Initech"
    redis = redis_process(tmp_path / "redis").start()
    daemon = await start_daemon(use_redis=False, REDIS_URL=redis.url)  # type: ignore[attr-defined]
    client = await daemon.client()
    try:
        async with Redis.from_url(redis.url) as raw:  # type: ignore[attr-defined]
            await raw.config_set("maxmemory-policy", "noeviction")
            await raw.config_set("maxmemory", 1)  # every write is refused: OOM
        reply = await client.call_tool("chat", {"prompt": f"{secret_word} merger: keep quiet"})
        assert reply["ok"], reply  # served from memory meanwhile
        async with httpx.AsyncClient() as http:
            health = (await http.get(f"{daemon.health_url}/health")).json()
    finally:
        await client.close()
        redis.stop()
    assert health["components"]["storage"]["last_error"] == "OutOfMemoryError: OOM"
    assert "OutOfMemoryError: OOM" in console.getvalue()
    exported = [{"body": str(r.log_record.body), **dict(r.log_record.attributes or {})}
                for r in capture.logs()]
    # Span attributes may hold the prompt by design (GenAI content capture); error text may not.
    errors = [[s.status.description, *(dict(e.attributes or {}) for e in s.events)]
              for s in capture.spans()]
    for text in (json.dumps(health), console.getvalue(), json.dumps(exported, default=str),
                 json.dumps(errors, default=str)):
        assert secret_word not in text


# --- the two handlers on their own ---------------------------------------------------------

@pytest.fixture
def local_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.poisonous_input")
    logger.propagate = False
    yield logger
    logger.handlers.clear()
    logger.propagate = True


def test_console_escapes_the_message_and_keeps_the_traceback(local_logger):
    stream = io.StringIO()
    local_logger.addHandler(console_handler(stream))
    try:
        raise ValueError("boom")
    except ValueError:
        local_logger.exception("call %s failed", f"r{FORGED}")
    first, *traceback = stream.getvalue().splitlines()
    assert CONSOLE_LINE.match(first) and first.endswith(" failed")
    assert "\\n2026-01-01" in first and "\\x1b[2K" in first and "\\u2028" in first
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-1] == "ValueError: boom"


def test_bridge_exports_lone_surrogates_in_extras_and_exceptions_as_escapes(local_logger):
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    local_logger.addHandler(bridge_handler(provider))
    local_logger.warning("good before")
    try:
        raise ValueError(f"bad {LONE}")
    except ValueError:
        local_logger.exception("failed %s", LONE,
                               extra={"client.id": f"x{LONE}", "client.ids": ["ok", LONE]})
    local_logger.warning("good after")
    records = exporter.get_finished_logs()
    provider.shutdown()

    encode_logs(records).SerializeToString()  # the batch encodes: nobody's records are lost
    assert [r.log_record.body for r in records] == ["good before", "failed \\udc00", "good after"]
    attributes = records[1].log_record.attributes
    assert attributes["client.id"] == "x\\udc00"
    assert list(attributes["client.ids"]) == ["ok", "\\udc00"]
    assert attributes["exception.message"] == "bad \\udc00"
    assert attributes["exception.stacktrace"].startswith("Traceback (most recent call last):\n")
