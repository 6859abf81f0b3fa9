"""What can go wrong talking to Supabase, sorted into "retry later" and "never going to work"."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import httpx
from postgrest.exceptions import APIError

from otel.redaction import scrub

from ..errors import ExaiError

# SQLSTATE classes 22 (data exception: value too long, bad timestamp...) and 23 (integrity
# constraint: check, not-null, foreign key, unique) mean the row itself is bad: sending it again
# gives the same answer, so it is a poison row. Everything else (network, timeouts, 5xx, 401,
# 404 / PGRST205 "table not found" before the migration ran, 429) can heal and is retried.
_POISON_SQLSTATE = re.compile(r"^2[23][0-9A-Z]{3}$")


class ArchiveError(ExaiError):
    """Base of the archive's errors."""

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None,
                 details: Any = None, error_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint
        self.details = details
        self.error_type = error_type or code or type(self).__name__

    def summary(self) -> dict[str, Any]:
        """What is safe to log and to show in /health: no row values (``details`` may hold them)."""
        return {"code": self.code, "message": self.message, "hint": self.hint,
                "error_type": self.error_type}


class ArchiveUnavailable(ArchiveError):
    """Supabase could not be reached or could not serve now; the same request may work later."""


class RejectedWrite(ArchiveError):
    """Supabase refused the row itself (constraint or type error): retrying cannot help."""


def classify(exc: BaseException, secrets: Iterable[str] = ()) -> ArchiveError:
    """Turn whatever supabase-py / httpx raised into one of the archive's errors.

    Its message and hint reach the log, span events and ``/health`` (which needs no token), so
    they are scrubbed of ``secrets`` (the service key), secret-like runs and control characters.
    """
    if isinstance(exc, ArchiveError):
        return exc
    if isinstance(exc, APIError):
        code = str(exc.code) if exc.code is not None else None
        message = scrub(exc.message or "Supabase request failed", secrets)
        hint = scrub(str(exc.hint), secrets) if exc.hint else None
        cls = RejectedWrite if code and _POISON_SQLSTATE.match(code) else ArchiveUnavailable
        return cls(message, code=code, hint=hint, details=exc.details,
                   error_type=code or "api_error")
    if isinstance(exc, httpx.HTTPStatusError):
        status = str(exc.response.status_code)
        return ArchiveUnavailable(f"HTTP {status}", code=status, error_type=status)
    name = type(exc).__name__
    if isinstance(exc, (httpx.HTTPError, OSError, TimeoutError)):
        return ArchiveUnavailable(scrub(str(exc), secrets) or name, error_type=name)
    return ArchiveUnavailable(scrub(f"{name}: {exc}", secrets), error_type=name)


def is_poison(exc: BaseException) -> bool:
    return isinstance(classify(exc), RejectedWrite)
