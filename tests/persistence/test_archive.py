"""The issue's proofs, end to end: archive -> outbox (real Redis) -> worker -> supabase-py ->
PostgREST-compatible server (real HTTP) -> real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import psycopg
import pytest

from app.config import Settings
from app.persistence import ArchiveUnavailable, DisabledArchive, build_archive, names
from app.storage.turns import Turn
from tests.harness.postgrest import PostgrestTestServer

from .conftest import FAKE_SERVICE_ROLE_KEY, Telemetry, in_flight, message_rows_in_db


def exchange(i: int, second: int = 0) -> list[Turn]:
    stamp = f"2026-11-29T07:{second // 60:02d}:{second % 60:02d}"
    return [Turn("user", f"question {i}", f"{stamp}.000Z"),
            Turn("assistant", f"answer {i}", f"{stamp}.500Z")]


async def test_chats_during_an_outage_land_exactly_once_when_supabase_returns(
        make_archive: Any, redis_client: Any, server: PostgrestTestServer,
        db: psycopg.Connection, telemetry: Telemetry) -> None:
    n = 12
    await server.stop()
    archive = await make_archive(redis_client)
    started = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        await archive.record_turn(f"conv-{i}", "sess-1", exchange(i), {"model": "glm-4.5-flash"})
        assert time.perf_counter() - t0 < 0.25, "a chat reply waited on Supabase"
    assert time.perf_counter() - started < 1.0

    # The worker keeps trying; nothing lands, nothing is lost.
    await asyncio.sleep(0.6)
    health = await archive.check_health()
    assert health["status"] == "degraded" and health["reachable"] is False
    assert health["backlog"]["depth"] == n and health["backlog"]["oldest_age_s"] > 0.5
    assert health["backlog"]["backend"] == "redis" and health["durable"] is True
    assert db.execute("select count(*) from messages").fetchone()[0] == 0
    assert telemetry.total(names.OUTBOX_DELIVERY_FAILURES,
                           **{names.FAILURE_DISPOSITION: "retry"}) >= 2
    depth = telemetry.points(names.OUTBOX_DEPTH)
    assert depth and depth[0].value == n and depth[0].attributes[names.OUTBOX_BACKEND] == "redis"
    assert telemetry.points(names.OUTBOX_AGE)[0].value > 0.5

    await server.start()
    assert await archive.drain(10.0), "the backlog did not drain after Supabase came back"
    rows = message_rows_in_db(db)
    assert len(rows) == 2 * n
    assert Counter(r[0] for r in rows) == {f"conv-{i}": 2 for i in range(n)}
    assert len({r[3] for r in rows}) == 2 * n  # none twice
    assert db.execute("select count(*) from conversations").fetchone()[0] == n
    health = await archive.check_health()
    assert health["status"] == "healthy" and health["backlog"]["depth"] == 0
    assert health["delivered"] == n and health["dead_lettered"] == 0


async def test_redelivery_of_the_same_turns_stores_nothing_twice(
        make_archive: Any, redis_client: Any, db: psycopg.Connection) -> None:
    archive = await make_archive(redis_client)
    thread = exchange(0, 0) + exchange(1, 10)
    await archive.record_turn("conv-1", "s", thread[:2], {})
    await archive.record_turn("conv-1", "s", thread, {})  # a caller that sends the whole thread
    await archive.record_turn("conv-1", "s", thread, {})
    assert await archive.drain(5.0)
    assert len(message_rows_in_db(db)) == 4


@pytest.mark.parametrize("how", ["graceful", "crash"])
async def test_a_restart_with_a_non_empty_outbox_loses_nothing(
        how: str, make_archive: Any, redis_client: Any, server: PostgrestTestServer,
        db: psycopg.Connection) -> None:
    n = 8
    if how == "graceful":
        await server.stop()
    else:
        server.delay = 2.0  # the first delivery is in flight (in "processing") when we kill it
    first = await make_archive(redis_client)
    for i in range(n):
        await first.record_turn(f"conv-{i}", "s", exchange(i), {})
    await asyncio.sleep(0.3)
    if how == "crash":
        assert await in_flight(redis_client, first.outbox) == 1
        first.worker._task.cancel()  # the process dies mid-request: no clean-up runs
        await asyncio.sleep(0.05)
        assert await in_flight(redis_client, first.outbox) == 1
    await first.aclose(drain_timeout_secs=0)
    assert (await first.outbox.stats()).depth == n
    assert db.execute("select count(*) from messages").fetchone()[0] == 0

    server.delay = 0.0
    if not server.running:
        await server.start()
    second = await make_archive(redis_client)  # the restarted daemon, same Redis
    assert await second.drain(10.0)
    rows = message_rows_in_db(db)
    assert len(rows) == 2 * n and len({r[3] for r in rows}) == 2 * n
    assert await in_flight(redis_client, second.outbox) == 0


async def test_history_returns_the_newest_turns_in_order(
        make_archive: Any, redis_client: Any, db: psycopg.Connection) -> None:
    archive = await make_archive(redis_client)
    for i in range(15):  # 30 turns, recorded out of order to prove ordering is by turn time
        j = (i * 7) % 15
        await archive.record_turn("conv-h", "s", exchange(j, second=j * 2), {})
    assert await archive.drain(5.0)
    history = await archive.load_history("conv-h", 10)
    assert [t.content for t in history] == [
        f"{kind} {j}" for j in range(10, 15) for kind in ("question", "answer")]
    assert [t.role for t in history] == ["user", "assistant"] * 5
    assert history == sorted(history, key=lambda t: t.created_at)
    assert await archive.load_history("no-such-thread", 10) is None
    whole = await archive.load_history("conv-h", 100)
    assert len(whole) == 30 and whole[0].content == "question 0"


async def test_history_includes_turns_still_waiting_in_the_outbox(
        make_archive: Any, redis_client: Any, db: psycopg.Connection) -> None:
    archive = await make_archive(redis_client)
    await archive.record_turn("conv-w", "s", exchange(0, 0), {})
    assert await archive.drain(5.0)
    await archive.worker.stop()  # Supabase is slow: the next turn has not been delivered yet
    await archive.record_turn("conv-w", "s", exchange(1, 10), {})
    await archive.record_turn("conv-new", "s", exchange(2, 20), {})
    history = await archive.load_history("conv-w", 3)
    assert [t.content for t in history] == ["answer 0", "question 1", "answer 1"]
    assert [t.content for t in await archive.load_history("conv-new", 5)] == [
        "question 2", "answer 2"]


async def test_history_read_while_supabase_is_down_raises_a_storage_error(
        make_archive: Any, redis_client: Any, server: PostgrestTestServer) -> None:
    archive = await make_archive(redis_client)
    await server.stop()
    with pytest.raises(ArchiveUnavailable):
        await archive.load_history("conv-1", 10)


async def test_bad_rows_are_dead_lettered_with_a_clear_error_and_do_not_block(
        make_archive: Any, redis_client: Any, db: psycopg.Connection, telemetry: Telemetry,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="exai.persistence")
    archive = await make_archive(redis_client)
    await archive.record_turn("conv-ok-1", "s", exchange(1), {})
    await archive.record_turn("conv-long", "s", [Turn("user", "fine question"),
                                                  Turn("assistant", "x" * 200_001)], {})
    await archive.record_turn("conv-role", "s", [Turn("robot", "beep")], {})  # type: ignore[arg-type]
    await archive.record_turn("conv-session", "s" * 65, exchange(2), {})
    await archive.record_turn("conv-ok-2", "s", exchange(3), {})
    assert await archive.drain(5.0), "a poison row blocked the outbox"

    stored = message_rows_in_db(db)
    assert {(r[0], r[1]) for r in stored} == {
        ("conv-ok-1", "user"), ("conv-ok-1", "assistant"), ("conv-long", "user"),
        ("conv-ok-2", "user"), ("conv-ok-2", "assistant")}

    dead = await archive.outbox.dead_letters()
    assert len(dead) == 3
    by_conv = {d["entry"]["continuation_id"]: d for d in dead}
    assert by_conv["conv-long"]["errors"][0]["code"] == "23514"
    assert "messages_content_length" in by_conv["conv-long"]["errors"][0]["message"]
    assert [m["role"] for m in by_conv["conv-long"]["entry"]["messages"]] == ["assistant"]
    assert "messages_role_check" in by_conv["conv-role"]["errors"][0]["message"]
    assert "conversations_session_id_length" in by_conv["conv-session"]["errors"][0]["message"]

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "messages_content_length" in logged and "messages_role_check" in logged
    assert "dead-letter" in logged and "x" * 100 not in logged  # no content in logs
    assert telemetry.total(names.OUTBOX_DELIVERY_FAILURES,
                           **{names.FAILURE_DISPOSITION: "dead_letter"}) == 3
    health = await archive.check_health()
    assert health["backlog"]["dead_letters"] == 3 and health["status"] == "healthy"


async def test_without_redis_the_outbox_is_in_memory_and_says_so(
        make_archive: Any, server: PostgrestTestServer, db: psycopg.Connection,
        telemetry: Telemetry) -> None:
    await server.stop()
    archive = await make_archive(None, memory_limit=5)
    for i in range(7):
        await archive.record_turn(f"conv-{i}", "s", exchange(i), {})
    health = await archive.check_health()
    assert health["durable"] is False and health["backlog"]["backend"] == "memory"
    assert health["backlog"]["depth"] == 5  # the bound: the two oldest were dropped, and counted
    assert telemetry.total(names.OUTBOX_DROPPED) == 2
    await server.start()
    assert await archive.drain(5.0)
    assert {r[0] for r in message_rows_in_db(db)} == {f"conv-{i}" for i in range(2, 7)}


async def test_redis_failing_at_run_time_falls_back_to_memory_then_back(
        make_archive: Any, server: PostgrestTestServer, db: psycopg.Connection,
        tmp_path: Any) -> None:
    import redis.asyncio as redis_asyncio

    from tests.harness.redis_server import redis_process

    flaky = redis_process(tmp_path / "flaky-redis")
    flaky.start()
    client = redis_asyncio.Redis.from_url(flaky.url, socket_connect_timeout=0.2)
    try:
        archive = await make_archive(client)
        await server.stop()
        flaky.stop()
        for i in range(3):
            await archive.record_turn(f"conv-{i}", "s", exchange(i), {})
        health = await archive.check_health()
        assert health["status"] == "degraded"
        assert "redis down: outbox in memory" in health["reasons"]
        assert health["backlog"]["in_memory"] == 3

        flaky.start()  # Redis is back: what waited in memory moves there (durable again)
        deadline = time.monotonic() + 5
        while (await archive.outbox.stats()).in_memory and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert archive.outbox.last_stats.in_memory == 0
        assert await client.xlen(archive.outbox.stream_key) == 3

        await server.start()
        assert await archive.drain(5.0)
        rows = message_rows_in_db(db)
        assert len(rows) == 6 and len({r[3] for r in rows}) == 6
    finally:
        await client.aclose()
        flaky.stop()


async def test_not_configured_is_a_no_op_that_says_so() -> None:
    archive = build_archive(Settings(SUPABASE_URL="", REDIS_URL=""))
    assert isinstance(archive, DisabledArchive)
    await archive.start()
    await archive.record_turn("c", "s", [Turn("user", "hi")], {})
    assert await archive.load_history("c", 5) is None
    assert archive.health() == {"configured": False, "status": "not_configured",
                                "reason": "SUPABASE_URL is not set"}
    no_key = build_archive(Settings(SUPABASE_URL="https://example.invalid", REDIS_URL=""))
    assert (await no_key.check_health())["reason"] == "SUPABASE_SERVICE_ROLE_KEY is not set"
    typo = build_archive(Settings(SUPABASE_URL="project.supabase.co", REDIS_URL="",
                                  SUPABASE_SERVICE_ROLE_KEY=FAKE_SERVICE_ROLE_KEY))
    assert isinstance(typo, DisabledArchive)
    assert typo.health() == {"status": "degraded", "configured": False,
                             "reason": "SUPABASE_URL is not an http(s) URL"}
    await archive.aclose()


async def test_health_is_cheap_and_never_shows_the_key(make_archive: Any,
                                                      redis_client: Any) -> None:
    archive = await make_archive(redis_client)
    first = archive.health()  # sync, never waits: nothing known yet, a probe starts behind it
    assert first["reachable"] is None and first["configured"] is True
    await asyncio.sleep(0.3)
    assert archive.health()["reachable"] is True
    health = await archive.check_health()
    assert health["reachable"] is True and health["status"] == "healthy"
    assert FAKE_SERVICE_ROLE_KEY not in repr(health)
    assert FAKE_SERVICE_ROLE_KEY not in repr(archive.__dict__.get("_url"))
