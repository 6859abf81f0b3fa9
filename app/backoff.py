"""Exponential backoff, the one formula: each wait is drawn under ``min(cap, base * 2**attempt)``.

Two ways to draw it, for two situations:
- :func:`full_jitter` (anywhere in ``[0, step]``) for retrying a provider call, where spreading
  callers widely matters more than a minimum wait (the provider's ``Retry-After`` wins anyway);
- :func:`equal_jitter` (in ``[step/2, step]``) for reconnecting and redelivering, so a service
  that is down is never hammered, while one that comes back is found within ``cap``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

Rand = Callable[[], float]
"""A uniform draw in [0, 1); tests pass a fixed one."""

_MAX_DOUBLINGS = 62  # past this the step is at the cap anyway; keeps 2**n a small int


def step(attempt: int, base: float, cap: float) -> float:
    """The ceiling of wait number ``attempt`` (0 for the first)."""
    return min(cap, base * (2 ** min(max(attempt, 0), _MAX_DOUBLINGS)))


def full_jitter(attempt: int, base: float, cap: float, rand: Rand = random.random) -> float:
    return rand() * step(attempt, base, cap)


def equal_jitter(attempt: int, base: float, cap: float, rand: Rand = random.random) -> float:
    ceiling = step(attempt, base, cap)
    return ceiling / 2 + rand() * ceiling / 2
