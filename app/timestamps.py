"""Time as the daemon stores and transmits it: ISO 8601 in UTC with a ``Z`` suffix."""

from __future__ import annotations

from datetime import UTC, datetime


def format_utc(value: datetime, timespec: str = "milliseconds") -> str:
    return value.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def utc_now_iso(timespec: str = "milliseconds") -> str:
    return format_utc(datetime.now(UTC), timespec)


def parse_iso(value: str) -> datetime | None:
    """An ISO 8601 time (``Z`` or an offset; none means UTC), or None when it is not one."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def normalize_iso(value: str) -> str:
    """One canonical form of an ISO time (milliseconds, ``Z``); other text is left as it is."""
    parsed = parse_iso(value)
    return format_utc(parsed) if parsed else value
