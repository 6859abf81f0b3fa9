"""One WebSocket connection to the daemon at a time, re-established whenever it drops.

All MCP requests share the current connection (the daemon demultiplexes by ``request_id``). When
the daemon goes away, :class:`app.client.DaemonClient` fails every reply still awaited with
``DaemonConnectionLost`` (so no call hangs), and the supervisor here reconnects with backoff and
jitter. A request that finds no connection waits a bounded time, then fails with
:class:`DaemonUnavailable` saying why.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque

from app.client import DaemonClient, HandshakeError
from app.errors import ExaiError
from otel.redaction import scrub

from .backoff import backoff_delays
from .settings import BridgeSettings

log = logging.getLogger(__name__)

# Late replies (to calls already cancelled or timed out) land in ``DaemonClient.unsolicited``;
# a long-lived bridge keeps only the last few instead of all of them.
UNSOLICITED_KEPT = 32


class DaemonUnavailable(ExaiError):
    """No connection to the daemon within the wait; the message says where and why."""


def new_session_id() -> str:
    """One daemon session id per bridge process, kept across reconnects, so the daemon's spans
    and logs of one editor session share ``mcp.session.id``."""
    return f"mcp-{uuid.uuid4().hex}"


class DaemonLink:
    def __init__(self, settings: BridgeSettings, session_id: str | None = None) -> None:
        self._settings = settings
        self.session_id = session_id or new_session_id()
        self._client: DaemonClient | None = None
        self._connected = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._last_error = "not connected yet"
        self.connections = 0

    @property
    def url(self) -> str:
        return self._settings.url

    @property
    def tool_timeout_secs(self) -> float:
        """The daemon's tool timeout: what the daemon reports in ``hello_ack``, else the same
        ``EXAI_TOOL_TIMEOUT_SECS`` setting the daemon reads."""
        reported = self._client.tool_timeout_secs if self._client else None
        return reported or self._settings.tool_timeout_secs

    def start(self) -> None:
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name="exai-mcp-daemon-link")

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        client, self._client = self._client, None
        self._connected.clear()
        if client is not None:
            await client.close()

    async def client(self) -> DaemonClient:
        """The live connection, waiting up to ``EXAI_MCP_CONNECT_WAIT_SECS`` for one."""
        try:
            async with asyncio.timeout(self._settings.options.connect_wait_secs):
                # A loop: the connection may drop again between the event and this task waking.
                while (client := self._client) is None:
                    await self._connected.wait()
        except TimeoutError:
            raise DaemonUnavailable(
                f"exai daemon unavailable at {self.url}: {self._last_error} (waited "
                f"{self._settings.options.connect_wait_secs:g}s; is `exai serve` running?)"
            ) from None
        return client

    async def _connect(self) -> DaemonClient:
        async with asyncio.timeout(self._settings.options.connect_timeout_secs):
            return await DaemonClient.connect(
                self.url, self._settings.token, session_id=self.session_id,
                open_timeout=self._settings.options.connect_timeout_secs)

    async def _supervise(self) -> None:
        """Connect, hold the connection until it closes, reconnect; forever, never raising."""
        options = self._settings.options
        delays = backoff_delays(options.reconnect_base_secs, options.reconnect_max_secs)
        failures = 0
        while True:
            try:
                client = await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure means: try again later
                self._last_error = _describe(error, (self._settings.token,))
                failures += 1
                # The first failure of a streak is worth a warning; the rest would be a flood.
                log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                        "cannot connect to the daemon at %s: %s; retrying with backoff",
                        self.url, self._last_error)
                await asyncio.sleep(next(delays))
                continue
            client.unsolicited = deque(maxlen=UNSOLICITED_KEPT)  # type: ignore[assignment]
            self.connections += 1
            log.info("connected to the daemon at %s (session %s, server %s)%s", self.url,
                     client.session_id, client.server,
                     f" after {failures} failed attempts" if failures else "")
            failures = 0
            delays = backoff_delays(options.reconnect_base_secs, options.reconnect_max_secs)
            self._client = client
            self._connected.set()
            try:
                await client.ws.wait_closed()
            finally:
                self._connected.clear()
                self._client = None
                self._last_error = f"connection closed (code {client.ws.close_code})"
                await client.close()
            log.warning("lost the daemon connection at %s (%s); calls in flight fail, "
                        "reconnecting", self.url, self._last_error)
            await asyncio.sleep(next(delays))


def _describe(error: Exception, secrets: tuple[str, ...]) -> str:
    """Why a connection failed, for the log and for every tool call's error while it lasts:
    scrubbed of ``secrets`` and controls, since the text comes from a library or the peer."""
    if isinstance(error, HandshakeError):
        text = f"the daemon refused the hello: {error.error}" + (
            " (check EXAI_WS_TOKEN)" if error.error == "unauthorized" else "")
    elif isinstance(error, TimeoutError):
        text = "timed out connecting"
    else:
        text = f"{type(error).__name__}: {error}"
    return scrub(text, secrets)
