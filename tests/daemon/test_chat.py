"""Chat end to end: trace context in, one correctly parented trace out; concurrency, cancel,
timeouts, provider failures and streaming."""

from __future__ import annotations

import asyncio
import json

from opentelemetry.trace import SpanKind, StatusCode

from .conftest import eventually

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01"


def _by_name(spans, prefix):
    return [s for s in spans if s.name.startswith(prefix)]


async def test_traceparent_becomes_the_reply_trace_with_server_genai_http_and_redis_spans(
        client, capture):
    reply = await client.call_tool("chat",
                                   {"prompt": "hello there", "model": "kimi-k2-0905-preview"},
                                   meta={"traceparent": TRACEPARENT})
    assert reply["ok"], reply
    assert reply["trace_id"] == CLIENT_TRACE
    meta = reply["metadata"]
    assert meta["provider"] == "kimi" and meta["usage"]["input_tokens"] > 0
    assert meta["usage"]["output_tokens"] > 0 and meta["cost_usd"] is not None

    spans = await eventually(lambda: len(capture.trace(CLIENT_TRACE)) >= 4 and
                             capture.trace(CLIENT_TRACE))
    server = _by_name(spans, "tools/call chat")[0]
    assert server.kind is SpanKind.SERVER
    assert format(server.parent.span_id, "016x") == CLIENT_PARENT and server.parent.is_remote
    assert server.attributes["mcp.method.name"] == "tools/call"
    assert server.attributes["gen_ai.tool.name"] == "chat"
    assert server.attributes["mcp.session.id"] == client.session_id

    genai = _by_name(spans, "chat kimi-k2-0905-preview")[0]
    assert genai.kind is SpanKind.CLIENT and genai.parent.span_id == server.context.span_id
    assert genai.attributes["gen_ai.provider.name"] == "moonshot_ai"
    assert genai.attributes["gen_ai.usage.input_tokens"] == meta["usage"]["input_tokens"]
    assert genai.attributes["gen_ai.response.finish_reasons"] == ("stop",)

    http = [s for s in spans if s.kind is SpanKind.CLIENT and s.name.startswith("POST")]
    assert http and http[0].parent.span_id == genai.context.span_id

    redis_spans = [s for s in spans if s.attributes.get("db.system") == "redis"
                   or s.attributes.get("db.system.name") == "redis"]
    assert redis_spans, [s.name for s in spans]
    assert all(s.parent.span_id == server.context.span_id for s in redis_spans)


async def test_invalid_traceparent_starts_a_new_trace(client):
    reply = await client.call_tool("version", meta={"traceparent": "00-zzzz-not-valid-01"})
    assert reply["ok"] and len(reply["trace_id"]) == 32
    assert reply["trace_id"] != "0" * 32


async def test_correlation_id_is_kept_as_span_attribute(running, capture):
    client = await running.client()
    try:
        reply = await client.request({"op": "call_tool", "name": "version", "arguments": {},
                                      "correlation_id": "legacy-uuid-1234"})
    finally:
        await client.close()
    # the SERVER span ends after the reply is sent: wait for it, not for the trace's first span
    spans = await eventually(lambda: _by_name(capture.trace(reply["trace_id"]), "tools/call"))
    assert spans[0].attributes["exai.correlation_id"] == "legacy-uuid-1234"


async def test_continuation_keeps_the_thread(client):
    first = await client.call_tool("chat", {"prompt": "my name is Ada"})
    continuation = first["metadata"]["continuation_id"]
    second = await client.call_tool("chat", {"prompt": "what is my name?",
                                             "continuation_id": continuation})
    assert second["ok"] and second["metadata"]["continuation_id"] == continuation
    assert second["metadata"]["usage"]["input_tokens"] > first["metadata"]["usage"]["input_tokens"]


async def test_unknown_continuation_is_continuation_not_found(client):
    reply = await client.call_tool(
        "chat", {"prompt": "hi", "continuation_id": "00000000-0000-4000-8000-000000000000"})
    assert reply["error"]["code"] == "CONTINUATION_NOT_FOUND"


