"""``error.type`` for an exception, derived one way everywhere the daemon records one."""

from __future__ import annotations

import asyncio

CANCELLED = "cancelled"
# A call whose client closed the connection (or whose daemon stopped) before it was answered.
CLIENT_DISCONNECTED = "client_disconnected"


def error_type_of(exc: BaseException) -> str:
    """A low-cardinality ``error.type``: ``cancelled``, the exception's own declared
    ``error_type`` (the daemon's errors carry one), else its fully qualified class name, as the
    semantic conventions suggest."""
    if isinstance(exc, asyncio.CancelledError):
        return CANCELLED
    declared = getattr(exc, "error_type", None)
    if isinstance(declared, str) and declared:
        return declared
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"
