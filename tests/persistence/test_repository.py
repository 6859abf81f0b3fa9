"""supabase-py (the production client) against the PostgREST-compatible server and PostgreSQL."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from app.persistence.errors import ArchiveUnavailable, RejectedWrite
from app.persistence.repository import SupabaseRepository
from app.persistence.rows import conversation_row, message_rows
from app.persistence.telemetry import SupabaseTelemetry
from app.storage.turns import Turn
from tests.harness.postgrest import PostgrestTestServer

from .conftest import FAKE_SERVICE_ROLE_KEY


@pytest.fixture
async def repo(server: PostgrestTestServer) -> Any:
    repository = await SupabaseRepository.connect(server.url, FAKE_SERVICE_ROLE_KEY,
                                                  SupabaseTelemetry(None, server.url),
                                                  timeout_secs=3.0)
    yield repository
    await repository.aclose()


def _turns(n: int, start: int = 0) -> list[Turn]:
    return [Turn("user" if i % 2 == 0 else "assistant", f"turn {i}",
                 f"2026-11-29T07:{i // 60:02d}:{i % 60:02d}.000Z") for i in range(start, start + n)]


async def test_upserts_are_idempotent(repo: SupabaseRepository, db: psycopg.Connection) -> None:
    turns = _turns(2)
    first = await repo.upsert_conversation(conversation_row("c-1", "s-1", turns, {"a": 1}))
    again = await repo.upsert_conversation(conversation_row("c-1", "s-1", turns, {"a": 2}))
    assert first == again
    rows = [{**r, "conversation_id": first} for r in message_rows("c-1", turns)]
    for _ in range(3):
        await repo.upsert_messages(rows)
    assert db.execute("select count(*) from messages").fetchone()[0] == 2
    assert db.execute(
        "select count(*), max(metadata->>'a') from conversations").fetchone() == (1, "2")


async def test_newest_messages_reads_the_newest_n(repo: SupabaseRepository) -> None:
    turns = _turns(30)
    conv = await repo.upsert_conversation(conversation_row("c-1", None, turns))
    await repo.upsert_messages([{**r, "conversation_id": conv} for r in message_rows("c-1", turns)])
    newest = await repo.newest_messages(conv, 5)
    assert [m["content"] for m in newest] == ["turn 29", "turn 28", "turn 27", "turn 26", "turn 25"]
    assert await repo.conversation_id("c-1") == conv
    assert await repo.conversation_id("no-such-thread") is None


@pytest.mark.parametrize(("change", "code"), [
    ({"role": "robot"}, "23514"),
    ({"content": "x" * 200_001}, "23514"),
    ({"created_at": "yesterday-ish"}, "22007"),
])
async def test_bad_rows_are_rejected_as_poison_with_postgres_codes(
        repo: SupabaseRepository, change: dict[str, Any], code: str) -> None:
    conv = await repo.upsert_conversation(conversation_row("c-1", None, _turns(1)))
    row = {**message_rows("c-1", _turns(1))[0], "conversation_id": conv, **change}
    with pytest.raises(RejectedWrite) as info:
        await repo.upsert_messages([row])
    assert info.value.code == code and info.value.message
    # A too-long session id is refused on the conversation itself.
    with pytest.raises(RejectedWrite, match="conversations_session_id_length"):
        await repo.upsert_conversation(conversation_row("c-2", "s" * 65, _turns(1)))


async def test_outages_and_misconfiguration_are_retryable(repo: SupabaseRepository,
                                                          server: PostgrestTestServer) -> None:
    server.fail_status = 503
    with pytest.raises(ArchiveUnavailable) as info:
        await repo.ping()
    assert info.value.code == "PGRST001"
    server.fail_status = None
    await server.stop()
    with pytest.raises(ArchiveUnavailable) as down:
        await repo.ping()
    assert down.value.error_type in ("ConnectError", "RemoteProtocolError", "ReadError")
    await server.start()
    await repo.ping()


async def _ping_error_code(server: PostgrestTestServer, key: str) -> str | None:
    """The PostgREST code of the ArchiveUnavailable a fresh client's ping raises."""
    repo = await SupabaseRepository.connect(server.url, key, SupabaseTelemetry(None, server.url))
    try:
        with pytest.raises(ArchiveUnavailable) as info:
            await repo.ping()
        return info.value.code
    finally:
        await repo.aclose()


async def test_wrong_key_and_missing_table_are_not_poison(server: PostgrestTestServer) -> None:
    assert await _ping_error_code(server, "another-fake-key") == "PGRST301"
    server.tables = ("messages",)  # as if the migration had not been run
    assert await _ping_error_code(server, FAKE_SERVICE_ROLE_KEY) == "PGRST205"


async def test_test_server_maps_unique_violations_to_409(server: PostgrestTestServer) -> None:
    """A plain insert (no upsert) of a duplicate key: PostgREST answers 409 with 23505."""
    import httpx
    from supabase import AsyncClientOptions, acreate_client

    http = httpx.AsyncClient()
    client = await acreate_client(
        server.url, FAKE_SERVICE_ROLE_KEY,
        AsyncClientOptions(httpx_client=http, postgrest_client_retry=False))
    await client.table("conversations").insert({"continuation_id": "dup"}).execute()
    with pytest.raises(Exception) as info:
        await client.table("conversations").insert({"continuation_id": "dup"}).execute()
    assert getattr(info.value, "code", None) == "23505"
    assert server.requests[-1].status == 409
    await http.aclose()
