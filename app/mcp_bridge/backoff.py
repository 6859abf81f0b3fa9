"""Reconnect delays: exponential with jitter, so bridges restarted together do not reconnect in
lockstep when their daemon comes back."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

from app import backoff


def backoff_delays(base: float, cap: float,
                   rand: backoff.Rand = random.random) -> Iterator[float]:
    """Endless delays, attempt n waiting between half and all of ``min(cap, base * 2**n)``
    (:func:`app.backoff.equal_jitter`): never hammering a daemon that is down, and finding one
    that comes back within ``cap`` seconds."""
    return (backoff.equal_jitter(attempt, base, cap, rand) for attempt in itertools.count())