async def test_fifty_concurrent_calls_on_one_connection_each_get_their_own_reply(start_daemon):
    daemon = await start_daemon(EXAI_WS_SESSION_MAX_INFLIGHT=50, EXAI_WS_GLOBAL_MAX_INFLIGHT=50,
                                EXAI_GLM_MAX_INFLIGHT=50, EXAI_KIMI_MAX_INFLIGHT=50,
                                EXAI_RATE_LIMIT_BURST=100)
    client = await daemon.client()
    try:
        prompts = [f"question number {i}" for i in range(50)]
        replies = await asyncio.gather(*(
            client.call_tool("chat", {"prompt": p}, request_id=f"call-{i}")
            for i, p in enumerate(prompts)))
    finally:
        await client.close()
    assert [r["request_id"] for r in replies] == [f"call-{i}" for i in range(50)]
    assert all(r["ok"] for r in replies)
    assert len({r["trace_id"] for r in replies}) == 50
    assert len({r["metadata"]["continuation_id"] for r in replies}) == 50


async def test_streaming_sends_chunks_then_the_result(client, capture):
    reply = await client.call_tool("chat", {"prompt": "stream please", "stream": True})
    assert reply["ok"]
    kinds = [f["op"] for f in reply["_frames"]]
    assert kinds[0] == "progress" and kinds.count("stream_chunk") >= 2
    assert "".join(f["chunk"] for f in reply["_frames"] if f["op"] == "stream_chunk") \
        == reply["outputs"][0]["text"]
    spans = await eventually(lambda: _by_name(capture.trace(reply["trace_id"]), "chat "))
    assert spans[0].attributes["gen_ai.response.time_to_first_chunk"] >= 0
    assert spans[0].attributes["gen_ai.request.stream"] is True


async def test_cancel_really_cancels_the_provider_call(client, fake_upstream, capture):
    await fake_upstream.aconfig(ttft_ms=50, chunk_delay_ms=300)
    call = asyncio.create_task(client.call_tool("chat", {"prompt": "long", "stream": True},
                                                request_id="to-cancel"))
    await eventually(lambda: fake_upstream.astats(), timeout=5)
    await asyncio.sleep(0.3)
    ack = await client.cancel("to-cancel")
    assert ack == {**ack, "op": "cancelled", "request_id": "to-cancel", "ok": True}
    reply = await call
    assert reply["ok"] is False and reply["error"]["code"] == "CANCELLED"
    stats = await eventually(
        lambda: _aborted(fake_upstream), timeout=5)
    assert stats["streams_aborted"] >= 1
    genai = await eventually(lambda: _by_name(capture.trace(reply["trace_id"]), "chat "))
    assert genai[0].status.status_code is StatusCode.ERROR
    assert genai[0].attributes["error.type"] == "cancelled"


async def _aborted(upstream):
    stats = await upstream.astats()
    return stats if stats["streams_aborted"] >= 1 else None


async def test_cancel_of_unknown_call_says_so(client):
    reply = await client.cancel("nothing-here")
    assert reply["ok"] is False and reply["error"]["code"] == "INVALID_REQUEST"


async def test_tool_timeout_cancels_the_provider_call(start_daemon, fake_upstream):
    daemon = await start_daemon(EXAI_TOOL_TIMEOUT_SECS=0.5)
    await fake_upstream.aconfig(latency_ms=3000)
    client = await daemon.client()
    try:
        reply = await client.call_tool("chat", {"prompt": "too slow"})
    finally:
        await client.close()
    assert reply["error"]["code"] == "TIMEOUT"
    assert reply["error"]["details"]["timeout_secs"] == 0.5


async def test_provider_429_with_retry_after_then_success(client, fake_upstream, capture):
    await fake_upstream.afaults(status=429, count=1, retry_after=0.2)
    reply = await client.call_tool("chat", {"prompt": "retry me"})
    assert reply["ok"], reply
    assert reply["metadata"]["latency_ms"] >= 200
    stats = await fake_upstream.astats()
    assert stats["received"] == 2


