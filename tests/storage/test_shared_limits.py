"""Provider limits shared across daemons (EXAI_SHARED_PROVIDER_LIMITS) on a real redis-server.

Each "daemon" is a ``SharedLimits`` of its own on a Redis client of its own, as each process
builds it; a killed holder is a real process killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from redis.asyncio import Redis

from app.config import Settings
from app.daemon import build_provider_slots
from app.limits import CapacityExceeded, Slots
from app.providers.table import PROVIDERS
from app.shared_limits import KEY_PREFIX, LOCAL, REDIS_TIMEOUT_SECS, SHARED, SharedLimits
from otel import names

LOG = "app.shared_limits"
ROOT = Path(__file__).resolve().parents[2]


class InFlight:
    """Calls inside a slot now, and the most seen at once."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    @contextmanager
    def inside(self) -> Iterator[None]:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            yield
        finally:
            self.now -= 1


def fleet(make_client, url: str, count: int = 3, retry_secs: float = 5.0,
          **kwargs) -> list[SharedLimits]:
    """``count`` daemons' shared limits, each on a client (connection pool) of its own."""
    return [SharedLimits(make_client(url), retry_secs, **kwargs) for _ in range(count)]


async def load(slots: list[Slots], workers: int, calls: int, secs: float) -> tuple[InFlight,
                                                                                 list[InFlight]]:
    """``workers`` callers per daemon, ``calls`` each, each holding a slot ``secs``."""
    total = InFlight()
    each = [InFlight() for _ in slots]

    async def worker(index: int) -> None:
        for _ in range(calls):
            async with slots[index].hold():
                with total.inside(), each[index].inside():
                    await asyncio.sleep(secs)

    await asyncio.gather(*(worker(i) for i in range(len(slots)) for _ in range(workers)))
    return total, each


def unique_name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


async def test_the_limit_holds_across_daemons_under_load(own_redis, make_client) -> None:
    limit, workers, calls = 3, 5, 4
    name = unique_name()
    slots = [d.slots("provider", name, limit, wait_secs=30) for d in fleet(make_client,
                                                                          own_redis.url)]
    started = time.monotonic()
    total, each = await load(slots, workers, calls, secs=0.05)
    elapsed = time.monotonic() - started
    print(f"\nMEASURED shared limit: {len(slots)} daemons x {workers} callers x {calls} calls, "
          f"limit {limit}: at most {total.most} in flight across all (per daemon "
          f"{[e.most for e in each]}), {len(slots) * workers * calls} calls in {elapsed:.2f} s")
    assert total.most == limit
    async with Redis.from_url(own_redis.url, decode_responses=True) as raw:
        assert await raw.zcard(f"{KEY_PREFIX}{name}") == 0  # every slot given back


async def test_the_one_past_the_limit_waits_then_is_over_capacity(own_redis, make_client,
                                                                  telemetry) -> None:
    name = unique_name()
    a, b, c = fleet(make_client, own_redis.url)
    release = asyncio.Event()
    held = [asyncio.Event(), asyncio.Event()]

    async def hold(daemon: SharedLimits, index: int) -> None:
        async with daemon.slots("provider", name, 2, wait_secs=1).hold():
            held[index].set()
            await release.wait()

    holders = [asyncio.create_task(hold(a, 0)), asyncio.create_task(hold(b, 1))]
    await asyncio.gather(*(event.wait() for event in held))
    tracer = telemetry.tracer_provider.get_tracer("test")
    third = c.slots("provider", name, 2, wait_secs=0.6)
    started = time.monotonic()
    with pytest.raises(CapacityExceeded) as refused:
        async with third.hold():
            pytest.fail("a third slot under a limit of two")
    waited = time.monotonic() - started
    assert refused.value.scope == "provider" and refused.value.retry_after == 1.0
    assert 0.6 <= waited < 1.5
    assert third.in_use == 0  # its local slot was given back

    release.set()
    await asyncio.gather(*holders)
    started = time.monotonic()
    with tracer.start_as_current_span("call"):
        async with third.hold():
            admitted = time.monotonic() - started
    print(f"\nMEASURED over capacity: the third caller waited {waited:.2f} s "
          f"(EXAI_SLOT_WAIT_SECS 0.6) and was refused; admitted {admitted * 1000:.0f} ms "
          "after the holders left")
    assert admitted < 0.5
    [span] = telemetry.finished("call")
    assert span.attributes[names.EXAI_PROVIDER_LIMIT_MODE] == SHARED


