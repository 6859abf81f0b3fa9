"""The wire format, both sides: parsing client frames and building every reply frame (the
daemon), building requests and reading the replies (clients, the MCP bridge, benchmarks). Pure,
no I/O.

One JSON object per text frame. Replies always carry ``op`` and, when the request had one (or the
daemon assigned one), ``request_id``, so concurrent calls never mix up.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from otel.redaction import has_lone_surrogate

from .errors import BridgeErrorCode, ErrorCode, ExaiError

SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{3,64}$")
MAX_REQUEST_ID_LENGTH = 128
REQUEST_OPS = frozenset({"list_tools", "call_tool", "ping", "cancel"})
# A JSON escape of a code point in U+D800-U+DFFF: the only way a frame can hold a surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")



class CloseCode(IntEnum):
    """Every WebSocket close code the daemon sends; 4000-4003 end a refused handshake."""

    GOING_AWAY = 1001  # the daemon is stopping
    POLICY = 1008  # over the connection limits
    TOO_BIG = 1009  # a frame over EXAI_WS_MAX_BYTES (sent by websockets itself)
    NOT_JSON = 4000
    MISSING_HELLO = 4001
    HELLO_TIMEOUT = 4002
    UNAUTHORIZED = 4003
    IDLE_TIMEOUT = 4004


class FrameError(ExaiError):
    """A frame the daemon cannot act on; answered with an ``error`` frame, connection kept."""

    def __init__(self, code: ErrorCode, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


def parse_json_object(text: str) -> dict[str, Any]:
    """Decode one frame; anything but a JSON object is an ``INVALID_REQUEST``.

    Legal JSON the daemon cannot pass on is a ``VALIDATION_ERROR``: a number past Python's
    int/str digit limit, and a lone surrogate (``"\\udc00"``), which no UTF-8 encoder takes, so
    echoing it would kill the reply and logging it would make the exporter drop its whole batch.
    """
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise FrameError(ErrorCode.INVALID_REQUEST, "frame is not valid JSON") from None
    except ValueError:  # int max str digits: json raises it for a 4,301-digit literal
        raise FrameError(ErrorCode.VALIDATION_ERROR,
                         "frame has a number with too many digits") from None
    if not isinstance(value, dict):
        raise FrameError(ErrorCode.INVALID_REQUEST, "frame must be a JSON object")
    # Only an escape can put a surrogate in: the socket already refused invalid UTF-8.
    if _SURROGATE_ESCAPE.search(text) and _holds_lone_surrogate(value):
        raise FrameError(ErrorCode.VALIDATION_ERROR,
                         "frame holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not "
                         "text", _echoable_request_id(value))
    return value


def _holds_lone_surrogate(value: Any) -> bool:
    """True when any string of decoded JSON, key or value, holds a lone surrogate. Iterative:
    a frame nested as deep as the decoder allows must not overflow the stack here."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if has_lone_surrogate(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _echoable_request_id(frame: dict[str, Any]) -> str | None:
    """The frame's request id when it is itself valid text, so the client can match the error."""
    try:
        request_id = _request_id(frame)
    except FrameError:
        return None
    return None if request_id is None or has_lone_surrogate(request_id) else request_id


# MCP protocol versions as published (https://modelcontextprotocol.io/specification/versioning);
# metrics record one of these or _OTHER, so a client cannot grow their label sets.
MCP_PROTOCOL_VERSIONS = frozenset({"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"})
_PROTOCOL_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Hello:
    token: str
    session_id: str | None
    # The MCP version an (older) client announces as ``protocolVersion``; None if absent, or
    # not shaped like one (YYYY-MM-DD).
    protocol_version: str | None = None


def parse_hello(frame: dict[str, Any]) -> Hello | None:
    """The hello frame's fields, or None when the frame is not a hello."""
    if frame.get("op") != "hello":
        return None
    token = frame.get("token")
    session_id = frame.get("session_id")
    version = frame.get("protocolVersion")
    return Hello(token=token if isinstance(token, str) else "",
                 session_id=session_id if isinstance(session_id, str) and session_id else None,
                 protocol_version=version if isinstance(version, str)
                 and _PROTOCOL_VERSION.fullmatch(version) else None)


def valid_session_id(session_id: str) -> bool:
    return bool(SESSION_ID_PATTERN.fullmatch(session_id))


def new_session_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Request:
    """A request after hello. ``request_id`` is the client's, or one the daemon assigned."""

    op: str
    request_id: str
    name: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None


def _request_id(frame: dict[str, Any]) -> str | None:
    """``request_id``, or the legacy ``id``; integers are accepted as their decimal string, so
    they obey the same length cap."""
    raw = frame.get("request_id", frame.get("id"))
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise FrameError(ErrorCode.VALIDATION_ERROR, "request_id must be a string")
    value = str(raw)
    if not value or len(value) > MAX_REQUEST_ID_LENGTH:
        raise FrameError(ErrorCode.VALIDATION_ERROR,
                         f"request_id must be 1-{MAX_REQUEST_ID_LENGTH} characters")
    return value


