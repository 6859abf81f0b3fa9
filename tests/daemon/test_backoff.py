"""The one backoff formula and its two jitters (app/backoff.py)."""

from __future__ import annotations

import random

from app import backoff


def test_the_step_doubles_from_base_up_to_the_cap():
    assert [backoff.step(n, 0.5, 30.0) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff.step(-3, 0.5, 30.0) == 0.5
    assert backoff.step(10_000, 0.5, 30.0) == 30.0  # no overflow for a very long outage


def test_full_jitter_spans_zero_to_the_step():
    assert backoff.full_jitter(2, 0.5, 30.0, rand=lambda: 0.0) == 0.0
    assert backoff.full_jitter(2, 0.5, 30.0, rand=lambda: 0.999) < 2.0


def test_equal_jitter_never_waits_less_than_half_the_step():
    rng = random.Random(1)
    for attempt in range(12):
        ceiling = backoff.step(attempt, 0.5, 30.0)
        delays = {backoff.equal_jitter(attempt, 0.5, 30.0, rng.random) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(delays) > 1
