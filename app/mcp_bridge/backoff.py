"""Reconnect delays: exponential with jitter, so bridges restarted together do not reconnect in
lockstep when their daemon comes back."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator


def backoff_delays(base: float, cap: float,
                   rand: Callable[[], float] = random.random) -> Iterator[float]:
    """Endless delays: attempt n waits between half and all of ``min(cap, base * 2**n)``.

    "Equal jitter": never less than half the step, so a down daemon is not hammered, and never
    more than ``cap``, so a daemon that comes back is found within ``cap`` seconds.
    """
    attempt = 0
    while True:
        step = min(cap, base * (2 ** min(attempt, 32)))
        yield step / 2 + rand() * step / 2
        attempt += 1