def parse_request(frame: dict[str, Any]) -> Request:
    """Validate a post-hello frame. Raises ``FrameError`` with the request id when it is known."""
    request_id = _request_id(frame)
    op = frame.get("op")
    if not isinstance(op, str) or op not in REQUEST_OPS:
        shown = op if isinstance(op, str) else type(op).__name__
        raise FrameError(ErrorCode.INVALID_REQUEST, f"unknown op {shown!r}"[:200], request_id)
    if op == "cancel":
        if request_id is None:
            raise FrameError(ErrorCode.VALIDATION_ERROR, "cancel needs the request_id of a call")
        return Request(op=op, request_id=request_id)
    request_id = request_id or f"srv-{uuid.uuid4().hex}"
    meta = frame.get("_meta") or {}
    if not isinstance(meta, dict):
        meta = {}  # trace context is best effort: a malformed _meta starts a new trace
    if op != "call_tool":
        return Request(op=op, request_id=request_id, meta=meta)

    name = frame.get("name")
    if not isinstance(name, str) or not name:
        raise FrameError(ErrorCode.VALIDATION_ERROR, "call_tool needs a tool name", request_id)
    arguments = frame.get("arguments", {})
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise FrameError(ErrorCode.VALIDATION_ERROR, "arguments must be a JSON object", request_id)
    correlation_id = frame.get("correlation_id")
    return Request(op=op, request_id=request_id, name=name, arguments=arguments, meta=meta,
                   correlation_id=correlation_id if isinstance(correlation_id, str) else None)


# --- replies ------------------------------------------------------------------------------------

def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def hello_ack(session_id: str, server_version: str, tool_timeout_secs: float) -> dict[str, Any]:
    """The tool timeout is announced so clients and bridges derive their deadlines from it."""
    return {"op": "hello_ack", "ok": True, "session_id": session_id,
            "server": {"name": "exai-daemon", "version": server_version,
                       "limits": {"tool_timeout_secs": tool_timeout_secs}}}


def hello_refused(error: str) -> dict[str, Any]:
    return {"op": "hello_ack", "ok": False, "error": error}


def error_frame(code: ErrorCode, message: str, request_id: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"op": "error", "error": {"code": code.value, "message": message}}
    if request_id is not None:
        frame["request_id"] = request_id
    return frame


def call_ok(request_id: str, text: str, metadata: dict[str, Any], trace_id: str) -> dict[str, Any]:
    return {"op": "call_tool_res", "request_id": request_id, "ok": True,
            "outputs": [{"type": "text", "text": text}], "metadata": metadata,
            "trace_id": trace_id}


def call_failed(request_id: str, error: dict[str, Any], trace_id: str) -> dict[str, Any]:
    return {"op": "call_tool_res", "request_id": request_id, "ok": False, "error": error,
            "trace_id": trace_id}


def progress(request_id: str, message: str) -> dict[str, Any]:
    return {"op": "progress", "request_id": request_id, "message": message}


def stream_chunk(request_id: str, chunk: str) -> dict[str, Any]:
    return {"op": "stream_chunk", "request_id": request_id, "chunk": chunk}


def pong(request_id: str) -> dict[str, Any]:
    return {"op": "pong", "request_id": request_id}


def list_tools_result(request_id: str, tools: list[dict[str, Any]],
                      trace_id: str) -> dict[str, Any]:
    return {"op": "list_tools_res", "request_id": request_id, "tools": tools,
            "trace_id": trace_id}


def cancelled(request_id: str, ok: bool, error: dict[str, Any] | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"op": "cancelled", "request_id": request_id, "ok": ok}
    if error:
        frame["error"] = error
    return frame


# --- client side: requests, and the replies a client reads -------------------------------------

def hello_request(token: str, session_id: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"op": "hello", "token": token}
    if session_id:
        frame["session_id"] = session_id
    return frame


def call_tool_request(name: str, arguments: dict[str, Any] | None = None,
                      request_id: str | None = None,
                      meta: dict[str, Any] | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"op": "call_tool", "name": name, "arguments": arguments or {}}
    if request_id:
        frame["request_id"] = request_id
    if meta:
        frame["_meta"] = meta
    return frame


def list_tools_request(request_id: str | None = None,
                       meta: dict[str, Any] | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"op": "list_tools"}
    if request_id:
        frame["request_id"] = request_id
    if meta:
        frame["_meta"] = meta
    return frame


def ping_request(request_id: str | None = None) -> dict[str, Any]:
    return {"op": "ping", "request_id": request_id} if request_id else {"op": "ping"}


def cancel_request(request_id: str) -> dict[str, Any]:
    """Cancels the call in flight whose ``request_id`` this is (a cancel has no id of its own)."""
    return {"op": "cancel", "request_id": request_id}


