"""Requests after hello: bad frames get clear errors and the connection stays usable."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed

from app.protocol import CloseCode

from .raw_session import exchange, raw_session, still_usable


@pytest.mark.parametrize("payload, code", [
    ("{not json", "INVALID_REQUEST"),
    ("[1, 2, 3]", "INVALID_REQUEST"),
    (json.dumps({"op": "teleport", "request_id": "r1"}), "INVALID_REQUEST"),
    (json.dumps({"op": "call_tool", "request_id": "r2"}), "VALIDATION_ERROR"),
    (json.dumps({"op": "call_tool", "request_id": "r3", "name": "chat", "arguments": [1]}),
     "VALIDATION_ERROR"),
    (json.dumps({"op": "call_tool", "request_id": {"nested": 1}, "name": "chat"}),
     "VALIDATION_ERROR"),
    (json.dumps({"op": "cancel"}), "VALIDATION_ERROR"),
])
async def test_malformed_frames_get_an_error_frame_and_the_connection_survives(running, payload,
                                                                               code):
    async with raw_session(running.url) as ws:
        reply = await exchange(ws, payload)
        assert reply["op"] == "error"
        assert reply["error"]["code"] == code
        assert reply["error"]["message"]
        if '"request_id": "r' in payload:
            assert reply["request_id"].startswith("r")
        await still_usable(ws)


async def test_binary_frame_after_hello_is_an_error_not_a_close(running):
    async with raw_session(running.url) as ws:
        reply = await exchange(ws, b"\x00binary")
        assert reply["op"] == "error" and reply["error"]["code"] == "INVALID_REQUEST"
        await still_usable(ws)


async def test_oversize_frame_closes_1009_and_daemon_keeps_serving(start_daemon):
    daemon = await start_daemon(EXAI_WS_MAX_BYTES=4096)
    async with raw_session(daemon.url) as ws:
        await ws.send(json.dumps({"op": "ping", "pad": "x" * 10_000}))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == CloseCode.TOO_BIG
    client = await daemon.client()
    assert (await client.ping())["op"] == "pong"
    await client.close()


async def test_unknown_tool_is_tool_not_found_with_trace_id(client):
    reply = await client.call_tool("summon_dragon", {})
    assert reply["ok"] is False
    assert reply["error"]["code"] == "TOOL_NOT_FOUND"
    assert "chat" in reply["error"]["details"]["available"]
    assert len(reply["trace_id"]) == 32


@pytest.mark.parametrize("arguments, field", [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "hi", "temperature": 3}, "temperature"),
    ({"prompt": "hi", "continuation_id": "not-a-uuid"}, "continuation_id"),
    ({"prompt": "x" * 100_001}, "prompt"),
])
async def test_invalid_arguments_name_the_field(client, arguments, field):
    reply = await client.call_tool("chat", arguments)
    assert reply["ok"] is False and reply["error"]["code"] == "INVALID_ARGUMENTS"
    assert any(item["field"] == field for item in reply["error"]["details"]["errors"])
    assert "x" * 50 not in json.dumps(reply), "the error must not echo the input"


async def test_request_without_id_gets_one_and_legacy_id_is_accepted(running):
    async with raw_session(running.url) as ws:
        reply = await exchange(ws, json.dumps({"op": "call_tool", "name": "version"}))
        assert reply["op"] == "call_tool_res" and reply["request_id"]
        reply = await exchange(ws, json.dumps({"op": "call_tool", "id": "legacy-7",
                                                "name": "version"}))
        assert reply["request_id"] == "legacy-7" and reply["ok"] is True


async def test_list_tools_describes_the_four_tools(client):
    tools = await client.list_tools()
    assert {t["name"] for t in tools} == {"chat", "listmodels", "status", "version"}
    chat = next(t for t in tools if t["name"] == "chat")
    assert "prompt" in chat["inputSchema"]["properties"]


async def test_version_listmodels_and_status_tools(client):
    version = await client.call_tool("version")
    assert version["ok"] and version["metadata"]["name"] == "exai-daemon"
    models = await client.call_tool("listmodels")
    providers = models["metadata"]["providers"]["providers"]
    assert providers["kimi"]["configured"] and providers["glm"]["configured"]
    assert "sk-test" not in json.dumps(models)
    status = await client.call_tool("status")
    assert status["metadata"]["status"] in {"healthy", "degraded"}
    assert "in_flight_calls" in json.loads(status["outputs"][0]["text"])["sessions"]


async def test_legacy_chat_arguments_are_accepted_and_reported_ignored(client):
    reply = await client.call_tool("chat", {"prompt": "hello", "model": "auto",
                                            "use_websearch": True, "thinking_mode": "high",
                                            "files": [], "images": []})
    assert reply["ok"], reply
    assert reply["metadata"]["model"] == "glm-4.5-flash"
    assert reply["metadata"]["ignored_arguments"] == ["files", "images", "thinking_mode",
                                                      "use_websearch"]


async def test_duplicate_request_id_in_flight_is_refused(running, fake_upstream):
    await fake_upstream.aconfig(latency_ms=400)
    async with raw_session(running.url) as ws:
        call = {"op": "call_tool", "request_id": "same", "name": "chat",
                "arguments": {"prompt": "slow"}}
        await ws.send(json.dumps(call))
        await ws.send(json.dumps({**call, "name": "version", "arguments": {}}))
        replies = []
        while len(replies) < 2:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if frame["op"] == "call_tool_res":
                replies.append(frame)
        assert replies[0]["ok"] is False
        assert replies[0]["error"]["code"] == "DUPLICATE_REQUEST_ID"
        assert replies[1]["ok"] is True and replies[1]["metadata"]["provider"] == "glm"


async def test_hello_ack_announces_the_tool_timeout(start_daemon):
    daemon = await start_daemon(EXAI_TOOL_TIMEOUT_SECS=42)
    client = await daemon.client()
    await client.close()
    assert client.server["limits"]["tool_timeout_secs"] == 42


async def test_list_tools_joins_the_callers_trace(client):
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    reply = await client.request({"op": "list_tools",
                                  "_meta": {"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"}})
    assert reply["trace_id"] == trace_id
