"""Fixtures for the Supabase archive: a real PostgreSQL with the migrations applied, the
PostgREST-compatible test server over real HTTP in front of it, a real redis-server for the
outbox, and in-memory OpenTelemetry providers local to each test (never installed globally).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import psycopg
import pytest
from redis.exceptions import ResponseError

from app.config import Settings
from app.persistence import Archive, build_archive
from app.storage.redis_client import create_redis_client
from tests.harness.otel_capture import InMemoryTelemetry as Telemetry
from tests.harness.otel_capture import in_memory_telemetry
from tests.harness.postgres import PostgresCluster, apply_migrations
from tests.harness.postgrest import PostgrestTestServer
from tests.harness.procs import ManagedProcess

# An obviously fake key: the test server only checks that the client sends what it was given.
FAKE_SERVICE_ROLE_KEY = "test-only-fake-service-role-key"
FAST = {"backoff_base_secs": 0.02, "backoff_max_secs": 0.2, "idle_poll_secs": 0.05,
        "request_timeout_secs": 5.0}


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    with in_memory_telemetry() as captured:
        yield captured


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster().start()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def pg_dsn(pg_cluster: PostgresCluster) -> str:
    dsn = pg_cluster.create_database("exai_archive")
    apply_migrations(dsn)
    return dsn


@pytest.fixture
def db(pg_dsn: str) -> Iterator[psycopg.Connection]:
    """A connection to the migrated database, emptied before each test."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("truncate public.messages, public.conversations cascade")
        yield conn


@pytest.fixture
async def server(pg_dsn: str, db: psycopg.Connection) -> AsyncIterator[PostgrestTestServer]:
    srv = PostgrestTestServer(pg_dsn, FAKE_SERVICE_ROLE_KEY)
    await srv.start()
    yield srv
    await srv.aclose()


@pytest.fixture
async def redis_client(redis_server: ManagedProcess) -> AsyncIterator[Any]:
    """The daemon's shared client (the thread store's settings, replies decoded)."""
    client = create_redis_client(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def outbox_prefix() -> str:
    """A fresh set of outbox keys per test (the Redis server is shared by the session)."""
    return f"exai:test:{uuid.uuid4().hex[:8]}:outbox"


@pytest.fixture
async def make_archive(server: PostgrestTestServer, telemetry: Telemetry,
                       outbox_prefix: str) -> AsyncIterator[Callable[..., Any]]:
    """``await make_archive(redis=client_or_None, start=True, **options)`` -> a started Archive.

    Every archive made is closed at the end of the test.
    """
    made: list[Archive] = []

    async def make(redis: Any = None, *, start: bool = True, url: str | None = None,
                   tel: Telemetry | None = None, **options: Any) -> Archive:
        settings = Settings(SUPABASE_URL=url or server.url,
                            SUPABASE_SERVICE_ROLE_KEY=FAKE_SERVICE_ROLE_KEY, REDIS_URL="")
        tel = tel or telemetry
        archive = build_archive(settings, tel.instruments, redis=redis, outbox_prefix=outbox_prefix,
                                tracer_provider=tel.tracer_provider,
                                meter_provider=tel.meter_provider, **{**FAST, **options})
        assert isinstance(archive, Archive)
        if start:
            await archive.start()
        made.append(archive)
        return archive

    yield make
    for archive in made:
        await archive.aclose(drain_timeout_secs=0)


def message_rows_in_db(db: psycopg.Connection) -> list[tuple[Any, ...]]:
    """(continuation_id, role, content, idempotency_key) of every stored message."""
    return db.execute(
        "select c.continuation_id, m.role, m.content, m.idempotency_key from messages m "
        "join conversations c on c.id = m.conversation_id order by m.created_at").fetchall()


async def in_flight(redis: Any, outbox: Any) -> int:
    """Writes claimed by some consumer of the outbox's group and not yet acknowledged (0 before
    the first worker has made the group)."""
    try:
        return int((await redis.xpending(outbox.stream_key, outbox.group))["pending"])
    except ResponseError as exc:
        if "NOGROUP" not in str(exc):
            raise
        return 0
