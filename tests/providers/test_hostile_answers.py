"""An upstream that misbehaves: answers and error bodies past the cap, raw line separators in a
stream, an error code that echoes the API key. Real sockets, real httpx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from app.errors import ErrorCode
from app.fake_llm import SEPARATOR_TEXT, answer_for, content_pieces
from app.providers.base import ChatRequest, ProviderError
from app.providers.openai_compat import upstream_code
from otel import names

from .conftest import API_KEY, FakeUpstream, Telemetry, settings_for

MIB = 1024 * 1024
CAP = MIB
MESSAGES = [{"role": "user", "content": "PROMPT-CANARY tell me a long story"}]


def _request(model: str, stream: bool) -> ChatRequest:
    return ChatRequest(model=model, messages=MESSAGES, max_tokens=256, stream=stream)


class Chunks(list[str]):
    async def __call__(self, text: str) -> None:
        self.append(text)


# --- the answer cap ---------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
async def test_an_answer_over_the_cap_is_refused_without_reading_the_rest(
        fake: FakeUpstream, telemetry: Telemetry, make_registry, stream: bool) -> None:
    await fake.configure(answer_bytes=100 * MIB)
    registry = make_registry(settings_for(fake, EXAI_PROVIDER_MAX_RESPONSE_BYTES=CAP))
    provider, model = registry.resolve("glm-4.5")
    chunks = Chunks()
    with pytest.raises(ProviderError) as caught:
        await provider.chat(_request(model, stream), chunks)
    error = caught.value
    assert (error.code, error.error_type) == (ErrorCode.PROVIDER_ERROR, "response_too_large")
    assert error.message == f"glm: the answer exceeded {CAP} bytes"
    assert error.retry_after is None
    assert sum(len(c.encode()) for c in chunks) <= CAP
    # not retried, and the upstream saw the connection go before it had written the answer
    stats = await fake.wait_for("streams_aborted", 1)
    assert (stats["received"], stats["completed"], stats["streams_aborted"]) == (1, 0, 1)
    [span] = telemetry.genai_spans()
    assert span.attributes[names.ERROR_TYPE] == "response_too_large"
    assert provider.breaker.consecutive_failures == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_an_answer_under_the_cap_arrives_whole(fake: FakeUpstream, make_registry,
                                                     stream: bool) -> None:
    await fake.configure(answer_bytes=CAP // 2)
    registry = make_registry(settings_for(fake, EXAI_PROVIDER_MAX_RESPONSE_BYTES=CAP))
    provider, model = registry.resolve("kimi-k2-0905-preview")
    chunks = Chunks()
    result = await provider.chat(_request(model, stream), chunks)
    assert CAP // 2 <= len(result.text) < CAP // 2 + 100
    assert result.usage is not None and result.finish_reason == "stop"
    assert "".join(chunks) == (result.text if stream else "")


async def test_oversized_answers_do_not_open_the_circuit(fake: FakeUpstream,
                                                         make_registry) -> None:
    await fake.configure(answer_bytes=4 * CAP)
    registry = make_registry(settings_for(fake, EXAI_PROVIDER_MAX_RESPONSE_BYTES=CAP,
                                          EXAI_CIRCUIT_FAILURE_THRESHOLD=2))
    provider, model = registry.resolve("glm-4.5")
    for stream in (False, True, False, True, False):
        with pytest.raises(ProviderError) as caught:
            await provider.chat(_request(model, stream))
        assert caught.value.error_type == "response_too_large"  # never circuit_open
    assert provider.circuit_state == "closed"


# --- error bodies -----------------------------------------------------------------------------

ERROR_BODY = 50 * MIB


@dataclass
class HugeErrors:
    """An upstream whose every answer is a 400 with a 50 MiB body, written as long as read."""

    port: int
    written: list[int] = field(default_factory=list)  # bytes written per answer, once it ended
    peers: list[object] = field(default_factory=list)  # the client address of each request


@pytest.fixture
async def huge_errors() -> AsyncIterator[HugeErrors]:
    pad = b"x" * 65536

    async def handler(request: web.Request) -> web.StreamResponse:
        upstream.peers.append(request.transport.get_extra_info("peername"))
        await request.read()
        response = web.StreamResponse(status=400, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        sent = 0
        try:
            await response.write(b'{"error": {"code": "')
            while sent < ERROR_BODY:
                await response.write(pad)
                sent += len(pad)
            await response.write(b'"}}')
            await response.write_eof()
        finally:
            upstream.written.append(sent)
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream = HugeErrors(runner.addresses[0][1])
    try:
        yield upstream
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("stream", [False, True])
async def test_an_error_body_is_read_to_its_limit_and_its_connection_closed(
        huge_errors: HugeErrors, make_registry, stream: bool) -> None:
    url = f"http://127.0.0.1:{huge_errors.port}/api/paas/v4"
    registry = make_registry(settings_for(None, GLM_API_URL=url))
    provider, model = registry.resolve("glm-4.5")
    for _ in range(2):
        with pytest.raises(ProviderError) as caught:
            await provider.chat(_request(model, stream))
        assert (caught.value.error_type, caught.value.message) == ("400", "glm: HTTP 400")
    for _ in range(200):
        if len(huge_errors.written) == 2:
            break
        await asyncio.sleep(0.02)
    assert len(huge_errors.written) == 2
    assert all(sent < ERROR_BODY // 4 for sent in huge_errors.written), huge_errors.written
    assert huge_errors.peers[0] != huge_errors.peers[1]  # the first connection was not reused


# --- raw line separators ----------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
async def test_raw_line_separators_in_the_answer_arrive_intact(
        fake: FakeUpstream, telemetry: Telemetry, make_registry, stream: bool) -> None:
    await fake.configure(raw_separator_text=True)
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("glm-4.5")
    chunks = Chunks()
    result = await provider.chat(_request(model, stream), chunks)
    expected = "".join(content_pieces(answer_for(MESSAGES, 256)[0], raw_separators=True))
    assert result.text == expected and result.text.endswith(SEPARATOR_TEXT)
    assert "".join(chunks) == (expected if stream else "")
    assert provider.breaker.consecutive_failures == 0
    assert names.ERROR_TYPE not in telemetry.genai_spans()[0].attributes


# --- upstream error codes ---------------------------------------------------------------------

async def test_an_error_code_echoing_the_key_reaches_neither_client_nor_span(
        fake: FakeUpstream, telemetry: Telemetry, make_registry) -> None:
    await fake.fault(401, echo_key=True)
    registry = make_registry(settings_for(fake))
    provider, model = registry.resolve("glm-4.5")
    with pytest.raises(ProviderError) as caught:
        await provider.chat(_request(model, False))
    # the echoed code is dropped; the upstream's error type is still shown
    assert caught.value.message == "glm: HTTP 401 (server_error)"
    assert API_KEY not in repr(caught.value)
    assert API_KEY not in telemetry.spans_json()
    assert telemetry.genai_spans()[0].status.description == "glm: HTTP 401 (server_error)"


KEY = "sk-live-0123456789abcdefKEYCANARY"


def _body(code: object, kind: object = None) -> bytes:
    return json.dumps({"error": {"code": code, "type": kind, "message": KEY}}).encode()


@pytest.mark.parametrize("body, shown", [
    (_body("rate_limit_reached_error"), "rate_limit_reached_error"),
    (_body(1113), "1113"),
    (_body("1113"), "1113"),
    (_body(None, "invalid_authentication_error"), "invalid_authentication_error"),
    (_body(KEY, "invalid_authentication_error"), "invalid_authentication_error"),
    (_body(KEY), None),
    (_body(f"bad_{KEY}"), None),
    (_body(KEY[:12]), None),  # a fragment of the key
    (_body("sk-0123456789abcdefXYZ"), None),  # someone's key
    (_body("0123456789abcdef0123456789abcdef.ABCDEFGHijklmnop"), None),  # a GLM-style key
    (_body("eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"), None),  # a JWT
    (_body("a" * 40), None),  # a long opaque token
    (_body("has space"), None),
    (_body(True), None),
    (b"not json", None),
    (b'{"error": "flat"}', None),
])
def test_upstream_code_keeps_short_codes_and_drops_secrets(body: bytes, shown: str | None) -> None:
    assert upstream_code(body, [KEY]) == shown
