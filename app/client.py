"""An asyncio client for the daemon's protocol, used by the CLI, the load generator and tests.

One reader task demultiplexes frames by ``request_id``, so many calls can share a connection and
progress or stream frames are never mistaken for a result.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from . import protocol
from .errors import ExaiError

RESULT_OPS = frozenset({"call_tool_res", "list_tools_res", "pong", "cancelled", "error"})
OnFrame = Callable[[dict[str, Any]], Awaitable[None] | None]


class HandshakeError(ExaiError):
    """The daemon refused the hello (``error`` is its reason) or closed before answering."""

    def __init__(self, error: str, close_code: int | None) -> None:
        super().__init__(f"hello refused: {error} (close code {close_code})")
        self.error = error
        self.close_code = close_code


class DaemonConnectionLost(ExaiError):
    """The connection closed before the reply arrived."""


@dataclass
class _Pending:
    future: asyncio.Future[dict[str, Any]]
    on_frame: OnFrame | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)


class DaemonClient:
    """``async with DaemonClient.connect(url, token) as client: await client.call_tool(...)``."""

    def __init__(self, ws: ClientConnection, ack: protocol.HelloAck) -> None:
        self.ws = ws
        self.session_id = ack.session_id
        self.server = ack.server
        self.tool_timeout_secs = ack.tool_timeout_secs
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]
        self._reader = asyncio.create_task(self._read())
        self.unsolicited: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, url: str, token: str = "", session_id: str | None = None,
                      max_size: int | None = 64 * 1024 * 1024,
                      open_timeout: float = 10.0) -> DaemonClient:
        ws = await connect(url, max_size=max_size, open_timeout=open_timeout)
        await ws.send(json.dumps(protocol.hello_request(token, session_id)))
        try:
            ack = protocol.parse_hello_ack(json.loads(await ws.recv()))
        except ConnectionClosed as closed:
            raise HandshakeError("closed", closed.rcvd.code if closed.rcvd else None) from None
        if not ack.ok:
            await ws.wait_closed()
            raise HandshakeError(str(ack.error), ws.close_code)
        return cls(ws, ack)

    async def __aenter__(self) -> DaemonClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    def new_request_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                frame = json.loads(message)
                request_id = frame.get("request_id")
                op = frame.get("op")
                pending = self._pending.get(("cancel" if op == "cancelled" else "call", request_id))
                if pending is None:
                    self.unsolicited.append(frame)
                    continue
                if op not in RESULT_OPS:
                    pending.frames.append(frame)
                    if pending.on_frame is not None:
                        outcome = pending.on_frame(frame)
                        if asyncio.iscoroutine(outcome):
                            await outcome
                elif not pending.future.done():
                    pending.future.set_result(frame)
        except ConnectionClosed:
            pass
        finally:
            for pending in self._pending.values():
                if not pending.future.done():
                    pending.future.set_exception(DaemonConnectionLost("connection closed"))

    async def request(self, frame: dict[str, Any], on_frame: OnFrame | None = None,
                      timeout: float | None = None) -> dict[str, Any]:
        """Send a frame with a ``request_id`` and wait for its final reply."""
        frame.setdefault("request_id", self.new_request_id())
        key = ("cancel" if frame["op"] == "cancel" else "call", frame["request_id"])
        pending = _Pending(asyncio.get_running_loop().create_future(), on_frame)
        self._pending[key] = pending
        try:
            await self.ws.send(json.dumps(frame))
            async with asyncio.timeout(timeout):
                reply = await pending.future
            reply["_frames"] = pending.frames
            return reply
        finally:
            self._pending.pop(key, None)

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None, *,
                        request_id: str | None = None, meta: dict[str, str] | None = None,
                        on_frame: OnFrame | None = None,
                        timeout: float | None = None) -> dict[str, Any]:
        """The final reply frame; ``protocol.parse_call_reply`` reads it."""
        frame = protocol.call_tool_request(name, arguments, request_id, meta)
        return await self.request(frame, on_frame, timeout)

    async def list_tools(self, meta: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return (await self.request(protocol.list_tools_request(meta=meta)))["tools"]

    async def ping(self) -> dict[str, Any]:
        return await self.request(protocol.ping_request())

    async def cancel(self, request_id: str) -> dict[str, Any]:
        return await self.request(protocol.cancel_request(request_id))
