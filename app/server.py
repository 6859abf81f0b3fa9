"""The WebSocket listener: the browser guard, connection limits, the hello, then a ``Session``.

Stopping has one deadline (:meth:`WebSocketServer.stop`): the listener closes, calls still running
are cancelled, every session gets a 1001 close, and sockets whose clients do not complete the
close in time are aborted, so a client that never reads cannot hold the daemon up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import time
from collections import Counter
from http import HTTPStatus

from opentelemetry.trace import SpanKind, Status, StatusCode
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from otel import names
from otel.redaction import escape_controls

from . import __version__, browser_guard, protocol
from .auth import ServerToken, server_token
from .config import Settings
from .errors import ExaiError
from .protocol import CloseCode
from .session import (
    Session,
    SessionLimits,
    SessionServices,
    connection_attributes,
    metric_connection_attributes,
)

log = logging.getLogger(__name__)

# A wrong token is answered this much later: online guessing gets one try a second per socket.
AUTH_FAILURE_DELAY_SECS = 1.0
# Frames read from the socket ahead of the session; past this websockets stops reading.
INCOMING_QUEUE_FRAMES = 4
# How long a session's close handshake may take while the daemon stops, at most.
CLOSE_TIMEOUT_SECS = 2.0


class HandshakeRefused(ExaiError):
    def __init__(self, close_code: CloseCode, reason: str, reply: dict | None = None) -> None:
        super().__init__(reason)
        self.close_code = close_code
        self.reason = reason
        self.reply = reply


class WebSocketServer:
    """Accepts connections, authenticates them and hands each to a ``Session``."""

    def __init__(self, settings: Settings, services: SessionServices) -> None:
        self._settings = settings
        self._services = services
        self._inst = services.instruments
        self._server: Server | None = None
        self._token: ServerToken | None = None
        self._session_limits = SessionLimits(
            max_pending_frames=settings.session_max_pending_frames,
            max_pending_bytes=settings.session_max_pending_bytes,
            send_timeout_secs=settings.ws_send_timeout_secs,
            idle_timeout_secs=settings.ws_idle_timeout_secs)
        self._handshaking: Counter[str] = Counter()
        self._connections = 0
        self.sessions: set[Session] = set()
        self.port: int | None = None

    @property
    def serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    def stats(self) -> dict[str, int]:
        return {"connections": self._connections, "sessions": len(self.sessions),
                "in_flight_calls": sum(session.in_flight for session in self.sessions)}

    async def start(self) -> None:
        s = self._settings
        self._token = server_token(s)
        if self._token.value is None:
            log.warning("authentication is OFF (%s): any local process can connect and spend "
                        "the provider keys", self._token.source)
        else:
            log.info("authentication on: token from %s", self._token.source)
        # No permessage-deflate: a 30 KB compressed frame can inflate to the frame limit, and
        # loopback traffic gains nothing from compression.
        self._server = await serve(
            self._handle, s.ws_host, s.ws_port, max_size=s.ws_max_bytes,
            max_queue=INCOMING_QUEUE_FRAMES, compression=None,
            ping_interval=s.ws_ping_interval, ping_timeout=s.ws_ping_timeout,
            close_timeout=CLOSE_TIMEOUT_SECS, process_request=self._guard,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        log.info("listening on ws://%s:%s", s.ws_host, self.port)

    async def stop(self, deadline_secs: float = 5.0) -> None:
        """Stop within ``deadline_secs``: stop accepting, cancel calls, close every session
        (1001), then abort the sockets whose clients did not finish the close in time."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_secs
        for session in list(self.sessions):
            session.cancel_calls()
        closing = [asyncio.create_task(ws.close(CloseCode.GOING_AWAY, "daemon stopping"))
                   for ws in list(server.connections)]
        if closing:
            await asyncio.wait(closing, timeout=max(0.0, deadline - loop.time()))
        for ws in list(server.handlers):
            ws.transport.abort()
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                await server.wait_closed()
        except TimeoutError:
            log.warning("WebSocket server: %d session(s) still closing at the deadline",
                        len(self.sessions))

    def _guard(self, ws: ServerConnection, request: Request) -> Response | None:
        """Refuse browser pages (foreign ``Origin``) and DNS rebinding (foreign ``Host``) with 403
        before the upgrade, so no frame is ever exchanged with them."""
        s = self._settings
        reason = browser_guard.refusal(
            request.headers.get("Origin"), request.headers.get("Host"), bind_host=s.ws_host,
            allowed_origins=s.allowed_origins, allowed_hosts=s.allowed_hosts)
        if reason is None:
            return None
        self._inst.rejections.add(1, {names.EXAI_REJECTION_REASON: reason,
                                      names.EXAI_REJECTION_SCOPE: "handshake"})
        log.warning("upgrade refused (%s): Origin=%s Host=%s", reason,
                    escape_controls(str(request.headers.get("Origin")))[:200],
                    escape_controls(str(request.headers.get("Host")))[:200])
        return ws.respond(HTTPStatus.FORBIDDEN, f"{reason}: see EXAI_WS_ALLOWED_ORIGINS\n")

    async def _handle(self, ws: ServerConnection) -> None:
        """Admit the connection, run the hello, then the session. The per-client limit counts
        connections that have not yet authenticated (what an attacker without the token can
        hold); authenticated sessions count toward EXAI_MAX_CONNECTIONS only."""
        client = browser_guard.client_key(str(ws.remote_address[0]) if ws.remote_address else "")
        if (self._connections >= self._settings.max_connections
                or self._handshaking[client] >= self._settings.max_connections_per_client):
            self._inst.rejections.add(1, {names.EXAI_REJECTION_REASON: "too_many_connections",
                                          names.EXAI_REJECTION_SCOPE: "handshake"})
            await ws.close(CloseCode.POLICY, "too many connections")
            return
        self._connections += 1
        self._handshaking[client] += 1
        try:
            try:
                hello = await self._handshake(ws)
            finally:
                self._handshaking[client] -= 1
                if self._handshaking[client] <= 0:
                    del self._handshaking[client]
            if hello is not None:
                await self._serve_session(ws, hello)
        finally:
            self._connections -= 1

    async def _serve_session(self, ws: ServerConnection, hello: protocol.Hello) -> None:
        session_id = hello.session_id or ""
        session = Session(ws, session_id, self._services, self._session_limits,
                          protocol_version=hello.protocol_version)
        self.sessions.add(session)
        self._inst.sessions_active.add(1)
        started = time.perf_counter()
        log.info("session %s opened", session_id)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            self._inst.sessions_active.add(-1)
            self._inst.session_duration.record(time.perf_counter() - started)
            log.info("session %s closed", session_id)

    async def _handshake(self, ws: ServerConnection) -> protocol.Hello | None:
        """The accepted hello, its session id set; otherwise the socket is closed and None
        returned."""
        started = time.perf_counter()
        with self._inst.tracer.start_as_current_span(
                "initialize", kind=SpanKind.SERVER,
                attributes={**connection_attributes(ws),
                            names.MCP_METHOD_NAME: "initialize"}) as span:
            error_type = None
            try:
                hello = await self._hello(ws)
                session_id = hello.session_id or ""
                span.set_attribute(names.MCP_SESSION_ID, session_id)
                if hello.protocol_version:
                    span.set_attribute(names.MCP_PROTOCOL_VERSION, hello.protocol_version)
                ack = protocol.hello_ack(session_id, __version__, self._settings.tool_timeout_secs)
                await ws.send(protocol.encode(ack))
                return hello
            except HandshakeRefused as refused:
                error_type = refused.reason
                span.set_attribute(names.ERROR_TYPE, error_type)
                span.set_status(Status(StatusCode.ERROR, refused.reason))
                log.info("handshake refused: %s", refused.reason)
                try:
                    if refused.reply is not None:
                        await ws.send(protocol.encode(refused.reply))
                    await ws.close(refused.close_code, refused.reason)
                except ConnectionClosed:
                    pass
                return None
            except ConnectionClosed:
                error_type = "connection_closed"
                return None
            finally:
                attributes = {**metric_connection_attributes(None),
                              names.MCP_METHOD_NAME: "initialize"}
                if error_type:
                    attributes[names.ERROR_TYPE] = error_type
                self._inst.operation_duration.record(time.perf_counter() - started, attributes)

    async def _hello(self, ws: ServerConnection) -> protocol.Hello:
        try:
            async with asyncio.timeout(self._settings.ws_hello_timeout):
                message = await ws.recv()
        except TimeoutError:
            raise HandshakeRefused(CloseCode.HELLO_TIMEOUT, "hello_timeout") from None
        if isinstance(message, bytes):
            raise HandshakeRefused(CloseCode.NOT_JSON, "not_json")
        try:
            frame = protocol.parse_json_object(message)
        except protocol.FrameError:
            raise HandshakeRefused(CloseCode.NOT_JSON, "not_json") from None
        hello = protocol.parse_hello(frame)
        if hello is None:
            raise HandshakeRefused(CloseCode.MISSING_HELLO, "missing_hello",
                                   protocol.hello_refused("missing_hello"))
        expected = self._token.value if self._token is not None else None
        if expected is not None and not hmac.compare_digest(
                hello.token.encode(errors="replace"), expected.encode()):
            await asyncio.sleep(AUTH_FAILURE_DELAY_SECS)
            raise HandshakeRefused(CloseCode.UNAUTHORIZED, "unauthorized",
                                   protocol.hello_refused("unauthorized"))
        if hello.session_id is not None and not protocol.valid_session_id(hello.session_id):
            raise HandshakeRefused(CloseCode.MISSING_HELLO, "invalid_session_id",
                                   protocol.hello_refused("invalid_session_id"))
        return dataclasses.replace(hello, session_id=hello.session_id or protocol.new_session_id())
