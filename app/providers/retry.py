"""When to retry a provider call and how long to wait first. Pure functions, no sleeping here.

Policy: retry 429, 5xx and connection failures; wait an exponential backoff with full jitter
(a uniform draw in ``[0, min(max, base * 2**attempt)]``, which spreads retries of many clients
best), or exactly what ``Retry-After`` asks. When ``Retry-After`` asks for longer than
``provider_retry_max_secs`` we give up at once and pass the hint to the client: retrying earlier
than the server allows only burns quota and tool time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from app import backoff

if TYPE_CHECKING:
    from app.config import Settings


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry and how long backoff may be."""

    max_retries: int = 3
    base_secs: float = 0.5
    max_secs: float = 20.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(max_retries=max(settings.provider_max_retries, 0),
                   base_secs=max(settings.provider_retry_base_secs, 0.0),
                   max_secs=max(settings.provider_retry_max_secs, 0.0))

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1


def is_retryable_status(status: int) -> bool:
    """429 (rate limited) and every 5xx are worth another try; other statuses are final."""
    return status == 429 or 500 <= status <= 599


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), None if absent
    or unreadable. A date in the past means "now" (0)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds == seconds and seconds != float("inf") else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max((when - now).total_seconds(), 0.0)


def backoff_delay(attempt: int, policy: RetryPolicy,
                  rand: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential backoff before retry number ``attempt`` (0 for the first retry)."""
    return backoff.full_jitter(attempt, policy.base_secs, policy.max_secs, rand)


def retry_delay(attempt: int, policy: RetryPolicy, retry_after: float | None,
                rand: Callable[[], float] = random.random) -> float | None:
    """Seconds to wait before retry number ``attempt``, or None when we should not retry at all
    (attempts exhausted, or the server asked us to wait longer than the policy allows)."""
    if attempt >= policy.max_retries:
        return None
    if retry_after is not None:
        return retry_after if retry_after <= policy.max_secs else None
    return backoff_delay(attempt, policy, rand)
