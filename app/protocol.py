"""The wire format: parsing client frames and building every reply frame. Pure, no I/O.

One JSON object per text frame. Replies always carry ``op`` and, when the request had one (or the
daemon assigned one), ``request_id``, so concurrent calls never mix up.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from otel.redaction import has_lone_surrogate

from .errors import ErrorCode

SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{3,64}$")
MAX_REQUEST_ID_LENGTH = 128
REQUEST_OPS = frozenset({"list_tools", "call_tool", "ping", "cancel"})
# A JSON escape of a code point in U+D800-U+DFFF: the only way a frame can hold a surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

# Close codes of the handshake.
CLOSE_NOT_JSON = 4000
CLOSE_MISSING_HELLO = 4001
CLOSE_HELLO_TIMEOUT = 4002
CLOSE_UNAUTHORIZED = 4003
# Close codes of an open session.
CLOSE_IDLE_TIMEOUT = 4004
CLOSE_POLICY = 1008


class FrameError(Exception):
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


@dataclass(frozen=True)
class Hello:
    token: str
    session_id: str | None


def parse_hello(frame: dict[str, Any]) -> Hello | None:
    """The hello frame's fields, or None when the frame is not a hello."""
    if frame.get("op") != "hello":
        return None
    token = frame.get("token")
    session_id = frame.get("session_id")
    return Hello(token=token if isinstance(token, str) else "",
                 session_id=session_id if isinstance(session_id, str) and session_id else None)


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
