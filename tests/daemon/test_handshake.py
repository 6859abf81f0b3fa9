"""The hello handshake and connection limits: every failure has its documented close code."""

from __future__ import annotations

import asyncio
import json
import stat
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.client import DaemonClient, HandshakeError
from app.protocol import CloseCode
from app.server import AUTH_FAILURE_DELAY_SECS
from otel import names

from .conftest import TOKEN, eventually


async def _first_frame_then_close(url: str, payload: str | bytes | None) -> tuple[list[dict], int]:
    """Send ``payload`` as the first frame (or nothing); return the frames seen and the close
    code."""
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
    assert frames == [] and code == CloseCode.NOT_JSON


async def test_binary_first_frame_closes_4000(running):
    frames, code = await _first_frame_then_close(running.url, b"\x00\x01")
    assert code == CloseCode.NOT_JSON


async def test_json_but_not_hello_answers_missing_hello_and_closes_4001(running):
    frames, code = await _first_frame_then_close(running.url, json.dumps({"op": "ping"}))
    assert frames == [{"op": "hello_ack", "ok": False, "error": "missing_hello"}]
    assert code == CloseCode.MISSING_HELLO


async def test_wrong_token_answers_unauthorized_and_closes_4003(running):
    with pytest.raises(HandshakeError) as refused:
        await DaemonClient.connect(running.url, "wrong-token")
    assert refused.value.error == "unauthorized"
    assert refused.value.close_code == CloseCode.UNAUTHORIZED


async def test_invalid_session_id_is_refused(running):
    with pytest.raises(HandshakeError) as refused:
        await DaemonClient.connect(running.url, TOKEN, session_id="no spaces allowed!")
    assert refused.value.error == "invalid_session_id"


async def test_silence_closes_4002_after_hello_timeout(start_daemon):
    daemon = await start_daemon(EXAI_WS_HELLO_TIMEOUT=0.3)
    frames, code = await _first_frame_then_close(daemon.url, None)
    assert code == CloseCode.HELLO_TIMEOUT


async def test_without_a_configured_token_one_is_generated_private_and_kept(start_daemon,
                                                                           tmp_path):
    token_file = tmp_path / "config" / "exai" / "ws-token"
    daemon = await start_daemon(EXAI_WS_TOKEN="", EXAI_WS_TOKEN_FILE=str(token_file))
    token = token_file.read_text().strip()
    assert len(token) >= 32
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    client = await DaemonClient.connect(daemon.url, token)
    await client.close()
    with pytest.raises(HandshakeError) as refused:
        await DaemonClient.connect(daemon.url, "")
    assert refused.value.error == "unauthorized"
    # a second start (a restart) keeps the same token, so configured clients keep working
    again = await start_daemon(EXAI_WS_TOKEN="", EXAI_WS_TOKEN_FILE=str(token_file))
    assert token_file.read_text().strip() == token
    client = await DaemonClient.connect(again.url, token)
    await client.close()


async def test_a_token_file_others_can_read_is_made_private(start_daemon, tmp_path):
    token_file = tmp_path / "ws-token"
    token_file.write_text("a-token-someone-wrote-by-hand-0123456789\n")
    token_file.chmod(0o644)
    daemon = await start_daemon(EXAI_WS_TOKEN="", EXAI_WS_TOKEN_FILE=str(token_file))
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    client = await DaemonClient.connect(daemon.url, "a-token-someone-wrote-by-hand-0123456789")
    await client.close()


async def test_no_token_at_all_needs_the_explicit_opt_out(start_daemon, caplog):
    daemon = await start_daemon(EXAI_WS_TOKEN="", EXAI_WS_AUTH_DISABLED=True)
    client = await DaemonClient.connect(daemon.url, "anything")
    await client.close()
    assert any("authentication is OFF" in r.getMessage() and r.levelname == "WARNING"
               for r in caplog.records)


async def test_auth_disabled_on_public_address_refuses_to_start(start_daemon):
    with pytest.raises(SystemExit, match="EXAI_WS_AUTH_DISABLED"):
        await start_daemon(EXAI_WS_AUTH_DISABLED=True, EXAI_WS_HOST="0.0.0.0")


