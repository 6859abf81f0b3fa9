"""The bridge's pure parts: backoff, reply mapping, settings, service name, progress relay."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from opentelemetry import trace

from app.config import Settings
from app.mcp_bridge import results
from app.mcp_bridge.backoff import backoff_delays
from app.mcp_bridge.forward import new_request_id, parent_context
from app.mcp_bridge.link import DaemonLink
from app.mcp_bridge.progress import ProgressRelay
from app.mcp_bridge.settings import BridgeOptions, BridgeSettings
from app.mcp_bridge.telemetry import SERVICE_NAME, default_service_name
from app.protocol import CallReply, parse_call_reply, parse_hello_ack


def test_backoff_grows_with_jitter_and_stays_under_the_cap():
    low = backoff_delays(0.2, 2.0, rand=lambda: 0.0)
    high = backoff_delays(0.2, 2.0, rand=lambda: 1.0)
    assert [round(next(low), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert [round(next(high), 3) for _ in range(6)] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    many = backoff_delays(0.2, 2.0)
    assert all(0.1 <= next(many) <= 2.0 for _ in range(200))


def test_request_ids_are_random_and_fit_the_daemon_limit():
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) <= 128 for i in ids)


def _reply(**fields) -> CallReply:
    return parse_call_reply({"op": "call_tool_res", "request_id": "mcp-1", "trace_id": "ab" * 16,
                             **fields})


def test_a_successful_reply_keeps_text_metadata_and_trace_id():
    result = results.call_result("chat", _reply(
        ok=True, outputs=[{"type": "text", "text": "answer"}],
        metadata={"continuation_id": "c-1"}))
    assert [c.text for c in result.content] == ["answer"] and not result.is_error
    assert result.structured_content == {"continuation_id": "c-1"}
    assert result.meta == {"exai/trace_id": "ab" * 16, "exai/request_id": "mcp-1"}


def test_unknown_tool_is_a_protocol_error():
    with pytest.raises(MCPError) as failure:
        results.call_result("nope", _reply(ok=False, error={
            "code": "TOOL_NOT_FOUND", "message": "unknown tool 'nope'",
            "details": {"available": ["chat"]}}))
    assert failure.value.error.code == types.INVALID_PARAMS
    assert failure.value.error.data["details"] == {"available": ["chat"]}


def test_tool_failures_are_results_the_model_can_read():
    result = results.call_result("chat", _reply(ok=False, error={
        "code": "OVER_CAPACITY", "message": "session rate limit exceeded",
        "details": {"retry_after": 0.5}}))
    assert result.is_error
    assert result.content[0].text.splitlines() == [
        "OVER_CAPACITY: session rate limit exceeded", 'details: {"retry_after": 0.5}',
        f"trace_id: {'ab' * 16}"]
    assert results.error_type_of(_reply(ok=False, error={"code": "TIMEOUT"})) == "TIMEOUT"


def test_a_daemon_error_frame_is_a_protocol_error():
    with pytest.raises(MCPError) as failure:
        results.call_result("chat", parse_call_reply({
            "op": "error", "request_id": "mcp-1", "error": {
                "code": "VALIDATION_ERROR", "message": "arguments must be a JSON object"}}))
    assert failure.value.error.code == types.INVALID_PARAMS


def _settings(**env) -> BridgeSettings:
    return BridgeSettings(Settings(_env_file=None, **env), BridgeOptions(_env_file=None))


def test_the_url_and_timeout_come_from_the_daemon_settings():
    settings = _settings(EXAI_WS_HOST="0.0.0.0", EXAI_WS_PORT=9001, EXAI_TOOL_TIMEOUT_SECS=33)
    assert settings.url == "ws://127.0.0.1:9001" and settings.tool_timeout_secs == 33
    assert _settings(EXAI_WS_HOST="::1").url == "ws://[::1]:8079"
    explicit = BridgeSettings(Settings(_env_file=None), BridgeOptions(_env_file=None),
                              url="ws://example.test:1")
    assert explicit.url == "ws://example.test:1"


def test_the_daemon_reported_tool_timeout_wins():
    link = DaemonLink(_settings(EXAI_TOOL_TIMEOUT_SECS=120))
    assert link.tool_timeout_secs == 120
    ack = parse_hello_ack({"op": "hello_ack", "ok": True, "session_id": "s-1", "server": {
        "name": "exai-daemon", "limits": {"tool_timeout_secs": 45}}})
    link._client = SimpleNamespace(  # type: ignore[assignment]
        tool_timeout_secs=ack.tool_timeout_secs)
    assert link.tool_timeout_secs == 45


def test_service_name_defaults_only_when_the_user_set_none():
    env: dict[str, str] = {}
    default_service_name(env)
    assert env["OTEL_SERVICE_NAME"] == SERVICE_NAME
    env = {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=dev,service.name=mine"}
    default_service_name(env)
    assert "OTEL_SERVICE_NAME" not in env
    env = {"OTEL_SERVICE_NAME": "mine"}
    default_service_name(env)
    assert env["OTEL_SERVICE_NAME"] == "mine"


def test_without_a_current_span_the_client_span_joins_meta_directly():
    traceparent = f"00-{'1' * 32}-{'2' * 16}-01"
    context = parent_context({"traceparent": traceparent})
    assert format(trace.get_current_span(context).get_span_context().trace_id, "032x") == "1" * 32
    assert not trace.get_current_span(parent_context({"traceparent": "junk"})) \
        .get_span_context().is_valid


async def test_progress_is_relayed_in_order_and_chunks_can_be_skipped():
    sent: list[tuple[float, str | None]] = []

    async def report(progress: float, total: float | None, message: str | None) -> None:
        await asyncio.sleep(0)
        sent.append((progress, message))

    for forward_chunks, expected in ((True, ["calling", "a", "b"]), (False, ["calling"])):
        sent.clear()
        relay = ProgressRelay(report, forward_chunks)
        relay.start()
        for frame in ({"op": "progress", "message": "calling"},
                      {"op": "stream_chunk", "chunk": "a"},
                      {"op": "stream_chunk", "chunk": "b"}, {"op": "pong"}):
            relay.push(frame)
        await relay.finish()
        assert [message for _, message in sent] == expected
        assert [progress for progress, _ in sent] == list(range(1, len(expected) + 1))
