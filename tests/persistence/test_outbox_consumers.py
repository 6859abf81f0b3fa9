"""The outbox shared by N daemons on one Redis (issue 15): every turn lands exactly once with
three daemons delivering, one killed mid-delivery, one restarted; a killed daemon's write is
taken over after the idle time; a restarted daemon leaves alone what a live one holds; writes an
earlier version left in its lists are moved to the stream. Real Redis, real PostgreSQL behind
the PostgREST-compatible server, the production archive, outbox and worker."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import psycopg
import pytest
from redis.exceptions import ResponseError

from app.config import Settings, instance_id
from app.persistence import Archive, build_archive
from app.persistence.outbox import DEFAULT_PREFIX, Outbox, OutboxEntry
from app.storage.turns import Turn
from otel.setup import build_resource
from tests.harness.exai_process import spawn_daemon
from tests.harness.postgrest import PostgrestTestServer
from tests.harness.procs import free_port

from .conftest import FAKE_SERVICE_ROLE_KEY, in_flight, message_rows_in_db

CLAIM_IDLE = 1.0  # seconds a killed daemon's write waits before another takes it over


def exchange(i: int) -> list[Turn]:
    stamp = f"2026-11-30T08:{i // 60:02d}:{i % 60:02d}"
    return [Turn("user", f"question {i}", f"{stamp}.000Z"),
            Turn("assistant", f"answer {i}", f"{stamp}.500Z")]


class Deliveries:
    """Which daemon finished delivering which write, and when (wraps each worker's deliver)."""

    def __init__(self) -> None:
        self.done: list[tuple[str, str, float]] = []  # (consumer, entry id, monotonic time)

    def watch(self, archive: Archive) -> Archive:
        worker = archive.worker
        assert worker is not None
        deliver = worker.deliver
        consumer = archive.outbox.consumer

        async def recorded(entry: OutboxEntry) -> Any:
            result = await deliver(entry)
            self.done.append((consumer, entry.id, time.monotonic()))
            return result

        worker.deliver = recorded  # type: ignore[method-assign]
        return archive

    def by_entry(self) -> Counter[str]:
        return Counter(entry_id for _, entry_id, _ in self.done)

    def by_consumer(self) -> Counter[str]:
        return Counter(consumer for consumer, _, _ in self.done)


async def daemon(make_archive: Any, redis: Any, deliveries: Deliveries, name: str,
                 **options: Any) -> Archive:
    archive = await make_archive(redis, consumer=name, **{"claim_idle_secs": CLAIM_IDLE, **options})
    return deliveries.watch(archive)


async def owner_of_pending(redis: Any, outbox: Outbox) -> dict[str, str]:
    """entry stream id -> consumer holding it."""
    rows = await redis.xpending_range(outbox.stream_key, outbox.group, "-", "+", 100)
    return {row["message_id"]: row["consumer"] for row in rows}


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def assert_each_turn_once(db: psycopg.Connection, m: int) -> None:
    rows = message_rows_in_db(db)
    assert len(rows) == 2 * m
    assert Counter(r[0] for r in rows) == {f"conv-{i}": 2 for i in range(m)}
    assert len({r[3] for r in rows}) == 2 * m
    assert db.execute("select count(*) from conversations").fetchone()[0] == m


async def test_three_daemons_deliver_every_turn_exactly_once(
        make_archive: Any, redis_client: Any, server: PostgrestTestServer,
        db: psycopg.Connection) -> None:
    m = 60
    deliveries = Deliveries()
    daemons = [await daemon(make_archive, redis_client, deliveries, name) for name in "abc"]
    server.delay = 0.01  # deliveries overlap, as with three processes
    for i in range(m):
        await daemons[i % 3].record_turn(f"conv-{i}", "s", exchange(i), {})
    assert await daemons[0].drain(20.0)
    await wait_for(lambda: _settled(redis_client, daemons[0]))

    assert len(deliveries.done) == m
    assert set(deliveries.by_entry().values()) == {1}  # no write delivered twice
    assert len(deliveries.by_consumer()) == 3, deliveries.by_consumer()  # all three took part
    assert_each_turn_once(db, m)
    assert await redis_client.xlen(daemons[0].outbox.stream_key) == 0


async def _settled(redis: Any, archive: Archive) -> bool:
    return await in_flight(redis, archive.outbox) == 0


async def test_one_daemon_killed_mid_delivery_and_one_restarted_lose_and_double_nothing(
        make_archive: Any, redis_client: Any, server: PostgrestTestServer,
        db: psycopg.Connection) -> None:
    m = 30
    deliveries = Deliveries()
    a, b, c = [await daemon(make_archive, redis_client, deliveries, name) for name in "abc"]
    server.delay = 0.15  # each delivery (two requests) is in flight for 0.3 s
    for i in range(m):
        await (a, b, c)[i % 3].record_turn(f"conv-{i}", "s", exchange(i), {})

    # Kill a while it holds a write: its task dies mid-request, no clean-up, no release.
    await wait_for(lambda: _holds(redis_client, a))
    owners = await owner_of_pending(redis_client, a.outbox)
    held = [stream_id for stream_id, owner in owners.items() if owner == "a"]
    assert len(held) == 1
    [(_, fields)] = await redis_client.xrange(a.outbox.stream_key, held[0], held[0])
    held_entry = json.loads(fields["entry"])["id"]
    assert a.worker is not None and a.worker._task is not None
    a.worker._task.cancel()
    killed_at = time.monotonic()

    # Restart b (a graceful stop, then a new process with a fresh id) while c keeps working.
    await b.aclose(drain_timeout_secs=0)
    b2 = await daemon(make_archive, redis_client, deliveries, "b-restarted")

    assert await c.drain(20.0)
    await wait_for(lambda: _settled(redis_client, c))
    assert_each_turn_once(db, m)
    # Every write was delivered to the end exactly once (a's interrupted attempt never finished).
    assert len(deliveries.done) == m and set(deliveries.by_entry().values()) == {1}
    # a's write was taken over by a live daemon, only after the idle time.
    takeover = [(who, at) for who, entry_id, at in deliveries.done if entry_id == held_entry]
    assert takeover[0][0] in {"c", "b-restarted"}
    reclaim_secs = takeover[0][1] - killed_at
    assert CLAIM_IDLE * 0.9 <= reclaim_secs < CLAIM_IDLE + 3.0, reclaim_secs
    assert deliveries.by_consumer()["b-restarted"] > 0
    assert await redis_client.xlen(c.outbox.stream_key) == 0
    print(f"\nM={m} delivered={len(deliveries.done)} by={dict(deliveries.by_consumer())} "
          f"duplicates=0 reclaim={reclaim_secs:.2f}s (claim idle {CLAIM_IDLE}s)")
    await b2.aclose(drain_timeout_secs=0)


async def _holds(redis: Any, archive: Archive) -> bool:
    return "a" in (await owner_of_pending(redis, archive.outbox)).values()


async def test_a_restarted_daemon_leaves_alone_what_a_live_daemon_holds(
        make_archive: Any, redis_client: Any, server: PostgrestTestServer,
        db: psycopg.Connection) -> None:
    deliveries = Deliveries()
    live = await daemon(make_archive, redis_client, deliveries, "live")
    server.delay = 1.5  # the live daemon's delivery takes 3 s: three times the idle time
    await live.record_turn("conv-0", "s", exchange(0), {})
    await wait_for(lambda: _in_flight_is(redis_client, live, 1))

    restarted = await daemon(make_archive, redis_client, deliveries, "restarted")
    await asyncio.sleep(CLAIM_IDLE * 2)  # past the idle time: only the live hold keeps it
    assert set((await owner_of_pending(redis_client, live.outbox)).values()) == {"live"}
    assert deliveries.done == []

    assert await live.drain(10.0)
    assert deliveries.by_consumer() == {"live": 1}
    assert_each_turn_once(db, 1)
    await restarted.aclose(drain_timeout_secs=0)


async def _in_flight_is(redis: Any, archive: Archive, n: int) -> bool:
    return await in_flight(redis, archive.outbox) == n


async def test_writes_left_in_the_old_lists_move_to_the_stream_once(
        make_archive: Any, redis_client: Any, db: psycopg.Connection) -> None:
    first, second = [await make_archive(redis_client, start=False, consumer=name)
                     for name in ("x", "y")]
    outbox = first.outbox
    entries = [OutboxEntry(f"conv-{i}", {"continuation_id": f"conv-{i}", "session_id": "s",
                                         "title": f"question {i}", "metadata": {}},
                           _messages(i)) for i in range(6)]
    # The old layout: pending pushed on the left (oldest on the right), one write in flight.
    await redis_client.lpush(outbox.processing_key, entries[0].dumps())
    for entry in entries[1:]:
        await redis_client.lpush(outbox.pending_key, entry.dumps())

    moved = await asyncio.gather(first.outbox.recover(), second.outbox.recover())
    assert sum(moved) == 6
    assert not await redis_client.exists(outbox.pending_key, outbox.processing_key)
    assert await redis_client.xlen(outbox.stream_key) == 6
    stream = await redis_client.xrange(outbox.stream_key)
    assert [json.loads(fields["entry"])["id"] for _, fields in stream] == [e.id for e in entries]

    await first.start()
    await second.start()
    assert await first.drain(10.0)
    assert_each_turn_once(db, 6)


def _messages(i: int) -> list[dict[str, Any]]:
    from app.persistence.rows import message_rows

    return message_rows(f"conv-{i}", exchange(i), {})


async def test_stats_are_the_streams_for_every_daemon(
        make_archive: Any, redis_client: Any, server: PostgrestTestServer) -> None:
    await server.stop()
    daemons = [await make_archive(redis_client, consumer=name) for name in "abc"]
    for i in range(9):
        await daemons[i % 3].record_turn(f"conv-{i}", "s", exchange(i), {})
    await asyncio.sleep(0.3)  # each worker holds one write and retries it
    assert await in_flight(redis_client, daemons[0].outbox) == 3
    for archive in daemons:
        backlog = (await archive.check_health())["backlog"]
        assert backlog["depth"] == 9 and backlog["oldest_age_s"] > 0.2
    await server.start()
    await daemons[1].record_turn("conv-bad", "s", [Turn("robot", "beep")], {})  # type: ignore[arg-type]
    assert await daemons[0].drain(10.0)
    for archive in daemons:
        backlog = (await archive.check_health())["backlog"]
        assert backlog["depth"] == 0 and backlog["dead_letters"] == 1


@pytest.mark.parametrize("configured", ["daemon-7", ""])
def test_the_consumer_name_is_the_service_instance_id(
        configured: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    monkeypatch.setenv("EXAI_INSTANCE_ID", configured)
    monkeypatch.setenv("EXAI_SUPABASE_CLAIM_IDLE_SECS", "42")
    settings = Settings(_env_file=None, SUPABASE_URL="https://example.invalid",  # type: ignore[call-arg]
                        SUPABASE_SERVICE_ROLE_KEY="k", REDIS_URL="")
    archive = build_archive(settings)
    assert isinstance(archive, Archive)
    resource_id = build_resource("test", settings.service_instance_id).attributes[
        "service.instance.id"]
    assert archive.outbox.consumer == resource_id == instance_id()
    assert archive.tuning.claim_idle_secs == archive.outbox.claim_idle_secs == 42
    if configured:
        assert resource_id == configured
    else:  # a fresh id, drawn once for the process
        assert len(str(resource_id)) == 36 and instance_id() == instance_id("")


async def test_a_daemon_stopped_gently_gives_its_write_up_at_once(
        make_archive: Any, redis_client: Any, server: PostgrestTestServer,
        db: psycopg.Connection) -> None:
    deliveries = Deliveries()
    await server.stop()
    first = await daemon(make_archive, redis_client, deliveries, "first", claim_idle_secs=30.0)
    await first.record_turn("conv-0", "s", exchange(0), {})
    await wait_for(lambda: _in_flight_is(redis_client, first, 1))  # held, retried
    await first.aclose(drain_timeout_secs=0)
    await server.start()
    started = time.monotonic()
    second = await daemon(make_archive, redis_client, deliveries, "second",
                          claim_idle_secs=30.0)
    assert await second.drain(5.0)
    assert time.monotonic() - started < 5.0  # not the 30 s idle time
    assert deliveries.by_consumer() == {"second": 1}
    assert_each_turn_once(db, 1)


async def test_consumers_silent_for_long_and_holding_nothing_are_forgotten(
        make_archive: Any, redis_client: Any) -> None:
    archive = await make_archive(redis_client, start=False, consumer="me", claim_idle_secs=0.01)
    outbox = archive.outbox
    await outbox.recover()
    await redis_client.xgroup_createconsumer(outbox.stream_key, outbox.group, "ghost")
    await redis_client.xadd(outbox.stream_key, {"entry": "{}"})
    await redis_client.xreadgroup(outbox.group, "holder", {outbox.stream_key: ">"}, count=1)
    await asyncio.sleep(0.2)  # past ten idle times
    await outbox.recover()
    names = {c["name"] for c in await redis_client.xinfo_consumers(outbox.stream_key,
                                                                   outbox.group)}
    assert "ghost" not in names and "holder" in names  # a holder is kept: its write is pending


@pytest.mark.parametrize("outbox_prefix", [DEFAULT_PREFIX])  # the real daemon's keys
async def test_a_real_daemon_killed_with_sigkill_mid_delivery_loses_and_doubles_nothing(
        outbox_prefix: str, make_archive: Any, redis_client: Any, redis_server: Any,
        server: PostgrestTestServer, db: psycopg.Connection, tmp_path: Any) -> None:
    m = 5
    keys = [f"{outbox_prefix}:stream", outbox_prefix, f"{outbox_prefix}:processing",
            f"{outbox_prefix}:dead"]
    await redis_client.delete(*keys)
    seed = Outbox(redis_client, prefix=outbox_prefix)
    entries = [OutboxEntry(f"conv-{i}", {"continuation_id": f"conv-{i}", "session_id": "s",
                                         "title": f"question {i}", "metadata": {}},
                           _messages(i)) for i in range(m)]
    for entry in entries:
        assert await seed.put(entry) == "redis"
    server.delay = 60.0  # the daemon's first request hangs: it is mid-delivery when killed
    proc, _ = await asyncio.to_thread(
        spawn_daemon, tmp_path, free_port(), REDIS_URL=redis_server.url, SUPABASE_URL=server.url,
        SUPABASE_SERVICE_ROLE_KEY=FAKE_SERVICE_ROLE_KEY, EXAI_INSTANCE_ID="doomed",
        EXAI_SUPABASE_CLAIM_IDLE_SECS=str(CLAIM_IDLE), OTEL_SDK_DISABLED="true")
    try:
        await wait_for(lambda: _holds_one(redis_client, seed, "doomed"), timeout=20.0)
        await wait_for(lambda: _any(server.requests))
        [held] = await owner_of_pending(redis_client, seed)
        [(_, fields)] = await redis_client.xrange(seed.stream_key, held, held)
        held_entry = json.loads(fields["entry"])["id"]
        proc.kill()  # SIGKILL: no clean-up, no release
        killed_at = time.monotonic()
    finally:
        proc.stop()
    server.delay = 0.0
    deliveries = Deliveries()
    survivor = await daemon(make_archive, redis_client, deliveries, "survivor")
    assert await survivor.drain(10.0)
    await wait_for(lambda: _settled(redis_client, survivor))
    assert_each_turn_once(db, m)
    assert len(deliveries.done) == m and set(deliveries.by_entry().values()) == {1}
    [taken_at] = [at for _, entry_id, at in deliveries.done if entry_id == held_entry]
    assert CLAIM_IDLE * 0.5 <= taken_at - killed_at < CLAIM_IDLE + 3.0
    print(f"\nSIGKILL: M={m} delivered={len(deliveries.done)} duplicates=0 "
          f"reclaim={taken_at - killed_at:.2f}s after the kill (claim idle {CLAIM_IDLE}s)")
    await redis_client.delete(*keys)


async def _holds_one(redis: Any, outbox: Outbox, consumer: str) -> bool:
    try:
        pending = await redis.xpending_range(outbox.stream_key, outbox.group, "-", "+", 10)
    except ResponseError:
        return False
    return [row["consumer"] for row in pending] == [consumer]


async def _any(items: list[Any]) -> bool:
    return bool(items)