async def test_a_wrong_token_is_answered_late(running):
    started = time.perf_counter()
    with pytest.raises(HandshakeError):
        await DaemonClient.connect(running.url, "guess")
    assert time.perf_counter() - started >= AUTH_FAILURE_DELAY_SECS * 0.9


async def test_per_client_limit_counts_unauthenticated_connections_with_loopback_as_one(
        start_daemon):
    daemon = await start_daemon(EXAI_MAX_CONNECTIONS_PER_CLIENT=2)
    port = int(daemon.url.rsplit(":", 1)[1])
    # two sockets that never say hello, from two different loopback addresses
    waiting = [await connect(daemon.url, local_addr=(f"127.0.0.{n}", 0)) for n in (2, 3)]
    try:
        frames, code = await _first_frame_then_close(daemon.url, None)
        assert code == CloseCode.POLICY
        assert await _upgrade_status(port, {"Host": f"127.0.0.1:{port}"}, "127.0.0.4") == 101
    finally:
        for ws in waiting:
            await ws.close()
    # authenticated sessions do not count against it: more than two may be open at once
    clients = [await daemon.client() for _ in range(4)]
    for client in clients:
        await client.close()


async def _upgrade_status(port: int, headers: dict[str, str],
                          local_host: str = "127.0.0.1") -> int:
    """Send a WebSocket upgrade with exactly these extra headers; return the HTTP status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local_host, 0))
    lines = ["GET / HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
             *(f"{name}: {value}" for name, value in headers.items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return int(status_line.split()[1])


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://localhost:3000",
                                    "https://127.0.0.1"])
async def test_an_upgrade_with_a_foreign_origin_is_refused_403(running, origin, capture):
    port = int(running.url.rsplit(":", 1)[1])
    status = await _upgrade_status(port, {"Host": f"127.0.0.1:{port}", "Origin": origin})
    assert status == 403
    with pytest.raises(InvalidStatus) as refused:
        await connect(running.url, origin=origin)
    assert refused.value.response.status_code == 403
    points = capture.metrics()[names.EXAI_REJECTIONS]
    assert any(p.attributes.get("exai.rejection.reason") == "origin_not_allowed" and p.value >= 2
               for p in points)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8079", "192.168.1.20:8079",
                                  "localhost.evil.example"])
async def test_a_foreign_host_is_refused_403_against_dns_rebinding(running, host):
    port = int(running.url.rsplit(":", 1)[1])
    assert await _upgrade_status(port, {"Host": host}) == 403


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST",
                                  "[::1]:{port}"])
async def test_loopback_hosts_without_origin_are_accepted(running, host):
    port = int(running.url.rsplit(":", 1)[1])
    assert await _upgrade_status(port, {"Host": host.format(port=port)}) == 101


async def test_listed_origins_and_hosts_are_accepted(start_daemon):
    daemon = await start_daemon(
        EXAI_WS_ALLOWED_ORIGINS="https://app.example/, http://localhost:3000",
        EXAI_WS_ALLOWED_HOSTS="exai.internal")
    port = int(daemon.url.rsplit(":", 1)[1])
    for origin in ("https://app.example", "http://localhost:3000"):
        async with connect(daemon.url, origin=origin) as ws:
            await ws.send(json.dumps({"op": "hello", "token": TOKEN}))
            assert json.loads(await ws.recv())["ok"] is True
    assert await _upgrade_status(port, {"Host": "exai.internal:1234"}) == 101
    assert await _upgrade_status(port, {"Host": "other.internal"}) == 403


async def test_handshake_failures_are_traced_with_error_type(running, capture):
    with pytest.raises(HandshakeError):
        await DaemonClient.connect(running.url, "wrong-token")
    await eventually(lambda: any(s.attributes.get("error.type") == "unauthorized"
                                 for s in capture.spans() if s.name == "initialize"))


async def test_health_answers_no_web_page_either(running):
    """/health needs no token, so a page (or a DNS-rebound one) must not read it."""
    async with httpx.AsyncClient() as http:
        assert (await http.get(running.health_url + "/health")).status_code == 200
        refused = await http.get(running.health_url + "/health",
                                 headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403
        rebound = await http.get(running.health_url + "/health",
                                 headers={"Host": "evil.example:8081"})
        assert rebound.status_code == 403
