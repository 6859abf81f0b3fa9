"""The circuit breaker's state machine, driven by a manual clock."""

from __future__ import annotations

from app.providers.circuit import CircuitBreaker, Permit

from .conftest import ManualClock


def _breaker(clock: ManualClock, threshold: int = 3, reset: float = 10.0) -> CircuitBreaker:
    return CircuitBreaker(threshold, reset, clock=clock)


def test_opens_after_consecutive_failures_only() -> None:
    clock = ManualClock()
    breaker = _breaker(clock)
    for _ in range(2):
        breaker.record_failure(breaker.try_acquire())
    breaker.record_success(breaker.try_acquire())  # a success resets the count
    for _ in range(2):
        breaker.record_failure(breaker.try_acquire())
    assert breaker.state == "closed"
    breaker.record_failure(breaker.try_acquire())
    assert breaker.state == "open"
    assert breaker.try_acquire() is None
    assert breaker.retry_after() == 10.0


def test_half_open_lets_one_probe_through_and_closes_on_success() -> None:
    clock = ManualClock()
    breaker = _breaker(clock, threshold=1)
    breaker.record_failure(breaker.try_acquire())
    clock.now += 10.0
    assert breaker.state == "half_open"
    probe = breaker.try_acquire()
    assert probe == Permit(probe=True)
    assert breaker.try_acquire() is None  # only one probe at a time
    breaker.record_success(probe)
    assert breaker.state == "closed"
    assert breaker.try_acquire() == Permit(probe=False)


def test_failed_probe_reopens_for_a_full_reset_period() -> None:
    clock = ManualClock()
    breaker = _breaker(clock, threshold=1)
    breaker.record_failure(breaker.try_acquire())
    clock.now += 15.0
    breaker.record_failure(breaker.try_acquire())
    assert breaker.state == "open"
    clock.now += 9.9
    assert breaker.state == "open"
    clock.now += 0.1
    assert breaker.state == "half_open"


def test_neutral_outcome_frees_the_probe_without_changing_state() -> None:
    clock = ManualClock()
    breaker = _breaker(clock, threshold=1)
    breaker.record_failure(breaker.try_acquire())
    clock.now += 10.0
    probe = breaker.try_acquire()
    assert probe is not None
    breaker.record_neutral(probe)  # e.g. the client cancelled the probe call
    assert breaker.state == "half_open"
    assert breaker.try_acquire() == Permit(probe=True)


def test_late_failures_of_calls_started_before_opening_change_nothing() -> None:
    clock = ManualClock()
    breaker = _breaker(clock, threshold=1)
    early = breaker.try_acquire()
    breaker.record_failure(breaker.try_acquire())
    clock.now += 9.0
    breaker.record_failure(early)  # does not push the reopening time out
    clock.now += 1.0
    assert breaker.state == "half_open"