@dataclass(frozen=True)
class HelloAck:
    """The daemon's answer to ``hello``: a session, or the reason it refused (``session_id``
    is empty then)."""

    ok: bool
    session_id: str
    server: dict[str, Any]
    error: str | None

    @property
    def tool_timeout_secs(self) -> float | None:
        """The tool timeout the daemon announced, so clients derive their deadlines from it."""
        reported = _dict(self.server.get("limits")).get(
            "tool_timeout_secs", self.server.get("tool_timeout_secs"))
        if isinstance(reported, (int, float)) and not isinstance(reported, bool) and reported > 0:
            return float(reported)
        return None


def parse_hello_ack(frame: dict[str, Any]) -> HelloAck:
    session_id = frame.get("session_id")
    ok = frame.get("op") == "hello_ack" and frame.get("ok") is True and isinstance(
        session_id, str) and bool(session_id)
    error = frame.get("error")
    return HelloAck(ok=ok, session_id=session_id if ok and isinstance(session_id, str) else "",
                    server=_dict(frame.get("server")),
                    error=None if ok else str(error if error is not None else "invalid_reply"))


@dataclass(frozen=True)
class ReplyError:
    """A reply's ``error``. ``code`` is kept as sent: a newer daemon may send a code this client
    does not know, and it compares equal to the matching ``ErrorCode`` member either way."""

    code: str
    message: str
    details: dict[str, Any] | None = None

    @property
    def retry_after(self) -> float | None:
        """``details.retry_after``: the seconds after which the daemon expects a retry to be
        accepted (every ``OVER_CAPACITY``, and a provider error that had a ``Retry-After``);
        None when absent or not a non-negative number."""
        value = (self.details or {}).get("retry_after")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value)
        return None

    @property
    def scope(self) -> str | None:
        """``details.scope`` of an ``OVER_CAPACITY``: which limit refused the call (``session``,
        ``global``, ``provider``)."""
        value = (self.details or {}).get("scope")
        return value if isinstance(value, str) else None


def reply_error(frame: dict[str, Any]) -> ReplyError:
    """The error of a failed reply; a reply with none is the client's ``INVALID_REPLY``."""
    error = _dict(frame.get("error"))
    details = error.get("details")
    return ReplyError(code=str(error.get("code") or BridgeErrorCode.INVALID_REPLY),
                      message=str(error.get("message") or "the daemon sent no error message"),
                      details=details if isinstance(details, dict) and details else None)


@dataclass(frozen=True)
class TokenUsage:
    """``metadata.usage`` of a chat reply; a field the provider did not report is None."""

    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None
    reasoning_tokens: int | None = None  # part of output_tokens, for thinking models


@dataclass(frozen=True)
class CallReply:
    """The final reply to a ``call_tool``: ``call_tool_res``, or the ``error`` frame refusing it."""

    op: str
    request_id: str | None
    ok: bool
    texts: tuple[str, ...]
    metadata: dict[str, Any]
    trace_id: str | None
    error: ReplyError | None

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""

    @property
    def usage(self) -> TokenUsage | None:
        """None when the reply carries no usage (``null`` or absent): unknown, not zero."""
        usage = self.metadata.get("usage")
        if not isinstance(usage, dict):
            return None
        return TokenUsage(*(_int_or_none(usage.get(key)) for key in
                            ("input_tokens", "output_tokens", "cached_input_tokens",
                             "reasoning_tokens")))

    @property
    def cost_usd(self) -> float | None:
        cost = self.metadata.get("cost_usd")
        return float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) \
            else None


def parse_call_reply(frame: dict[str, Any]) -> CallReply:
    op = str(frame.get("op"))
    ok = op == "call_tool_res" and frame.get("ok") is True
    outputs = frame.get("outputs") if ok else None
    texts = tuple(str(item.get("text", "")) for item in outputs or ()
                  if isinstance(item, dict) and item.get("type") == "text")
    request_id, trace_id = frame.get("request_id"), frame.get("trace_id")
    return CallReply(op=op, request_id=request_id if isinstance(request_id, str) else None,
                     ok=ok, texts=texts, metadata=_dict(frame.get("metadata")),
                     trace_id=trace_id if isinstance(trace_id, str) else None,
                     error=None if ok else reply_error(frame))


@dataclass(frozen=True)
class Interim:
    """A frame that precedes a call's result: ``progress`` news, or a ``stream_chunk`` of the
    answer (``streamed``)."""

    streamed: bool
    text: str


def parse_interim(frame: dict[str, Any]) -> Interim | None:
    """The frame as an ``Interim``, or None when it is neither ``progress`` nor ``stream_chunk``."""
    op = frame.get("op")
    if op == "progress":
        return Interim(streamed=False, text=str(frame.get("message", "")))
    if op == "stream_chunk":
        return Interim(streamed=True, text=str(frame.get("chunk", "")))
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
