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

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body
