"""The WebSocket listener: connection limits, the hello handshake, then a ``Session``."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import Counter

from opentelemetry.trace import SpanKind, Status, StatusCode
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from otel import names

from . import __version__, protocol
from .config import Settings
from .session import Session, SessionServices

log = logging.getLogger(__name__)


class HandshakeRefused(Exception):
    def __init__(self, close_code: int, reason: str, reply: dict | None = None) -> None:
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
        self._per_client: Counter[str] = Counter()
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
        self._server = await serve(
            self._handle, s.ws_host, s.ws_port, max_size=s.ws_max_bytes,
            ping_interval=s.ws_ping_interval, ping_timeout=s.ws_ping_timeout,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        log.info("listening on ws://%s:%s", s.ws_host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, ws: ServerConnection) -> None:
        client = str(ws.remote_address[0]) if ws.remote_address else "unknown"
        if (self._connections >= self._settings.max_connections
                or self._per_client[client] >= self._settings.max_connections_per_client):
            await ws.close(protocol.CLOSE_POLICY, "too many connections")
            return
        self._connections += 1
        self._per_client[client] += 1
        try:
            session_id = await self._handshake(ws)
            if session_id is not None:
                await self._serve_session(ws, session_id)
        finally:
            self._connections -= 1
            self._per_client[client] -= 1
            if self._per_client[client] <= 0:
                del self._per_client[client]

    async def _serve_session(self, ws: ServerConnection, session_id: str) -> None:
        session = Session(ws, session_id, self._services)
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

    async def _handshake(self, ws: ServerConnection) -> str | None:
        """The session id when hello succeeds; otherwise the socket is closed and None returned."""
        started = time.perf_counter()
        with self._inst.tracer.start_as_current_span(
                "initialize", kind=SpanKind.SERVER,
                attributes={names.MCP_METHOD_NAME: "initialize",
                            names.NETWORK_TRANSPORT: "tcp"}) as span:
            error_type = None
            try:
                session_id = await self._hello(ws)
                span.set_attribute(names.MCP_SESSION_ID, session_id)
                ack = protocol.hello_ack(session_id, __version__, self._settings.tool_timeout_secs)
                await ws.send(protocol.encode(ack))
                return session_id
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
                attributes = {names.MCP_METHOD_NAME: "initialize"}
                if error_type:
                    attributes[names.ERROR_TYPE] = error_type
                self._inst.operation_duration.record(time.perf_counter() - started, attributes)

    async def _hello(self, ws: ServerConnection) -> str:
        try:
            async with asyncio.timeout(self._settings.ws_hello_timeout):
                message = await ws.recv()
        except TimeoutError:
            raise HandshakeRefused(protocol.CLOSE_HELLO_TIMEOUT, "hello_timeout") from None
        if isinstance(message, bytes):
            raise HandshakeRefused(protocol.CLOSE_NOT_JSON, "not_json")
        try:
            frame = protocol.parse_json_object(message)
        except protocol.FrameError:
            raise HandshakeRefused(protocol.CLOSE_NOT_JSON, "not_json") from None
        hello = protocol.parse_hello(frame)
        if hello is None:
            raise HandshakeRefused(protocol.CLOSE_MISSING_HELLO, "missing_hello",
                                   protocol.hello_refused("missing_hello"))
        if self._settings.auth_enabled and not hmac.compare_digest(
                hello.token.encode(), self._settings.ws_token.get_secret_value().encode()):
            raise HandshakeRefused(protocol.CLOSE_UNAUTHORIZED, "unauthorized",
                                   protocol.hello_refused("unauthorized"))
        if hello.session_id is not None and not protocol.valid_session_id(hello.session_id):
            raise HandshakeRefused(protocol.CLOSE_MISSING_HELLO, "invalid_session_id",
                                   protocol.hello_refused("invalid_session_id"))
        return hello.session_id or protocol.new_session_id()
