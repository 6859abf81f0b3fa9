"""One authenticated WebSocket connection: reading requests, running calls, sending replies.

Each ``call_tool`` runs in its own task, registered under its ``request_id`` so that ``cancel``
reaches it and replies can never be mixed up. Every request gets a SERVER span parented on the
client's ``_meta`` trace context, and every reply carries that span's ``trace_id``.

A session holds bounded work whatever the client does (:class:`SessionLimits`): past a number
of frames (or bytes of frames) in processing, calls are refused with ``OVER_CAPACITY`` and other
frames are answered before the next one is read, so a client that does not read its answers
stops the read loop at its own socket instead of filling the daemon's memory; a reply the client
does not read within the send timeout ends the session (it is not reading); a session with
nothing to do closes after the idle timeout.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from otel import names
from otel.errors import CLIENT_DISCONNECTED
from otel.instruments import Instruments
from otel.propagation import extract_context, trace_id_hex, with_fresh_trace
from otel.redaction import scrub

from . import protocol
from .call_log import call_record
from .errors import (
    BACKLOG,
    OVER_CAPACITY,
    RATE_LIMITED,
    SESSION_BUSY,
    ErrorCode,
    ExaiError,
    ToolError,
)
from .limits import CapacityExceeded, Slots, TokenBucket
from .tools.base import CallContext, ToolRegistry

log = logging.getLogger(__name__)

CANCEL_WAIT_SECS = 5.0
# What a call refused for the session's backlog is told to wait before trying again.
BACKLOG_RETRY_AFTER_SECS = 1.0


@dataclass
class SessionServices:
    """What every session shares: tools, global limits, telemetry and the limits' settings."""

    tools: ToolRegistry
    global_slots: Slots
    instruments: Instruments
    telemetry_enabled: bool
    session_max_inflight: int
    slot_wait_secs: float
    rate_limit_per_sec: float
    rate_limit_burst: int
    tool_timeout_secs: float


@dataclass(frozen=True)
class SessionLimits:
    """What one session may hold: frames and bytes in processing, and how long it may wait."""

    max_pending_frames: int = 64
    max_pending_bytes: int = 8 * 1024 * 1024
    send_timeout_secs: float = 30.0
    idle_timeout_secs: float = 600.0


def connection_attributes(ws: ServerConnection,
                          protocol_version: str | None = None) -> dict[str, Any]:
    """What every SERVER span of a connection carries: transport, protocol, the client's
    address and port, and the MCP version the client announced."""
    attributes: dict[str, Any] = {names.NETWORK_TRANSPORT: "tcp",
                                  names.NETWORK_PROTOCOL_NAME: "websocket"}
    if ws.remote_address:
        host, port = ws.remote_address[:2]
        attributes[names.CLIENT_ADDRESS] = str(host)
        attributes[names.CLIENT_PORT] = int(port)
    if protocol_version:
        attributes[names.MCP_PROTOCOL_VERSION] = protocol_version
    return attributes


def metric_connection_attributes(protocol_version: str | None) -> dict[str, Any]:
    """The bounded part of ``connection_attributes``, for metrics: no address or port, and a
    version outside the published ones as _OTHER."""
    attributes: dict[str, Any] = {names.NETWORK_TRANSPORT: "tcp",
                                  names.NETWORK_PROTOCOL_NAME: "websocket"}
    if protocol_version:
        attributes[names.MCP_PROTOCOL_VERSION] = (
            protocol_version if protocol_version in protocol.MCP_PROTOCOL_VERSIONS
            else names.OTHER_VALUE)
    return attributes


class ClientCancelled(ExaiError):
    """Marks a call cancelled by the client's ``cancel`` (as opposed to a disconnect)."""


