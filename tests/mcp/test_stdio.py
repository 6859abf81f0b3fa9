"""``exai mcp`` on raw pipes, as any MCP client in any language would drive it: stdout carries
protocol messages and nothing else, stdin closing ends it, and SIGTERM cancels what is in flight.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
from pathlib import Path
from typing import Any

import mcp_types as types

from .conftest import EXAI, TOKEN, otel_env


class RawBridge:
    """``exai mcp`` with its stdin and stdout as pipes; every stdout line is checked."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, url: str, sink, workdir: Path) -> RawBridge:
        env = {**os.environ, "EXAI_WS_URL": url, "EXAI_WS_TOKEN": TOKEN, **otel_env(sink)}
        proc = await asyncio.create_subprocess_exec(
            EXAI, "mcp", "--log-level", "DEBUG", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=open(workdir / "bridge.log", "ab"),
            env=env, cwd=workdir)
        return cls(proc)

    async def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"jsonrpc": "2.0", **message}) + "\n").encode())
        await self.proc.stdin.drain()

    async def read(self) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 15)
        if not line:
            return None
        message = json.loads(line)  # anything but JSON-RPC on stdout fails here
        assert message["jsonrpc"] == "2.0", line
        self.lines.append(message)
        return message

    async def until(self, check) -> dict[str, Any]:
        while (message := await self.read()) is not None:
            if check(message):
                return message
        raise AssertionError(f"stdout closed; saw {self.lines}")

    async def initialize(self) -> None:
        await self.send({"id": 1, "method": "initialize", "params": {
            "protocolVersion": types.LATEST_PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "raw-test", "version": "0"}}})
        await self.until(lambda m: m.get("id") == 1)
        await self.send({"method": "notifications/initialized"})


async def test_stdout_carries_only_protocol_and_stdin_eof_ends_the_bridge(daemon, sink, tmp_path):
    bridge = await RawBridge.start(daemon.url, sink, tmp_path)
    await bridge.initialize()
    await bridge.send({"id": 2, "method": "tools/list"})
    listing = await bridge.until(lambda m: m.get("id") == 2)
    assert "chat" in [tool["name"] for tool in listing["result"]["tools"]]
    await bridge.send({"id": 3, "method": "tools/call",
                       "params": {"name": "version", "arguments": {}}})
    version = await bridge.until(lambda m: m.get("id") == 3)
    assert json.loads(version["result"]["content"][0]["text"])["name"] == "exai-daemon"

    assert bridge.proc.stdin is not None
    bridge.proc.stdin.close()
    while await bridge.read() is not None:
        pass
    assert await asyncio.wait_for(bridge.proc.wait(), 15) == 0
    log = (tmp_path / "bridge.log").read_text()
    assert "forwarding to " + daemon.url in log and "tools/call version -> ok" in log


async def test_sigterm_cancels_calls_in_flight_and_flushes_spans(daemon, fake_llm, sink,
                                                                 tmp_path):
    await fake_llm.configure(latency_ms=8000)
    trace_id = secrets.token_hex(16)
    bridge = await RawBridge.start(daemon.url, sink, tmp_path)
    await bridge.initialize()
    await bridge.send({"id": 2, "method": "tools/call", "params": {
        "name": "chat", "arguments": {"prompt": "slow"},
        "_meta": {"progressToken": "p1",
                  "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}}})
    progress = await bridge.until(lambda m: m.get("method") == "notifications/progress")
    assert progress["params"]["progressToken"] == "p1"

    bridge.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(bridge.proc.wait(), 10) == 0

    def cancelled(spans) -> bool:
        return {(s.service, s.attributes.get("error.type")) for s in spans} >= {
            ("exai-mcp-bridge", "cancelled"), ("exai-daemon", "cancelled")}

    await sink.wait_for(trace_id, cancelled)
