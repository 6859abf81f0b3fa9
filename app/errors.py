"""The contract's error codes, the bridge's own codes, the root of the project's exceptions and
the one that carries a code to the reply."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    INVALID_REQUEST = "INVALID_REQUEST"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    UNAUTHORIZED = "UNAUTHORIZED"
    TOOL_NOT_FOUND = "TOOL_NOT_FOUND"
    INVALID_ARGUMENTS = "INVALID_ARGUMENTS"
    DUPLICATE_REQUEST_ID = "DUPLICATE_REQUEST_ID"
    OVER_CAPACITY = "OVER_CAPACITY"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    PROVIDER_ERROR = "PROVIDER_ERROR"
    PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
    CONTINUATION_NOT_FOUND = "CONTINUATION_NOT_FOUND"
    STORAGE_ERROR = "STORAGE_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"


# Codes meaning "the request itself was wrong" (an unknown tool, a malformed request): MCP answers
# them as JSON-RPC errors (the bridge, app/mcp_bridge/results.py) with this code, and telemetry
# records that code as ``error.type`` as the MCP conventions ask. Every other code is a tool that
# ran and failed (``isError`` in MCP), recorded with its own low-cardinality ``error.type``.
PROTOCOL_ERRORS = frozenset({ErrorCode.TOOL_NOT_FOUND, ErrorCode.VALIDATION_ERROR,
                             ErrorCode.INVALID_REQUEST})
JSONRPC_INVALID_PARAMS = -32602
# Failures the caller caused or asked for: logged as warnings, not errors, and left out of the
# daemon's availability (the SLOs count the rest).
CALLER_ERRORS = PROTOCOL_ERRORS | {ErrorCode.INVALID_ARGUMENTS, ErrorCode.UNAUTHORIZED,
                                   ErrorCode.DUPLICATE_REQUEST_ID, ErrorCode.CANCELLED,
                                   ErrorCode.CONTINUATION_NOT_FOUND}
# The ``error.type`` of an OVER_CAPACITY that one session's own limits caused (its rate, its
# backlog, its slots): the caller's doing too. Refusals for lack of global or provider capacity
# (``over_capacity``) count against the daemon.
RATE_LIMITED = "rate_limited"
BACKLOG = "backlog"
SESSION_BUSY = "session_busy"  # all of the session's EXAI_WS_SESSION_MAX_INFLIGHT slots in use
SESSION_LIMIT_ERRORS = frozenset({RATE_LIMITED, BACKLOG, SESSION_BUSY})
OVER_CAPACITY = "over_capacity"  # no global or provider slot: the daemon's shortfall


class ExaiError(Exception):
    """Root of every exception the daemon, its client and its bridge raise on purpose, so a
    caller can tell "ours, with a meaning" from a bug or a library's failure."""


class BridgeErrorCode(StrEnum):
    """Failures on the client's side of the wire: ``exai mcp`` sends them to the MCP client as
    ``data.code`` of a JSON-RPC error, and a reply without an error code reads as
    ``INVALID_REPLY``. The daemon never sends these: they are not part of its contract."""

    DAEMON_UNAVAILABLE = "DAEMON_UNAVAILABLE"
    DAEMON_CONNECTION_LOST = "DAEMON_CONNECTION_LOST"
    BRIDGE_DEADLINE_EXCEEDED = "BRIDGE_DEADLINE_EXCEEDED"
    INVALID_REPLY = "INVALID_REPLY"


class ToolError(ExaiError):
    """A failure with a code the client can act on; the message must hold no secret.

    ``error_type`` is the low-cardinality value recorded as ``error.type`` in telemetry; it
    defaults to the code.
    """

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None,
                 error_type: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.error_type = error_type or code.value

    @property
    def telemetry_error_type(self) -> str:
        """``error.type`` on spans and metrics: the JSON-RPC code for a protocol error."""
        if self.code in PROTOCOL_ERRORS:
            return str(JSONRPC_INVALID_PARAMS)
        return self.error_type

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body
