"""The hello handshake and connection limits: every failure has its documented close code."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.client import DaemonClient, HandshakeError

from .conftest import TOKEN, eventually


async def _first_frame_then_close(url: str, payload: str | bytes | None) -> tuple[list[dict], int]:
    """Send ``payload`` as the first frame (or nothing); return the frames seen and the close code."""
    frames = []
    async with connect(url) as ws:
        if payload is not None:
            await ws.send(payload)
        try:
            async for message in ws:
                frames.append(json.loads(message))
        except ConnectionClosed:
            pass
        await ws.wait_closed()
        return frames, ws.close_code


async def test_hello_ack_carries_session_and_server(running):
    client = await running.client(session_id="editor_42")
    try:
        assert client.session_id == "editor_42"
        assert client.server["name"] == "exai-daemon"
        assert (await client.ping())["op"] == "pong"
    finally:
        await client.close()


async def test_session_id_is_assigned_when_absent(running):
    client = await running.client()
    try:
        assert len(client.session_id) >= 3
    finally:
        await client.close()


async def test_not_json_closes_4000(running):
    frames, code = await _first_frame_then_close(running.url, "{not json")
    assert frames == [] and code == 4000


async def test_binary_first_frame_closes_4000(running):
    frames, code = await _first_frame_then_close(running.url, b"\x00\x01")
    assert code == 4000


async def test_json_but_not_hello_answers_missing_hello_and_closes_4001(running):
    frames, code = await _first_frame_then_close(running.url, json.dumps({"op": "ping"}))
    assert frames == [{"op": "hello_ack", "ok": False, "error": "missing_hello"}]
    assert code == 4001


async def test_wrong_token_answers_unauthorized_and_closes_4003(running):
    with pytest.raises(HandshakeError) as refused:
        await DaemonClient.connect(running.url, "wrong-token")
    assert refused.value.error == "unauthorized" and refused.value.close_code == 4003


async def test_invalid_session_id_is_refused(running):
    with pytest.raises(HandshakeError) as refused:
        await DaemonClient.connect(running.url, TOKEN, session_id="no spaces allowed!")
    assert refused.value.error == "invalid_session_id"


async def test_silence_closes_4002_after_hello_timeout(start_daemon):
    daemon = await start_daemon(EXAI_WS_HELLO_TIMEOUT=0.3)
    frames, code = await _first_frame_then_close(daemon.url, None)
    assert code == 4002


async def test_empty_token_turns_auth_off(start_daemon):
    daemon = await start_daemon(EXAI_WS_TOKEN="")
    client = await DaemonClient.connect(daemon.url, "anything")
    await client.close()


async def test_no_token_on_public_address_refuses_to_start(start_daemon):
    with pytest.raises(SystemExit, match="EXAI_WS_TOKEN"):
        await start_daemon(EXAI_WS_TOKEN="", EXAI_WS_HOST="0.0.0.0")


async def test_per_client_connection_limit_closes_1008(start_daemon):
    daemon = await start_daemon(EXAI_MAX_CONNECTIONS_PER_CLIENT=2)
    clients = [await daemon.client() for _ in range(2)]
    try:
        frames, code = await _first_frame_then_close(daemon.url, None)
        assert code == 1008
    finally:
        for client in clients:
            await client.close()
    # capacity comes back when clients leave
    await asyncio.sleep(0.1)
    again = await daemon.client()
    await again.close()


async def test_handshake_failures_are_traced_with_error_type(running, capture):
    with pytest.raises(HandshakeError):
        await DaemonClient.connect(running.url, "wrong-token")
    await eventually(lambda: any(s.attributes.get("error.type") == "unauthorized"
                                 for s in capture.spans() if s.name == "initialize"))
