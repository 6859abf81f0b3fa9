"""Daemon ``progress`` and ``stream_chunk`` frames, relayed as MCP progress notifications.

The daemon client's reader hands frames over synchronously (:meth:`ProgressRelay.push`); a pump
task writes them to the MCP client in order. So a slow stdout never stalls the one reader that
serves every call on the connection, and no frame is ever mistaken for the result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from app.protocol import parse_interim

log = logging.getLogger(__name__)

Report = Callable[[float, float | None, str | None], Awaitable[None]]
# Progress notifications queued for one call at most; past it, the oldest news is the least useful.
MAX_QUEUED = 256
_DONE = object()


class ProgressRelay:
    def __init__(self, report: Report, forward_chunks: bool) -> None:
        self._report = report
        self._forward_chunks = forward_chunks
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._count = 0
        self._dropped = 0
        self._pump: asyncio.Task[None] | None = None

    @staticmethod
    def message_of(frame: dict[str, Any], forward_chunks: bool) -> str | None:
        """What a frame says to the MCP client, or None when it says nothing."""
        interim = parse_interim(frame)
        if interim is None or (interim.streamed and not forward_chunks):
            return None
        return interim.text

    def push(self, frame: dict[str, Any]) -> None:
        message = self.message_of(frame, self._forward_chunks)
        if message is None:
            return
        if self._queue.qsize() >= MAX_QUEUED:
            self._dropped += 1
            return
        self._queue.put_nowait(message)

    def start(self) -> None:
        self._pump = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while (message := await self._queue.get()) is not _DONE:
            self._count += 1
            try:
                await self._report(float(self._count), None, message)
            except Exception as error:  # noqa: BLE001 - progress is best effort
                log.debug("progress notification not sent: %s", error)

    async def finish(self, wait_secs: float = 2.0) -> None:
        """Send what is queued (bounded), then stop. Called before the result goes out, so
        every progress notification precedes the response."""
        if self._pump is None:
            return
        self._queue.put_nowait(_DONE)
        try:
            async with asyncio.timeout(wait_secs):
                await asyncio.shield(self._pump)
        except TimeoutError:
            self._pump.cancel()
        if self._dropped:
            log.debug("dropped %d progress notifications (queue full)", self._dropped)

    def abandon(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
