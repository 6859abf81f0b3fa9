"""A generation that fails or is cancelled, streamed or not, against real upstreams over
loopback: its GenAI span says ``gen_ai.response.finish_reasons = ["error"]`` next to its
``error.type``, it counts as no completed call, and what was measured of its stream is kept."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from email.message import Message

import pytest
from opentelemetry.trace import StatusCode

from app.providers.base import ChatRequest, ProviderError
from otel import names
from tests.harness.loopback_http import LoopbackHTTPServer

from .conftest import FakeUpstream, SleepRecorder, Telemetry, settings_for

MESSAGES = [{"role": "user", "content": "PROMPT-CANARY tell me about failure"}]


class InvalidUpstream(LoopbackHTTPServer):
    """Answers 200 with what is no whole chat completion: a body without choices, or a stream of
    output chunks that ends before the answer is complete (no finish reason, no [DONE])."""

    def on_post(self, path: str, headers: Message, body: bytes) -> tuple[bytes, str]:
        if not json.loads(body).get("stream"):
            return b'{"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 9}}', \
                "application/json"
        deltas = ({"reasoning_content": "hmm"}, {"content": "Half an"}, {"content": " answer"})
        return b"".join(b"data: " + json.dumps({"choices": [{"delta": d}]}).encode() + b"\n\n"
                        for d in deltas), "text/event-stream"


@pytest.fixture
def invalid_upstream() -> Iterator[InvalidUpstream]:
    server = InvalidUpstream().start()
    try:
        yield server
    finally:
        server.stop()


async def _fail(kind: str, stream: bool, fake: FakeUpstream, make_registry,
                invalid_upstream: InvalidUpstream) -> None:
    """Make one glm-4.5 call fail as ``kind`` (its error.type)."""
    overrides: dict[str, object] = {}
    if kind == "500":
        await fake.fault(500, count=10)
    elif kind == "429":  # every retry is refused too, until they are exhausted
        await fake.fault(429, count=10, retry_after=1)
    elif kind == "invalid_response":
        overrides["GLM_API_URL"] = invalid_upstream.base_url + "/api/paas/v4"
    registry = make_registry(settings_for(fake, **overrides), sleep=SleepRecorder())
    provider, model = registry.resolve("glm-4.5")
    request = ChatRequest(model=model, messages=MESSAGES, max_tokens=256, stream=stream)
    if kind != "cancelled":
        with pytest.raises(ProviderError) as caught:
            await provider.chat(request)
        assert caught.value.error_type == kind
    elif not stream:
        await fake.configure(latency_ms=2000)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(provider.chat(request), 0.2)
    else:
        await fake.configure(chunk_delay_ms=50)
        two = asyncio.Event()
        chunks: list[str] = []

        async def on_chunk(text: str) -> None:
            chunks.append(text)
            if len(chunks) == 2:
                two.set()

        task = asyncio.create_task(provider.chat(request, on_chunk))
        await asyncio.wait_for(two.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kind", ["500", "429", "invalid_response", "cancelled"])
async def test_a_failed_or_cancelled_generation_finishes_with_error(
        fake: FakeUpstream, telemetry: Telemetry, make_registry, invalid_upstream, kind: str,
        stream: bool) -> None:
    await fake.configure(reasoning_tokens=8)
    await _fail(kind, stream, fake, make_registry, invalid_upstream)

    [span] = telemetry.genai_spans()
    assert span.attributes[names.ERROR_TYPE] == kind
    assert tuple(span.attributes[names.GEN_AI_RESPONSE_FINISH_REASONS]) == ("error",)
    assert span.status.status_code is StatusCode.ERROR
    assert names.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS not in span.attributes  # usage unknown
    [(attrs, duration)] = telemetry.labelled_points(names.GEN_AI_CLIENT_OPERATION_DURATION)
    assert duration.count == 1 and attrs[names.ERROR_TYPE] == kind
    # "Completed LLM calls by finish reason": a failure is no completed call (error.type on the
    # duration already counts it), so the counter gets nothing, and no tokens are invented.
    for name in (names.EXAI_GEN_AI_FINISH_REASONS, names.EXAI_GEN_AI_REASONING_OUTPUT_TOKENS,
                 names.GEN_AI_CLIENT_TOKEN_USAGE):
        assert telemetry.labelled_points(name) == [], name

    chunk_points = telemetry.labelled_points(names.GEN_AI_CLIENT_TIME_PER_OUTPUT_CHUNK)
    if stream and kind in ("invalid_response", "cancelled"):  # output chunks arrived first
        # measured as they arrived, before the call failed: no error.type, and the model the
        # stream named (else the one asked for), as a call that succeeds gets
        [(chunk_attrs, per_chunk)] = chunk_points
        assert chunk_attrs == {**{k: v for k, v in attrs.items() if k != names.ERROR_TYPE},
                               names.GEN_AI_RESPONSE_MODEL: "glm-4.5"}
        assert per_chunk.count >= 2
    else:
        assert chunk_points == []