HOLDER = """
import asyncio, sys
from app.shared_limits import SharedLimits
from app.storage.redis_client import create_redis_client

async def main():
    limits = SharedLimits(create_redis_client(sys.argv[1]), 5.0, lease_secs=float(sys.argv[2]))
    async with limits.slots("provider", sys.argv[3], 1, wait_secs=1).hold():
        print("held", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_killed_holder_frees_its_slot_after_the_lease(own_redis, make_client) -> None:
    lease, name = 1.0, unique_name()
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, own_redis.url, str(lease), name, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE)
    try:
        assert holder.stdout is not None
        async with asyncio.timeout(20):
            assert (await holder.stdout.readline()).strip() == b"held"
        [other] = fleet(make_client, own_redis.url, count=1)
        slots = other.slots("provider", name, 1, wait_secs=0.2)
        # Renewed while its holder lives: still held after more than two lease lengths.
        await asyncio.sleep(2.5 * lease)
        with pytest.raises(CapacityExceeded):
            async with slots.hold():
                pass
        async with Redis.from_url(own_redis.url, decode_responses=True) as raw:
            ttl_ms = await raw.pttl(f"{KEY_PREFIX}{name}")
        assert 0 < ttl_ms <= lease * 1000
        holder.kill()  # SIGKILL: no release, its connection simply gone
        await holder.wait()
        killed = time.monotonic()
        async with other.slots("provider", name, 1, wait_secs=5).hold():
            freed = time.monotonic() - killed
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
    print(f"\nMEASURED dead holder: slot held {2.5 * lease:.1f} s past a {lease:.1f} s lease "
          f"while its process lived (renewed); free {freed:.2f} s after SIGKILL; "
          f"key TTL {ttl_ms} ms")
    assert lease / 2 <= freed <= lease + 0.75  # expired, not given back


async def test_a_cancelled_holder_gives_its_slot_back_at_once(own_redis, make_client) -> None:
    name = unique_name()
    a, b = fleet(make_client, own_redis.url, count=2)
    held = asyncio.Event()

    async def hold() -> None:
        async with a.slots("provider", name, 1, wait_secs=1).hold():
            held.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(hold())
    await held.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    async with b.slots("provider", name, 1, wait_secs=0.1).hold():
        pass


async def test_redis_stopped_mid_run_falls_back_to_the_local_limit_and_recovers(
        own_redis, make_client, telemetry, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    limit, name = 2, unique_name()
    daemons = fleet(make_client, own_redis.url, retry_secs=0.3)
    slots = [d.slots("provider", name, limit, wait_secs=5) for d in daemons]
    before, _ = await load(slots, workers=4, calls=2, secs=0.05)
    assert before.most == limit

    own_redis.kill()
    tracer = telemetry.tracer_provider.get_tracer("test")
    started = time.monotonic()
    with tracer.start_as_current_span("call"):
        async with slots[0].hold():
            pass
    first = time.monotonic() - started
    started = time.monotonic()
    down, each = await load(slots, workers=4, calls=6, secs=0.05)
    during = time.monotonic() - started
    assert [e.most for e in each] == [limit] * len(slots)  # each daemon's own limit holds
    assert down.most == limit * len(slots)
    warnings = [r for r in caplog.records if r.name == LOG and r.levelno == logging.WARNING]
    assert len(warnings) == len(daemons), [r.getMessage() for r in warnings]  # once per daemon
    assert all("Redis unavailable" in r.getMessage() for r in warnings)
    assert all(d.fallback_active for d in daemons)
    [span] = telemetry.finished("call")
    assert span.attributes[names.EXAI_PROVIDER_LIMIT_MODE] == LOCAL
    [event] = [e for e in span.events if e.name == names.EXAI_PROVIDER_LIMIT_FALLBACK]
    assert event.attributes[names.ERROR_TYPE] == "ConnectionError"

    own_redis.start()  # the same port
    started = time.monotonic()
    while any(d.fallback_active for d in daemons):
        assert time.monotonic() - started < 5, "the shared limit did not come back"
        for s in slots:
            async with s.hold():
                pass
        await asyncio.sleep(0.05)
    recovered = time.monotonic() - started
    after, _ = await load(slots, workers=4, calls=2, secs=0.05)
    print(f"\nMEASURED Redis outage: first call {first * 1000:.0f} ms after the kill; "
          f"{len(slots) * 4 * 6} calls all admitted in {during:.2f} s, at most {down.most} in "
          f"flight (limit {limit} per daemon); shared again {recovered:.2f} s after the restart "
          f"(retry 0.3 s), then at most {after.most} across all")
    assert after.most == limit
    assert sum("answers again" in r.getMessage() for r in caplog.records
               if r.name == LOG) == len(daemons)


async def test_a_frozen_redis_costs_one_call_the_short_timeout(own_redis, make_client) -> None:
    [daemon] = fleet(make_client, own_redis.url, count=1, retry_secs=0.3)
    slots = daemon.slots("provider", unique_name(), 2, wait_secs=5)
    async with slots.hold():
        pass
    assert own_redis.process is not None
    os.kill(own_redis.process.pid, signal.SIGSTOP)  # accepts connections, never answers
    try:
        started = time.monotonic()
        async with slots.hold():
            pass
        first = time.monotonic() - started
        started = time.monotonic()
        async with slots.hold():
            pass
        second = time.monotonic() - started
        assert daemon.fallback_active
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    await asyncio.sleep(0.35)  # past the retry interval: the next call asks Redis again
    async with slots.hold():
        assert not daemon.fallback_active  # the connection the timeout cut is not reused
    print(f"\nMEASURED frozen Redis: the call that met it waited {first * 1000:.0f} ms "
          f"(bound {REDIS_TIMEOUT_SECS * 1000:.0f} ms), the next {second * 1000:.1f} ms")
    assert REDIS_TIMEOUT_SECS <= first < REDIS_TIMEOUT_SECS + 0.5
    assert second < 0.1


def test_off_by_default_the_slots_are_the_daemons_own(caplog) -> None:
    plain = build_provider_slots(Settings(_env_file=None), None)  # type: ignore[call-arg]
    assert {key: type(s) for key, s in plain.items()} == {e.key: Slots for e in PROVIDERS}
    assert {key: s.limit for key, s in plain.items()} == {e.key: e.max_inflight_default
                                                          for e in PROVIDERS}
    caplog.set_level(logging.WARNING, logger="app.daemon")
    settings = Settings(_env_file=None, EXAI_SHARED_PROVIDER_LIMITS=True)  # type: ignore[call-arg]
    without_redis = build_provider_slots(settings, None)
    assert all(type(s) is Slots for s in without_redis.values())
    assert "needs REDIS_URL" in caplog.text


async def test_on_with_redis_every_provider_is_shared(own_redis, make_client) -> None:
    settings = Settings(_env_file=None, EXAI_SHARED_PROVIDER_LIMITS=True,  # type: ignore[call-arg]
                        EXAI_GLM_MAX_INFLIGHT=2)
    slots = build_provider_slots(settings, make_client(own_redis.url))
    assert {key: (type(s).__name__, s.limit) for key, s in slots.items()} == {
        "kimi": ("SharedSlots", 6), "glm": ("SharedSlots", 2)}
    assert {getattr(s, "key", None) for s in slots.values()} == {f"{KEY_PREFIX}kimi",
                                                                 f"{KEY_PREFIX}glm"}
