"""A per-provider circuit breaker, so a failing provider is not hammered and callers fail fast.

closed --(N consecutive provider failures)--> open --(reset time passes)--> half_open
half_open --(the one probe call succeeds)--> closed;  half_open --(the probe fails)--> open

Only provider-side failures count (429, 5xx, timeouts, connection errors, malformed answers).
A call that ends for reasons of our own (a client cancel, a 4xx caused by the request) is
*neutral*: it neither counts as a failure nor closes the circuit, and frees the probe slot.
The clock is injectable, so tests move time instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

CircuitState = Literal["closed", "half_open", "open"]


@dataclass(frozen=True)
class Permit:
    """Leave to call the provider; ``probe`` marks the single trial call of a half-open circuit."""

    probe: bool = False


class CircuitBreaker:
    """State machine only; the caller reports outcomes. Safe within one event loop (no awaits)."""

    def __init__(self, failure_threshold: int, reset_secs: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failure_threshold = max(failure_threshold, 1)
        self.reset_secs = max(reset_secs, 0.0)
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_secs:
            return "half_open"
        return "open"

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_after(self) -> float:
        """Seconds until the circuit lets a probe through (0 unless it is open)."""
        if self._opened_at is None:
            return 0.0
        return max(self.reset_secs - (self._clock() - self._opened_at), 0.0)

    def try_acquire(self) -> Permit | None:
        """Leave for a call to go to the provider now, or None.

        In half_open, one probe at a time.
        """
        state = self.state
        if state == "closed":
            return Permit()
        if state == "half_open" and not self._probe_in_flight:
            self._probe_in_flight = True
            return Permit(probe=True)
        return None

    def record_success(self, permit: Permit | None = None) -> None:
        """The provider answered: it is healthy, whatever state we were in."""
        self._failures = 0
        self._opened_at = None
        self._probe_in_flight = False

    def record_failure(self, permit: Permit) -> None:
        """A provider-side failure. A failed probe re-opens; enough in a row open the circuit."""
        if permit.probe:
            self._open()
            return
        if self._opened_at is not None:
            return  # a call let through before the circuit opened; it changes nothing now
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._open()

    def record_neutral(self, permit: Permit) -> None:
        """The call ended for a reason that says nothing about the provider (cancel, 4xx)."""
        if permit.probe:
            self._probe_in_flight = False

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._probe_in_flight = False
