"""Chat over WebSocket through to Supabase: writes land, threads are rebuilt from the archive,
and an archive outage never fails a chat that does not need it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
import redis.asyncio as redis_asyncio

from tests.harness.postgres import PostgresCluster, apply_migrations
from tests.harness.postgrest import PostgrestTestServer

from .conftest import eventually

SERVICE_KEY = "test-service-role-key-not-a-secret"


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    cluster = PostgresCluster().start()
    dsn = cluster.create_database("exai_daemon_e2e")
    apply_migrations(dsn)
    yield dsn
    cluster.destroy()


@pytest.fixture
async def supabase(pg_dsn: str) -> AsyncIterator[PostgrestTestServer]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("truncate public.messages, public.conversations cascade")
    server = PostgrestTestServer(pg_dsn, SERVICE_KEY)
    await server.start()
    yield server
    await server.aclose()


def _messages(dsn: str, continuation_id: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "select m.role, m.content from messages m join conversations c "
            "on c.id = m.conversation_id where c.continuation_id = %s "
            "order by m.created_at, m.id", (continuation_id,)).fetchall()


async def test_chat_turns_land_in_supabase_and_rebuild_a_lost_thread(start_daemon, supabase,
                                                                     pg_dsn, redis_server):
    daemon = await start_daemon(SUPABASE_URL=supabase.url, SUPABASE_SERVICE_ROLE_KEY=SERVICE_KEY)
    shared = daemon.daemon.redis  # one client on REDIS_URL, for the threads and the outbox
    assert shared is not None
    assert daemon.daemon.threads._redis._client is shared  # type: ignore[union-attr]
    assert daemon.daemon.archive.outbox.redis is shared  # type: ignore[union-attr]
    client = await daemon.client()
    try:
        first = await client.call_tool("chat", {"prompt": "archive this question"})
        continuation = first["metadata"]["continuation_id"]
        rows = await eventually(lambda: len(_messages(pg_dsn, continuation)) == 2
                                and _messages(pg_dsn, continuation))
        assert rows == [("user", "archive this question"),
                        ("assistant", first["outputs"][0]["text"])]

        # the thread disappears from Redis (expiry, flush): it is rebuilt from Supabase
        store = redis_asyncio.Redis.from_url(redis_server.url)
        deleted = 0
        async for key in store.scan_iter(f"*{continuation}*"):
            deleted += await store.delete(key)
        await store.aclose()
        assert deleted >= 1
        second = await client.call_tool("chat", {"prompt": "and a follow-up",
                                                 "continuation_id": continuation})
        assert second["ok"], second
        assert second["metadata"]["usage"]["input_tokens"] > \
            first["metadata"]["usage"]["input_tokens"]
        await eventually(lambda: len(_messages(pg_dsn, continuation)) == 4)
    finally:
        await client.close()


async def test_supabase_down_chats_still_answer_and_writes_land_later(start_daemon, supabase,
                                                                     pg_dsn):
    daemon = await start_daemon(SUPABASE_URL=supabase.url, SUPABASE_SERVICE_ROLE_KEY=SERVICE_KEY)
    await supabase.stop()
    client = await daemon.client()
    try:
        replies = [await client.call_tool("chat", {"prompt": f"during the outage {i}"})
                   for i in range(3)]
        assert all(r["ok"] for r in replies)
        missing = await client.call_tool("chat", {"prompt": "old thread",
                                                  "continuation_id": str(uuid.uuid4())})
        assert missing["error"]["code"] == "STORAGE_ERROR"
        report = await daemon.daemon.health_report()
        assert report["components"]["supabase"]["status"] == "degraded" or \
            report["components"]["supabase"]["backlog"]["depth"] >= 1
    finally:
        await client.close()
    await supabase.start()
    for reply in replies:
        continuation = reply["metadata"]["continuation_id"]
        await eventually(lambda c=continuation: len(_messages(pg_dsn, c)) == 2, timeout=30)
