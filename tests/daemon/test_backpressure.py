"""No client can exhaust the daemon: one that never reads, one that floods big frames, one that
idles. The memory bounds are measured on a real ``exai serve`` process (RSS), so what is asserted
is what a user's machine would see; the figures are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from app import protocol
from app.client import DaemonClient
from otel import names
from tests.harness.exai_process import TOKEN, spawn_daemon, spawn_fake_llm
from tests.harness.procs import ManagedProcess

from .conftest import eventually

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    proc, port = spawn_fake_llm(tmp_path_factory.mktemp("fake"), "--latency-ms", "2000")
    yield port
    proc.stop()


def _serve(tmp_path: Path, upstream_port: int, **env: str) -> tuple[ManagedProcess, str]:
    return spawn_daemon(tmp_path, upstream_port, OTEL_SDK_DISABLED="true", **env)


def _rss(proc: ManagedProcess) -> int:
    assert proc.process is not None
    return psutil.Process(proc.process.pid).memory_info().rss


async def _hello(ws) -> None:
    await ws.send(json.dumps({"op": "hello", "token": TOKEN}))
    assert json.loads(await ws.recv())["ok"] is True


async def test_a_client_that_never_reads_is_bounded_then_dropped(tmp_path, upstream):
    daemon, url = _serve(tmp_path, upstream, EXAI_WS_SEND_TIMEOUT_SECS="3",
                         EXAI_RATE_LIMIT_PER_SEC="100000", EXAI_RATE_LIMIT_BURST="100000")
    try:
        before = _rss(daemon)
        sent = 0
        # max_queue=1: the client library stops reading from its socket, as a stuck client does
        async with connect(url, max_queue=1, max_size=None) as ws:
            await _hello(ws)
            ping = json.dumps({"op": "ping", "request_id": "p" * 100})
            flood_until = time.monotonic() + 8
            try:
                while time.monotonic() < flood_until:
                    async with asyncio.timeout(max(0.01, flood_until - time.monotonic())):
                        await ws.send(ping)
                    sent += 1
            except TimeoutError:
                pass  # the daemon stopped reading: the flood is held in the socket, not in it
            except ConnectionClosed:
                pass  # the daemon dropped the non-reader
            peak = _rss(daemon)
            # meanwhile another client is served normally
            other = await DaemonClient.connect(url, TOKEN)
            assert (await other.ping())["op"] == "pong"
            await other.close()
            # and the non-reader is dropped once a reply has waited the send timeout
            await eventually(lambda: ws.state is State.CLOSED, timeout=15)
        growth = peak - before
        print(f"\nnon-reading client: {sent} pings sent in 8 s, daemon RSS {before / MIB:.0f} -> "
              f"{peak / MIB:.0f} MiB (+{growth / MIB:.1f} MiB)")
        assert growth < 40 * MIB, growth
    finally:
        daemon.stop()
    log = (tmp_path / "serve.log").read_text()
    assert "the client read nothing for 3s" in log, log[-2000:]


async def test_big_frames_past_the_pending_bound_are_refused_not_held(tmp_path, upstream):
    # Each frame carries ~400 KB of prompt and the upstream takes 2 s per call, so without the
    # bound every frame read would stay alive (text, arguments, request body) until answered.
    daemon, url = _serve(tmp_path, upstream, EXAI_RATE_LIMIT_PER_SEC="100000",
                         EXAI_RATE_LIMIT_BURST="100000", EXAI_SLOT_WAIT_SECS="30",
                         EXAI_TOOL_TIMEOUT_SECS="60")
    try:
        before = _rss(daemon)
        frames = 150
        prompt = "\u00e9" * 99_000 + " how big?"
        client = await DaemonClient.connect(url, TOKEN)
        try:
            calls = [asyncio.create_task(client.call_tool(
                "chat", {"prompt": prompt, "system_prompt": prompt}, timeout=120))
                for _ in range(frames)]
            peak = before
            while not all(call.done() for call in calls):
                peak = max(peak, _rss(daemon))
                await asyncio.sleep(0.05)
            replies = [call.result() for call in calls]
            assert (await client.ping())["op"] == "pong", "the session is still served"
        finally:
            await client.close()
        refused = [r for r in replies if not r["ok"] and r["error"]["code"] == "OVER_CAPACITY"
                   and r["error"]["details"]["scope"] == "session"]
        answered = [r for r in replies if r["ok"]]
        frame_bytes = len(json.dumps({"prompt": prompt, "system_prompt": prompt},
                                     ensure_ascii=False).encode())
        growth = peak - before
        print(f"\nbig frames: {frames} calls of {frame_bytes / MIB:.2f} MiB: {len(answered)} "
              f"answered, {len(refused)} refused (backlog); daemon RSS {before / MIB:.0f} -> "
              f"{peak / MIB:.0f} MiB (+{growth / MIB:.1f} MiB; holding every frame would take "
              f"{frames * frame_bytes / MIB:.0f} MiB of frame text alone)")
        assert len(answered) + len(refused) == frames
        assert answered and refused
        assert growth < 80 * MIB, growth
    finally:
        daemon.stop()


async def test_an_idle_session_is_closed_with_4004(start_daemon, capture):
    daemon = await start_daemon(EXAI_WS_IDLE_TIMEOUT_SECS=0.5)
    async with connect(daemon.url) as ws:
        await _hello(ws)
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(5):
                await ws.recv()
        assert ws.close_code == protocol.CloseCode.IDLE_TIMEOUT
    points = capture.metrics()[names.EXAI_REJECTIONS]
    assert any(p.attributes.get(names.EXAI_REJECTION_REASON) == "idle_timeout" for p in points)


async def test_a_session_with_a_call_running_is_not_idle(start_daemon, fake_upstream):
    daemon = await start_daemon(EXAI_WS_IDLE_TIMEOUT_SECS=0.3)
    await fake_upstream.aconfig(latency_ms=1200)
    client = await daemon.client()
    try:
        reply = await client.call_tool("chat", {"prompt": "a slow one"}, timeout=10)
        assert reply["ok"] is True
    finally:
        await client.close()
