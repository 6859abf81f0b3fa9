"""Falling back to memory when Redis dies, and returning to it (with the outage's threads)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid

from redis.asyncio import Redis

from app.storage.fallback import Outage
from app.storage.memory import MemoryThreads
from app.storage.redis_store import KEY_PREFIX, RedisThreads
from app.storage.threads import ThreadStore
from app.storage.turns import Turn
from otel import names
from tests.harness.log_capture import captured_logs
from tests.harness.procs import LOOPBACK, free_port

THREADS_LOG = "app.storage.threads"


def contents(thread: list[Turn] | None) -> list[str]:
    assert thread is not None
    return [t.content for t in thread]


def gauge(telemetry) -> list[tuple[float, dict]]:
    return [(p.value, dict(p.attributes))
            for p in telemetry.points(names.EXAI_STORAGE_FALLBACK_ACTIVE)]


async def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_survives_redis_kill_and_writes_outage_threads_back(
        own_redis, make_store, telemetry, caplog) -> None:
    caplog.set_level(logging.INFO, logger=THREADS_LOG)
    store = await make_store(own_redis.url, retry_secs=0.2, max_turns=3)
    before, during = str(uuid.uuid4()), str(uuid.uuid4())
    await store.append(before, [Turn("user", "stored in redis")])

    own_redis.kill()
    started = time.monotonic()
    await store.append(during, [Turn("user", "d0"), Turn("assistant", "d1")])
    assert time.monotonic() - started < 2, "a dead Redis must fail fast"
    for i in range(2, 5):
        assert contents(await store.append(during, [Turn("user", f"d{i}")]))[-1] == f"d{i}"
    assert contents(await store.load(during)) == ["d2", "d3", "d4"]
    assert await store.load(before) is None  # only in Redis: honestly not found meanwhile
    health = await store.health()
    assert health["status"] == "degraded" and health["backend"] == "memory"
    assert health["configured"] == "redis" and health["fallback_active"] is True
    assert health["pending_resync"] == 1 and "Connection" in health["last_error"]
    assert store.fallback_active
    assert gauge(telemetry) == [(1, {names.EXAI_STORAGE_BACKEND: "redis"})]

    own_redis.start()  # same port; no persistence, so Redis comes back empty

    async def healthy() -> bool:
        return (await store.health())["status"] == "healthy"

    await wait_for(healthy, 5, "the store to return to Redis")
    assert await store.health() == {
        "status": "healthy", "backend": "redis", "configured": "redis",
        "fallback_active": False, "last_error": None, "pending_resync": 0,
    }
    assert gauge(telemetry) == [(0, {names.EXAI_STORAGE_BACKEND: "redis"})]
    async with Redis.from_url(own_redis.url, decode_responses=True) as raw:
        key = f"{KEY_PREFIX}{during}"
        assert len(await raw.lrange(key, 0, -1)) == 3
        assert await raw.pttl(key) > 0
    assert contents(await store.append(during, [Turn("assistant", "d5")])) == ["d3", "d4", "d5"]

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and len(infos) == 1, caplog.text


async def test_redis_down_at_start_serves_from_memory_without_leaking_password(
        make_store, telemetry, caplog) -> None:
    url = f"redis://:s3cret-pw@{LOOPBACK}:{free_port()}/0"
    store = await make_store(url, retry_secs=60)
    cid = str(uuid.uuid4())
    assert contents(await store.append(cid, [Turn("user", "hi")])) == ["hi"]
    assert contents(await store.load(cid)) == ["hi"]
    health = await store.health()
    assert health["status"] == "degraded" and health["pending_resync"] == 1
    assert "s3cret-pw" not in str(health) and "s3cret-pw" not in caplog.text
    [ping] = telemetry.points(names.DB_CLIENT_OPERATION_DURATION)
    assert dict(ping.attributes) == {
        names.DB_SYSTEM_NAME: "redis", names.DB_OPERATION_NAME: "PING",
        names.ERROR_TYPE: "redis.exceptions.ConnectionError",
    }


async def test_failed_operations_are_measured_and_warned_about_once(
        own_redis, make_store, telemetry, caplog) -> None:
    caplog.set_level(logging.INFO, logger=THREADS_LOG)
    store = await make_store(own_redis.url, retry_secs=60)
    own_redis.kill()
    cid = str(uuid.uuid4())
    await asyncio.gather(*(store.append(cid, [Turn("user", str(i))]) for i in range(5)),
                         store.load(str(uuid.uuid4())))
    assert len(contents(await store.load(cid))) == 5
    failed = [p for p in telemetry.points(names.DB_CLIENT_OPERATION_DURATION)
              if names.ERROR_TYPE in p.attributes]
    assert {p.attributes[names.DB_OPERATION_NAME] for p in failed} == \
        {"MULTI", "LRANGE"}
    assert {p.attributes[names.ERROR_TYPE] for p in failed} == {"redis.exceptions.ConnectionError"}
    assert [r.levelno for r in caplog.records] == [logging.WARNING], caplog.text


class FlakyRedis:
    """Stands in for Redis during a write-back: the first copy races with a chat's append."""

    def __init__(self, memory: MemoryThreads, outage: Outage) -> None:
        self.memory, self.outage = memory, outage
        self.copies: list[tuple[str, list[str]]] = []

    async def replace(self, continuation_id: str, turns: list[Turn], ttl_secs: float) -> None:
        if not self.copies:
            self.memory.append(continuation_id, [Turn("user", "late")])
            self.outage.changed(continuation_id)
        self.copies.append((continuation_id, [t.content for t in turns]))