async def test_provider_500s_open_the_circuit(start_daemon, fake_upstream):
    daemon = await start_daemon(EXAI_PROVIDER_MAX_RETRIES=0, EXAI_CIRCUIT_FAILURE_THRESHOLD=3,
                                EXAI_CIRCUIT_RESET_SECS=60)
    await fake_upstream.afaults(status=500, count=3)
    client = await daemon.client()
    try:
        for _ in range(3):
            reply = await client.call_tool("chat", {"prompt": "fail", "model": "glm-4.5"})
            assert reply["error"]["code"] == "PROVIDER_ERROR"
        received = (await fake_upstream.astats())["received"]
        reply = await client.call_tool("chat", {"prompt": "fail fast", "model": "glm-4.5"})
        assert reply["error"]["code"] == "PROVIDER_UNAVAILABLE"
        assert reply["error"]["details"]["error_type"] == "circuit_open"
        assert (await fake_upstream.astats())["received"] == received
        # Kimi has its own circuit and still answers
        assert (await client.call_tool("chat", {"prompt": "hi", "model": "kimi-latest"}))["ok"]
    finally:
        await client.close()
    report = await daemon.daemon.health_report()
    assert report["status"] == "degraded"
    assert report["components"]["providers"]["glm"]["circuit_state"] == "open"


async def test_stream_with_early_client_disconnect_ends_the_span_with_an_error(
        running, fake_upstream, capture):
    await fake_upstream.aconfig(chunk_delay_ms=300)
    client = await running.client()
    seen = asyncio.Event()

    def on_frame(frame):
        if frame["op"] == "stream_chunk":
            seen.set()

    call = asyncio.create_task(client.call_tool("chat", {"prompt": "bye", "stream": True},
                                                request_id="gone", on_frame=on_frame))
    await asyncio.wait_for(seen.wait(), 5)
    await client.ws.close()
    await asyncio.gather(call, return_exceptions=True)

    def ended():
        spans = [s for s in capture.spans() if s.attributes.get("jsonrpc.request.id") == "gone"]
        return spans and spans[0]
    server = await eventually(ended)
    assert server.attributes["error.type"] == "client_disconnected"
    genai = await eventually(lambda: _by_name(capture.trace(format(server.context.trace_id,
                                                                    "032x")), "chat "))
    assert genai[0].status.status_code is StatusCode.ERROR
    assert (await eventually(lambda: _aborted(fake_upstream)))["streams_aborted"] >= 1
    assert running.daemon.ws.stats()["in_flight_calls"] == 0


async def test_session_rate_limit_answers_over_capacity_with_retry_after(start_daemon, capture):
    daemon = await start_daemon(EXAI_RATE_LIMIT_PER_SEC=1, EXAI_RATE_LIMIT_BURST=2)
    client = await daemon.client()
    try:
        replies = [await client.call_tool("version") for _ in range(3)]
    finally:
        await client.close()
    assert [r["ok"] for r in replies] == [True, True, False]
    error = replies[2]["error"]
    assert error["code"] == "OVER_CAPACITY" and 0 < error["details"]["retry_after"] <= 1
    points = capture.metrics()["exai.mcp.server.rejections"]
    assert any(p.attributes["exai.rejection.reason"] == "rate_limited" for p in points)


async def test_provider_limit_applies_to_the_provider_that_serves_the_call(start_daemon,
                                                                          fake_upstream):
    daemon = await start_daemon(EXAI_KIMI_MAX_INFLIGHT=1, EXAI_SLOT_WAIT_SECS=0.2)
    await fake_upstream.aconfig(latency_ms=600)
    client = await daemon.client()
    try:
        replies = await asyncio.gather(
            client.call_tool("chat", {"prompt": "a", "model": "kimi-latest"}),
            client.call_tool("chat", {"prompt": "b", "model": "kimi-latest"}),
            client.call_tool("chat", {"prompt": "c", "model": "glm-4.5"}))
    finally:
        await client.close()
    outcomes = sorted((r["ok"], r.get("error", {}).get("details", {}).get("scope"))
                      for r in replies)
    assert outcomes == [(False, "provider"), (True, None), (True, None)]


async def test_session_limit_bounds_waiting(start_daemon, fake_upstream):
    daemon = await start_daemon(EXAI_WS_SESSION_MAX_INFLIGHT=1, EXAI_SLOT_WAIT_SECS=0.2)
    await fake_upstream.aconfig(latency_ms=600)
    client = await daemon.client()
    try:
        replies = await asyncio.gather(client.call_tool("chat", {"prompt": "a"}),
                                       client.call_tool("chat", {"prompt": "b"}))
    finally:
        await client.close()
    codes = sorted(r.get("error", {}).get("code", "OK") for r in replies)
    assert codes == ["OK", "OVER_CAPACITY"]
    assert json.dumps(replies).count('"scope": "session"') == 1
