"""Each finished call leaves one log record joined to its trace; SERVER spans and MCP metrics carry
the connection's attributes; failures follow the MCP conventions' error semantics."""

from __future__ import annotations

import json
import logging

from opentelemetry.trace import StatusCode
from websockets.asyncio.client import connect

from app.errors import JSONRPC_INVALID_PARAMS
from otel import names

from .conftest import TOKEN, eventually
from .raw_session import exchange

PROMPT = "a prompt that must stay out of every log record"


def _call_records(capture, trace_id: str) -> list:
    """The per-call records (they carry ``exai.call.outcome``) of one trace."""
    return [r for r in capture.logs()
            if names.EXAI_CALL_OUTCOME in (r.log_record.attributes or {})
            and format(r.log_record.trace_id, "032x") == trace_id]


def _text(record) -> str:
    return json.dumps([str(record.body), dict(record.attributes or {})], default=str)


def _server_span(capture, trace_id: str):
    return next(s for s in capture.trace(trace_id) if s.name.startswith("tools/call"))


async def _one_record(capture, trace_id: str):
    await eventually(lambda: _call_records(capture, trace_id))
    records = _call_records(capture, trace_id)
    assert len(records) == 1, [r.log_record.body for r in records]
    return records[0].log_record


async def test_a_successful_call_leaves_one_info_record_in_its_span(client, capture):
    reply = await client.call_tool("chat", {"prompt": PROMPT, "model": "glm-4.5-flash"})
    assert reply["ok"]
    record = await _one_record(capture, reply["trace_id"])
    attributes = dict(record.attributes or {})
    assert record.severity_number.name == "INFO"
    assert record.span_id == _server_span(capture, reply["trace_id"]).context.span_id
    assert attributes[names.EXAI_CALL_OUTCOME] == "ok"
    assert attributes[names.GEN_AI_TOOL_NAME] == "chat"
    assert attributes[names.MCP_METHOD_NAME] == "tools/call"
    assert attributes[names.GEN_AI_PROVIDER_NAME] == "z_ai"
    assert attributes[names.GEN_AI_RESPONSE_MODEL] == reply["metadata"]["model"]
    usage = reply["metadata"]["usage"]
    assert attributes[names.GEN_AI_USAGE_INPUT_TOKENS] == usage["input_tokens"]
    assert attributes[names.GEN_AI_USAGE_OUTPUT_TOKENS] == usage["output_tokens"]
    assert 0 < attributes[names.EXAI_CALL_DURATION] < 30
    assert names.ERROR_TYPE not in attributes
    assert str(record.body).startswith(f"call {reply['request_id']} chat ok in ")
    text = _text(record)
    assert PROMPT not in text and reply["outputs"][0]["text"] not in text


async def test_failures_are_logged_once_at_the_level_their_cause_deserves(
        start_daemon, fake_upstream, capture):
    daemon = await start_daemon(EXAI_PROVIDER_MAX_RETRIES=0)
    client = await daemon.client()
    try:
        unknown = await client.call_tool("summon_dragon", {})
        await fake_upstream.afaults(status=500, count=1)
        failed = await client.call_tool("chat", {"prompt": PROMPT, "model": "glm-4.5"})
    finally:
        await client.close()
    caller = await _one_record(capture, unknown["trace_id"])
    assert caller.severity_number.name == "WARN"
    assert dict(caller.attributes or {})[names.EXAI_CALL_OUTCOME] == "TOOL_NOT_FOUND"
    assert dict(caller.attributes or {})[names.GEN_AI_TOOL_NAME] == names.OTHER_VALUE
    ours = await _one_record(capture, failed["trace_id"])
    attributes = dict(ours.attributes or {})
    assert ours.severity_number.name == "ERROR"
    assert attributes[names.EXAI_CALL_OUTCOME] == "PROVIDER_ERROR"
    assert attributes[names.ERROR_TYPE] == failed["error"]["details"]["error_type"]
    assert attributes[names.GEN_AI_PROVIDER_NAME] == "z_ai"
    assert PROMPT not in _text(ours)