async def test_write_back_copies_again_a_thread_changed_under_it() -> None:
    memory = MemoryThreads(ttl_secs=60, max_turns=10)
    outage = Outage("down")
    memory.append("a", [Turn("user", "early")])
    outage.changed("a")
    redis = FlakyRedis(memory, outage)
    assert await outage.write_back(memory, redis) == 2  # type: ignore[arg-type]
    assert redis.copies == [("a", ["early"]), ("a", ["early", "late"])]
    assert outage.pending == 0


async def test_aclose_stops_the_probe(own_redis, telemetry, make_client) -> None:
    store = ThreadStore(MemoryThreads(60, 5),
                        RedisThreads(make_client(own_redis.url), 60, 5,
                                     telemetry.instruments.db_duration),
                        retry_secs=0.05)
    own_redis.kill()
    await store.start()
    assert store.fallback_active
    await store.aclose()
    own_redis.start()
    await asyncio.sleep(0.2)
    assert store.fallback_active  # nobody probes a closed store
    assert (await store.health())["status"] == "unhealthy"


async def test_unresponsive_redis_times_out_fast_and_recovers(
        own_redis, make_store, telemetry) -> None:
    store = await make_store(own_redis.url, retry_secs=0.2)
    cid = str(uuid.uuid4())
    os.kill(own_redis.process.pid, signal.SIGSTOP)  # accepts connections, never answers
    try:
        started = time.monotonic()
        assert contents(await store.append(cid, [Turn("user", "hi")])) == ["hi"]
        elapsed = time.monotonic() - started
        assert store.fallback_active
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    assert elapsed < 2, f"append waited {elapsed:.1f}s on a hung Redis"
    failed = [p.attributes for p in telemetry.points(names.DB_CLIENT_OPERATION_DURATION)
              if names.ERROR_TYPE in p.attributes]
    assert failed == [{names.DB_SYSTEM_NAME: "redis",
                       names.DB_OPERATION_NAME: "MULTI",
                       names.ERROR_TYPE: "redis.exceptions.TimeoutError"}]

    async def back_on_redis() -> bool:
        return not store.fallback_active

    await wait_for(back_on_redis, 5, "the store to return to Redis")
    async with Redis.from_url(own_redis.url, decode_responses=True) as raw:
        assert await raw.llen(f"{KEY_PREFIX}{cid}") == 1


async def test_the_probe_runs_outside_the_request_that_caused_the_fallback(
        own_redis, make_store, traced_redis) -> None:
    """The request that met the outage logs the fallback; the probe, which outlives it, logs
    and traces as background work: no trace id of that request on its records or spans."""
    store = await make_store(own_redis.url, retry_secs=0.1)
    cid = str(uuid.uuid4())
    with captured_logs(THREADS_LOG) as output:
        with traced_redis.tracer_provider.get_tracer("test").start_as_current_span(
                "tools/call chat") as request:
            own_redis.kill()
            await store.append(cid, [Turn("user", "hi")])  # falls back, starts the probe
        own_redis.start()

        async def back_on_redis() -> bool:
            return not store.fallback_active

        await wait_for(back_on_redis, 5, "the store to return to Redis")

    request_trace = request.get_span_context().trace_id
    fell_back, recovered = [r.log_record for r in output.exported.get_finished_logs()]
    assert "Redis unavailable" in str(fell_back.body)
    assert fell_back.trace_id == request_trace  # the request met the outage: its record
    assert "Redis answers again" in str(recovered.body)
    assert recovered.trace_id == 0 and recovered.span_id == 0, "the probe logged in the request"
    console = output.console.getvalue().splitlines()
    assert f"trace_id={request_trace:032x}" in console[0]
    assert "trace_id=- " in console[1], console[1]
    probe_spans = [s for s in traced_redis.finished() if s.start_time > request.end_time]
    assert {s.name for s in probe_spans} >= {"PING", "MULTI"}  # the probe's PINGs, the write-back
    assert all(s.context.trace_id != request_trace and s.parent is None for s in probe_spans)
