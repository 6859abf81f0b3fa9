"""One daemon request per MCP request, inside a CLIENT span that joins the editor's trace.

The span's context travels to the daemon in the request's ``_meta`` (the MCP convention), so
editor -> bridge -> daemon -> provider is one trace. Each call gets a fresh random ``request_id``
(never the editor's JSON-RPC id, which restarts with every editor session), waits at most the
daemon's own tool timeout plus a margin, and, when the MCP client cancels it or the deadline
passes, sends the daemon a ``cancel`` so the LLM call really stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
import mcp_types as types
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from app import protocol
from app.client import DaemonConnectionLost
from app.errors import BridgeErrorCode, ErrorCode
from otel import names
from otel.propagation import extract_context, inject_meta, trace_id_hex

from . import results
from .link import DaemonLink, DaemonUnavailable
from .telemetry import BridgeInstruments

log = logging.getLogger(__name__)

CANCEL_SEND_SECS = 2.0
OnFrame = Callable[[dict[str, Any]], None]


def new_request_id() -> str:
    """128 random bits: unique across calls, reconnects and bridge processes."""
    return f"mcp-{uuid.uuid4().hex}"


def parent_context(meta: Mapping[str, Any] | None) -> otel_context.Context:
    """The context the CLIENT span joins: the current span (the SDK's SERVER span, itself joined
    to ``_meta``), or, when there is none, the ``_meta`` trace context directly."""
    current = otel_context.get_current()
    if trace.get_current_span(current).get_span_context().is_valid:
        return current
    return extract_context(meta)


class Forwarder:
    def __init__(self, link: DaemonLink, instruments: BridgeInstruments,
                 deadline_margin_secs: float) -> None:
        self._link = link
        self._inst = instruments
        self._margin = deadline_margin_secs
        address = urlsplit(link.url)
        self._server_attributes = {names.SERVER_ADDRESS: address.hostname or "",
                                   names.SERVER_PORT: address.port or 0,
                                   names.NETWORK_TRANSPORT: "tcp"}

    @property
    def deadline_secs(self) -> float:
        return self._link.tool_timeout_secs + self._margin

    @contextmanager
    def _operation(self, method: str, tool: str | None, request_id: str,
                   meta: Mapping[str, Any] | None) -> Iterator[tuple[trace.Span, dict[str, Any]]]:
        """A CLIENT span and one ``mcp.client.operation.duration`` record around a request.

        The yielded dict collects ``error.type`` and whether the tool turned out to exist, so the
        metric's labels stay bounded (unknown tool names are counted as ``_OTHER``).
        """
        attributes: dict[str, Any] = {
            names.MCP_METHOD_NAME: method, names.MCP_SESSION_ID: self._link.session_id,
            names.JSONRPC_REQUEST_ID: request_id, **self._server_attributes}
        if tool is not None:
            attributes[names.GEN_AI_TOOL_NAME] = tool[:names.MAX_ATTRIBUTE_LENGTH]
            attributes[names.GEN_AI_OPERATION_NAME] = "execute_tool"
        outcome: dict[str, Any] = {"error_type": None, "known_tool": True}
        started = time.perf_counter()
        span_name = f"{method} {tool}" if tool else method
        try:
            with self._inst.tracer.start_as_current_span(
                    span_name, context=parent_context(meta), kind=SpanKind.CLIENT,
                    attributes=attributes, record_exception=False,
                    set_status_on_exception=False) as span:
                try:
                    yield span, outcome
                except BaseException as error:
                    outcome["error_type"] = outcome["error_type"] or _error_type(error)
                    raise
                finally:
                    if not outcome["known_tool"]:
                        span.update_name(method)
                    if outcome["error_type"]:
                        span.set_attribute(names.ERROR_TYPE, outcome["error_type"])
                        span.set_status(Status(StatusCode.ERROR, outcome["error_type"]))
        finally:
            metric: dict[str, Any] = {names.MCP_METHOD_NAME: method}
            if tool is not None:
                metric[names.GEN_AI_TOOL_NAME] = tool if outcome["known_tool"] else \
                    names.OTHER_VALUE
            if outcome["error_type"]:
                metric[names.ERROR_TYPE] = outcome["error_type"]
            self._inst.operation_duration.record(time.perf_counter() - started, metric)

    async def list_tools(self, meta: Mapping[str, Any] | None) -> list[types.Tool]:
        request_id = new_request_id()
        with self._operation("tools/list", None, request_id, meta):
            client = await self._client()
            frame = protocol.list_tools_request(request_id, inject_meta())
            try:
                reply = await self._await_reply(client.request(frame, timeout=self.deadline_secs),
                                                "tools/list", request_id)
            except TimeoutError:
                raise results.bridge_error(
                    BridgeErrorCode.BRIDGE_DEADLINE_EXCEEDED,
                    f"no tools/list answer from the daemon within {self.deadline_secs:g}s",
                    request_id=request_id) from None
            if reply.get("op") != "list_tools_res":
                error = protocol.reply_error(reply)
                raise results.bridge_error(error.code,
                                           f"the daemon refused tools/list: {error.message}")
            return results.tools_from(reply.get("tools") or [])

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        meta: Mapping[str, Any] | None, on_frame: OnFrame) -> protocol.CallReply:
        """The daemon's final ``call_tool_res`` (or ``error``) frame for one call."""
        request_id = new_request_id()
        with self._operation("tools/call", name, request_id, meta) as (span, outcome):
            client = await self._client()
            deadline = self.deadline_secs
            started = time.perf_counter()
            try:
                frame = await self._await_reply(
                    client.call_tool(name, arguments, request_id=request_id, meta=inject_meta(),
                                     on_frame=on_frame, timeout=deadline),
                    f"tools/call {name}", request_id)
            except TimeoutError:
                await self._cancel_in_daemon(client, request_id)
                outcome["error_type"] = "timeout"
                raise results.bridge_error(
                    BridgeErrorCode.BRIDGE_DEADLINE_EXCEEDED,
                    f"no answer from the daemon for tools/call {name} within {deadline:g}s (its "
                    f"tool timeout plus {self._margin:g}s); the call was cancelled",
                    request_id=request_id, trace_id=trace_id_hex(span)) from None
            except asyncio.CancelledError:
                # The MCP client cancelled (or went away): stop the work in the daemon too.
                await self._cancel_in_daemon(client, request_id)
                outcome["error_type"] = "cancelled"
                raise
            reply = protocol.parse_call_reply(frame)
            outcome["error_type"] = results.error_type_of(reply)
            outcome["known_tool"] = outcome["error_type"] != ErrorCode.TOOL_NOT_FOUND
            log.info("tools/call %s -> %s in %.3fs (request_id %s, daemon trace_id %s)", name,
                     outcome["error_type"] or "ok", time.perf_counter() - started, request_id,
                     reply.trace_id)
            return reply

    async def _client(self):
        try:
            return await self._link.client()
        except DaemonUnavailable as error:
            raise results.bridge_error(BridgeErrorCode.DAEMON_UNAVAILABLE, str(error),
                                       url=self._link.url) from None

    async def _await_reply(self, pending: Any, what: str, request_id: str) -> dict[str, Any]:
        try:
            return await pending
        except DaemonConnectionLost:
            span = trace.get_current_span()
            raise results.bridge_error(
                BridgeErrorCode.DAEMON_CONNECTION_LOST,
                f"the connection to the exai daemon closed during {what}; its outcome is unknown "
                f"(request_id {request_id}, trace_id {trace_id_hex(span)}). The bridge is "
                "reconnecting; retry the request.",
                request_id=request_id, trace_id=trace_id_hex(span)) from None

    async def _cancel_in_daemon(self, client: Any, request_id: str) -> None:
        """Forward the cancel, shielded from the cancellation that caused it, and bounded."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_SEND_SECS):
            try:
                reply = await client.cancel(request_id)
                log.info("cancelled request %s in the daemon: %s", request_id, reply.get("ok"))
            except Exception as error:  # noqa: BLE001 - the daemon may be gone already
                log.info("could not cancel request %s in the daemon: %s", request_id, error)


def _error_type(error: BaseException) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    data = getattr(getattr(error, "error", None), "data", None)
    if isinstance(data, dict) and data.get("code"):
        return str(data["code"])
    return type(error).__name__