async def test_error_semantics_follow_the_mcp_conventions(client, capture):
    unknown = await client.call_tool("summon_dragon", {})
    await eventually(lambda: capture.trace(unknown["trace_id"]))
    span = _server_span(capture, unknown["trace_id"])
    attributes = dict(span.attributes or {})
    # A protocol-level error: its type is the JSON-RPC code MCP answers with; the description
    # is the message the client got, the daemon's code is the response status code.
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == unknown["error"]["message"]
    assert attributes[names.ERROR_TYPE] == str(JSONRPC_INVALID_PARAMS)
    assert attributes[names.RPC_RESPONSE_STATUS_CODE] == "TOOL_NOT_FOUND"

    invalid = await client.call_tool("chat", {"prompt": ""})
    await eventually(lambda: capture.trace(invalid["trace_id"]))
    span = _server_span(capture, invalid["trace_id"])
    attributes = dict(span.attributes or {})
    # The tool ran and refused its arguments: a tool error with its own type.
    assert invalid["error"]["code"] == "INVALID_ARGUMENTS"
    assert span.status.description == invalid["error"]["message"]
    assert attributes[names.ERROR_TYPE] == "INVALID_ARGUMENTS"
    assert attributes[names.RPC_RESPONSE_STATUS_CODE] == "INVALID_ARGUMENTS"
    duration = capture.metrics()[names.MCP_SERVER_OPERATION_DURATION]
    failed = [dict(p.attributes) for p in duration
              if dict(p.attributes).get(names.RPC_RESPONSE_STATUS_CODE) == "TOOL_NOT_FOUND"]
    assert failed and failed[0][names.ERROR_TYPE] == str(JSONRPC_INVALID_PARAMS)


async def _hello_with(url: str, version: object):
    ws = await connect(url)
    await ws.send(json.dumps({"op": "hello", "token": TOKEN, "protocolVersion": version}))
    assert json.loads(await ws.recv())["ok"] is True
    return ws


async def test_server_spans_and_metrics_carry_the_connection(running, capture):
    sessions = {"2025-06-18": "2025-06-18", "2031-01-01": names.OTHER_VALUE}
    for version, on_metrics in sessions.items():
        ws = await _hello_with(running.url, version)
        try:
            reply = await exchange(ws, json.dumps({"op": "call_tool", "request_id": version,
                                                   "name": "version", "arguments": {}}))
        finally:
            await ws.close()
        await eventually(lambda reply=reply: capture.trace(reply["trace_id"]))
        span = _server_span(capture, reply["trace_id"])
        attributes = dict(span.attributes or {})
        host, port = ws.local_address[:2]
        assert attributes[names.NETWORK_PROTOCOL_NAME] == "websocket"
        assert attributes[names.NETWORK_TRANSPORT] == "tcp"
        assert (attributes[names.CLIENT_ADDRESS], attributes[names.CLIENT_PORT]) == (host, port)
        assert attributes[names.MCP_PROTOCOL_VERSION] == version
        points = [dict(p.attributes) for p in capture.metrics()[names.MCP_SERVER_OPERATION_DURATION]
                  if dict(p.attributes).get(names.GEN_AI_TOOL_NAME) == "version"]
        assert any(p.get(names.MCP_PROTOCOL_VERSION) == on_metrics for p in points), points
        for point in points:
            assert names.CLIENT_ADDRESS not in point and names.CLIENT_PORT not in point
            assert point[names.NETWORK_PROTOCOL_NAME] == "websocket"


async def test_a_malformed_protocol_version_is_left_out(running, capture):
    ws = await _hello_with(running.url, "latest; drop table")
    try:
        reply = await exchange(ws, json.dumps({"op": "call_tool", "request_id": "v",
                                               "name": "version", "arguments": {}}))
    finally:
        await ws.close()
    await eventually(lambda: capture.trace(reply["trace_id"]))
    assert names.MCP_PROTOCOL_VERSION not in dict(
        _server_span(capture, reply["trace_id"]).attributes or {})


def test_the_console_line_stays_short(capture):
    from app.call_log import call_record

    record = call_record("chat", "r-1", {"ok": True, "metadata": {
        "provider": "kimi", "model": "kimi-k2",
        "usage": {"input_tokens": 3, "output_tokens": 5, "reasoning_tokens": 2},
        "cost_usd": 0.001}}, None, 0.25)
    assert record.message == "call r-1 chat ok in 250 ms"
    assert record.level == logging.INFO
    assert record.attributes[names.GEN_AI_PROVIDER_NAME] == "moonshot_ai"
    assert record.attributes[names.GEN_AI_USAGE_COST] == 0.001
    assert record.attributes[names.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 2