class Session:
    def __init__(self, ws: ServerConnection, session_id: str, services: SessionServices,
                 limits: SessionLimits | None = None, protocol_version: str | None = None) -> None:
        self.ws = ws
        self.session_id = session_id
        self._span_attributes = {**connection_attributes(ws, protocol_version),
                                 names.MCP_SESSION_ID: session_id}
        self._metric_attributes = metric_connection_attributes(protocol_version)
        self._services = services
        self._limits = limits or SessionLimits()
        self._inst = services.instruments
        self._pending_frames = 0
        self._pending_bytes = 0
        self._slots = Slots("session", services.session_max_inflight, services.slot_wait_secs)
        self._bucket = TokenBucket(services.rate_limit_per_sec, services.rate_limit_burst)
        self._calls: dict[str, asyncio.Task[None]] = {}
        self._other_tasks: set[asyncio.Task[None]] = set()
        self._cancel_requested: set[str] = set()

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    # --- the read loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve requests until the client goes away; then cancel whatever is still running."""
        try:
            while (message := await self._next_frame()) is not None:
                if self._backlogged():
                    await self._handle_inline(message)
                else:
                    self._handle_frame(message)
        except ConnectionClosed:
            pass
        finally:
            await self._cancel_all()

    async def _next_frame(self) -> str | bytes | None:
        """The next frame, or None once the session has been idle for the idle timeout (no frame
        received and nothing in processing), in which case the session is closed."""
        while True:
            try:
                async with asyncio.timeout(self._limits.idle_timeout_secs):
                    return await self.ws.recv()
            except TimeoutError:
                if self._pending_frames:
                    continue
                log.info("session %s closed after %gs idle", self.session_id,
                         self._limits.idle_timeout_secs)
                self._inst.rejections.add(1, {names.EXAI_REJECTION_REASON: "idle_timeout",
                                              names.EXAI_REJECTION_SCOPE: "session"})
                await self.ws.close(protocol.CloseCode.IDLE_TIMEOUT, "idle timeout")
                return None

    def _backlogged(self) -> bool:
        return (self._pending_frames >= self._limits.max_pending_frames
                or self._pending_bytes >= self._limits.max_pending_bytes)

    def _parse(self, message: str | bytes) -> protocol.Request | dict[str, Any]:
        """The request in a frame, or the error frame that answers it."""
        if isinstance(message, bytes):
            return protocol.error_frame(ErrorCode.INVALID_REQUEST,
                                        "binary frames are not supported; send JSON text")
        self._inst.websocket_io.add(len(message), {names.NETWORK_IO_DIRECTION: "receive"})
        try:
            return protocol.parse_request(protocol.parse_json_object(message))
        except protocol.FrameError as error:
            return protocol.error_frame(error.code, error.message, error.request_id)

    def _handle_frame(self, message: str | bytes) -> None:
        """Start the frame's work in its own task, accounted against the pending bounds."""
        request = self._parse(message)
        size = len(message)
        if isinstance(request, dict):
            self._spawn(self._send(request), size)
        elif request.op == "ping":
            self._spawn(self._send(protocol.pong(request.request_id)), size)
        elif request.op == "list_tools":
            self._spawn(self._list_tools(request), size)
        elif request.op == "cancel":
            self._spawn(self._cancel(request.request_id), size)
        else:
            duplicate = request.request_id in self._calls
            refusal = ToolError(
                ErrorCode.DUPLICATE_REQUEST_ID,
                "a call with this request_id is already in flight on this session",
            ) if duplicate else None
            task = self._start(self._call(request, refusal), size)
            if duplicate:
                self._track(task)
            else:
                self._calls[request.request_id] = task
                task.add_done_callback(functools.partial(self._forget, request.request_id))

    async def _handle_inline(self, message: str | bytes) -> None:
        """Past the pending bounds, answer in the read loop itself: a call is refused with
        OVER_CAPACITY at once, anything else is answered before the next frame is read. The
        session keeps reading (so keepalive pongs still arrive), holds no more work, and a
        client that does not read its answers stops the loop at the socket instead."""
        request = self._parse(message)
        if isinstance(request, dict):
            await self._send(request)
        elif request.op == "ping":
            await self._send(protocol.pong(request.request_id))
        elif request.op == "list_tools":
            await self._list_tools(request)
        elif request.op == "cancel":
            await self._cancel(request.request_id)
        else:
            await self._call(request, ToolError(
                ErrorCode.OVER_CAPACITY, "too much work in processing on this session",
                details={"retry_after": BACKLOG_RETRY_AFTER_SECS, "scope": "session"},
                error_type=BACKLOG))

    def _start(self, coro: Any, size: int) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._pending_frames += 1
        self._pending_bytes += size
        task.add_done_callback(lambda _t: self._finished(size))
        return task

    def _finished(self, size: int) -> None:
        self._pending_frames -= 1
        self._pending_bytes -= size

    def _spawn(self, coro: Any, size: int) -> None:
        self._track(self._start(coro, size))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._other_tasks.add(task)
        task.add_done_callback(self._other_tasks.discard)

    def _forget(self, request_id: str, task: asyncio.Task[None]) -> None:
        if self._calls.get(request_id) is task:
            del self._calls[request_id]
        self._cancel_requested.discard(request_id)

    async def _send(self, frame: dict[str, Any]) -> None:
        text = protocol.encode(frame)
        try:
            async with asyncio.timeout(self._limits.send_timeout_secs):
                await self.ws.send(text)
        except ConnectionClosed:
            return  # the client is gone; the read loop ends and cancels the session's calls
        except TimeoutError:
            self._not_reading()
            return
        self._inst.websocket_io.add(len(text), {names.NETWORK_IO_DIRECTION: "transmit"})

    def _not_reading(self) -> None:
        """The client has not read a reply within the send timeout: drop the connection, so
        what it does not read stops costing memory (no close handshake: it would not read it)."""
        if self.ws.transport.is_closing():
            return
        log.warning("session %s closed: the client read nothing for %gs", self.session_id,
                    self._limits.send_timeout_secs)
        self._inst.rejections.add(1, {names.EXAI_REJECTION_REASON: "not_reading",
                                      names.EXAI_REJECTION_SCOPE: "session"})
        self.ws.transport.abort()

    # --- requests ------------------------------------------------------------------------------

    def _parent_context(self, meta: dict[str, Any]):
        parent = extract_context(meta)
        return parent if self._services.telemetry_enabled else with_fresh_trace(parent)

    def _base_attributes(self, method: str, request_id: str) -> dict[str, Any]:
        return {**self._span_attributes, names.MCP_METHOD_NAME: method,
                names.JSONRPC_REQUEST_ID: request_id[:names.MAX_ATTRIBUTE_LENGTH]}

    async def _list_tools(self, request: protocol.Request) -> None:
        started = time.perf_counter()
        with self._inst.tracer.start_as_current_span(
                "tools/list", context=self._parent_context(request.meta), kind=SpanKind.SERVER,
                attributes=self._base_attributes("tools/list", request.request_id)) as span:
            tools = self._services.tools.describe()
            trace_id = trace_id_hex(span)
        self._inst.operation_duration.record(time.perf_counter() - started,
                                             {**self._metric_attributes,
                                              names.MCP_METHOD_NAME: "tools/list"})
        await self._send(protocol.list_tools_result(request.request_id, tools, trace_id))

    async def _call(self, request: protocol.Request, refusal: ToolError | None = None) -> None:
        """Run one tool call inside its SERVER span and send exactly one ``call_tool_res``;
        ``refusal`` is the answer decided before the call could start (duplicate id, backlog)."""
        assert request.name is not None
        known = request.name in self._services.tools
        tool_label = request.name if known else names.OTHER_VALUE
        attributes = self._base_attributes("tools/call", request.request_id)
        attributes[names.GEN_AI_OPERATION_NAME] = "execute_tool"
        # Unknown names stay off gen_ai.tool.name: span metrics turn it into a label.
        attributes[names.GEN_AI_TOOL_NAME] = tool_label
        if not known:
            attributes[names.EXAI_REQUESTED_TOOL] = request.name[:names.MAX_ATTRIBUTE_LENGTH]
        if request.correlation_id:
            correlation_id = request.correlation_id[:names.MAX_ATTRIBUTE_LENGTH]
            attributes[names.EXAI_CORRELATION_ID] = correlation_id
        span_name = f"tools/call {request.name}" if known else "tools/call"
        started = time.perf_counter()
        error_type: str | None = CLIENT_DISCONNECTED  # unless an answer is made
        reply: dict[str, Any] | None = None
        # The reply is sent inside the span, before the span ends and the duration is recorded:
        # the server's work includes writing the answer, and the client does not wait for the
        # telemetry that follows it.
        with self._inst.tracer.start_as_current_span(
                span_name, context=self._parent_context(request.meta), kind=SpanKind.SERVER,
                attributes=attributes, record_exception=False,
                set_status_on_exception=False) as span:
            try:
                reply, error_type = await self._answer(request, refusal, span)
                await self._send(reply)
            finally:
                duration = time.perf_counter() - started
                metric_attributes = {**self._metric_attributes, names.MCP_METHOD_NAME: "tools/call",
                                     names.GEN_AI_TOOL_NAME: tool_label}
                if error_type:
                    metric_attributes[names.ERROR_TYPE] = error_type
                if reply is not None and not reply.get("ok"):
                    metric_attributes[names.RPC_RESPONSE_STATUS_CODE] = reply["error"]["code"]
                self._inst.operation_duration.record(duration, metric_attributes)
                record = call_record(tool_label, request.request_id, reply, error_type, duration)
                log.log(record.level, "%s", record.message, extra=record.attributes)

    async def _answer(self, request: protocol.Request, refusal: ToolError | None,
                      span: trace.Span) -> tuple[dict[str, Any], str | None]:
        """The ``call_tool_res`` frame for one call, and its ``error.type`` (None on success)."""
        trace_id = trace_id_hex(span)
        try:
            return await self._execute(request, refusal, trace_id), None
        except ToolError as error:
            return self._failure(span, request.request_id, error, trace_id)
        except ClientCancelled:
            cancelled = ToolError(ErrorCode.CANCELLED, "cancelled by the client",
                                  error_type="cancelled")
            return self._failure(span, request.request_id, cancelled, trace_id)
        except asyncio.CancelledError:
            # The connection closed or the daemon is stopping: nobody is left to answer.
            span.set_attribute(names.ERROR_TYPE, CLIENT_DISCONNECTED)
            span.set_status(Status(StatusCode.ERROR, "connection closed during the call"))
            raise
        except Exception as error:  # noqa: BLE001 - the daemon must keep serving
            error_type = type(error).__name__
            # The exception's text may quote a prompt or a key: only its scrubbed form and the
            # type go to the log and the span, never the raw message.
            description = f"{error_type}: {scrub(str(error))}"
            log.error("tool %s failed unexpectedly: %s", request.name, description)
            log.debug("traceback of the failure above", exc_info=True)  # opt-in: may hold text
            span.add_event("exception", {names.EXCEPTION_TYPE: error_type,
                                         names.EXCEPTION_MESSAGE: description})
            failure = ToolError(ErrorCode.INTERNAL_ERROR,
                                "internal error; see the daemon log for this trace",
                                error_type=error_type)
            return self._failure(span, request.request_id, failure, trace_id)

    def _failure(self, span: trace.Span, request_id: str, error: ToolError,
                 trace_id: str) -> tuple[dict[str, Any], str]:
        """The failed reply and the ``error.type`` recorded for it: as the MCP conventions say,
        the status description is the error's message and the code goes to
        ``rpc.response.status_code``; a protocol error's type is its JSON-RPC code."""
        error_type = error.telemetry_error_type
        span.set_attributes({names.ERROR_TYPE: error_type,
                             names.RPC_RESPONSE_STATUS_CODE: error.code.value})
        span.set_status(Status(StatusCode.ERROR, error.message))
        if error.code is ErrorCode.OVER_CAPACITY:
            details = error.details or {}
            self._inst.rejections.add(1, {
                names.EXAI_REJECTION_REASON: error.error_type,
                names.EXAI_REJECTION_SCOPE: str(details.get("scope", "session"))})
        return protocol.call_failed(request_id, error.to_dict(), trace_id), error_type

    async def _execute(self, request: protocol.Request, refusal: ToolError | None,
                       trace_id: str) -> dict[str, Any]:
        if refusal is not None:
            raise refusal
        wait = self._bucket.take()
        if wait > 0:
            raise ToolError(ErrorCode.OVER_CAPACITY, "session rate limit exceeded",
                            details={"retry_after": round(wait, 3), "scope": "session"},
                            error_type=RATE_LIMITED)
        tool, arguments = self._services.tools.prepare(request.name or "", request.arguments)
        context = CallContext(
            request_id=request.request_id, session_id=self.session_id, trace_id=trace_id,
            progress=lambda message: self._send(protocol.progress(request.request_id, message)),
            stream_chunk=lambda chunk: self._send(protocol.stream_chunk(request.request_id, chunk)),
        )
        timeout = asyncio.timeout(self._services.tool_timeout_secs)
        try:
            async with timeout:
                async with self._slots.hold(), self._services.global_slots.hold():
                    in_flight_attributes = {names.GEN_AI_TOOL_NAME: tool.name}
                    self._inst.calls_in_flight.add(1, in_flight_attributes)
                    try:
                        result = await tool.run(arguments, context)
                    finally:
                        self._inst.calls_in_flight.add(-1, in_flight_attributes)
        except TimeoutError:
            if not timeout.expired():
                raise
            raise ToolError(ErrorCode.TIMEOUT,
                            f"tool {tool.name} exceeded {self._services.tool_timeout_secs:g}s",
                            details={"timeout_secs": self._services.tool_timeout_secs},
                            error_type="timeout") from None
        except CapacityExceeded as exc:
            raise ToolError(ErrorCode.OVER_CAPACITY, str(exc),
                            details={"retry_after": exc.retry_after, "scope": exc.scope},
                            error_type=SESSION_BUSY if exc.scope == "session"
                            else OVER_CAPACITY) from None
        except asyncio.CancelledError:
            if request.request_id in self._cancel_requested:
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                raise ClientCancelled() from None
            raise
        return protocol.call_ok(request.request_id, result.text, result.metadata, trace_id)

    async def _cancel(self, request_id: str) -> None:
        """Cancel a call in flight and answer once it has really stopped."""
        task = self._calls.get(request_id)
        if task is None:
            await self._send(protocol.cancelled(request_id, ok=False, error={
                "code": ErrorCode.INVALID_REQUEST.value,
                "message": "no call with that request_id is in flight"}))
            return
        self._cancel_requested.add(request_id)
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_WAIT_SECS)
        await self._send(protocol.cancelled(request_id, ok=True))

    def cancel_calls(self) -> None:
        """Cancel every call in flight (the daemon is stopping); their clients get the close."""
        for task in self._calls.values():
            task.cancel()

    async def _cancel_all(self) -> None:
        tasks = [*self._calls.values(), *self._other_tasks]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CANCEL_WAIT_SECS)
