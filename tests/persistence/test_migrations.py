"""The migrations, applied to a real PostgreSQL: the DDL is proven, not just written."""

from __future__ import annotations

import psycopg
import pytest

from tests.harness.postgres import PostgresCluster, apply_migrations, migration_files


def _columns(db: psycopg.Connection, table: str) -> dict[str, str]:
    rows = db.execute("select column_name, data_type from information_schema.columns "
                      "where table_schema = 'public' and table_name = %s", (table,)).fetchall()
    return dict(rows)


def test_migrations_apply_to_a_fresh_database_and_again(pg_cluster: PostgresCluster) -> None:
    dsn = pg_cluster.create_database("exai_migrate_twice")
    assert apply_migrations(dsn) == [p.name for p in migration_files()]
    assert migration_files(), "no migration in migrations/"
    # Running them again is harmless (a person may run the file twice).
    apply_migrations(dsn)


def test_tables_have_the_contract_columns(db: psycopg.Connection) -> None:
    assert _columns(db, "conversations") == {
        "id": "uuid", "continuation_id": "text", "session_id": "text", "title": "text",
        "metadata": "jsonb", "created_at": "timestamp with time zone",
        "updated_at": "timestamp with time zone"}
    assert _columns(db, "messages") == {
        "id": "uuid", "conversation_id": "uuid", "role": "text", "content": "text",
        "metadata": "jsonb", "idempotency_key": "text",
        "created_at": "timestamp with time zone"}


def test_history_index_serves_newest_first(db: psycopg.Connection) -> None:
    indexdef = db.execute("select indexdef from pg_indexes where indexname = "
                          "'messages_conversation_created_idx'").fetchone()
    assert indexdef and "(conversation_id, created_at DESC, id DESC)" in indexdef[0]
    uniques = {r[0] for r in db.execute(
        "select conname from pg_constraint where contype = 'u'").fetchall()}
    assert {"conversations_continuation_id_key", "messages_idempotency_key_key"} <= uniques
    # On an empty table the planner would rather scan; forbid that to see what the index offers.
    db.execute("set enable_seqscan = off")
    db.execute("set enable_bitmapscan = off")
    plan = "\n".join(r[0] for r in db.execute(
        "explain select role, content from messages where conversation_id = "
        "'00000000-0000-0000-0000-000000000001' "
        "order by created_at desc, id desc limit 20").fetchall())
    db.execute("reset all")
    assert "messages_conversation_created_idx" in plan and "Sort" not in plan


def _conversation(db: psycopg.Connection, cid: str = "c-1") -> str:
    return str(db.execute("insert into conversations (continuation_id) values (%s) returning id",
                          (cid,)).fetchone()[0])


def _message(db: psycopg.Connection, conv: str, role: str = "user", content: str = "hi",
             key: str = "k" * 20) -> None:
    db.execute("insert into messages (conversation_id, role, content, idempotency_key) "
               "values (%s, %s, %s, %s)", (conv, role, content, key))


@pytest.mark.parametrize(("role", "content", "key", "constraint"), [
    ("robot", "hi", "a" * 20, "messages_role_check"),
    ("user", "x" * 200_001, "b" * 20, "messages_content_length"),
    ("user", "hi", "short", "messages_idempotency_key_length"),
])
def test_bad_messages_are_refused_by_named_constraints(db: psycopg.Connection, role: str,
                                                       content: str, key: str,
                                                       constraint: str) -> None:
    conv = _conversation(db)
    with pytest.raises(psycopg.errors.CheckViolation) as info:
        _message(db, conv, role, content, key)
    assert info.value.diag.constraint_name == constraint


def test_idempotency_key_is_unique_and_delete_cascades(db: psycopg.Connection) -> None:
    conv = _conversation(db)
    _message(db, conv)
    with pytest.raises(psycopg.errors.UniqueViolation):
        _message(db, conv)
    db.execute("delete from conversations where id = %s", (conv,))
    assert db.execute("select count(*) from messages").fetchone()[0] == 0


def test_upsert_keeps_first_title_and_creation_and_only_moves_updated_at_forward(
        db: psycopg.Connection) -> None:
    upsert = ("insert into conversations (continuation_id, title, updated_at) values (%s, %s, %s) "
              "on conflict (continuation_id) do update set title = excluded.title, "
              "updated_at = excluded.updated_at returning title, created_at, updated_at")
    first = db.execute(upsert, ("c-1", "first question", "2026-01-01T10:00:00Z")).fetchone()
    later = db.execute(upsert, ("c-1", "second question", "2026-01-01T11:00:00Z")).fetchone()
    late_old = db.execute(upsert, ("c-1", "third", "2026-01-01T09:00:00Z")).fetchone()
    assert later[0] == late_old[0] == "first question"
    assert later[1] == late_old[1] == first[1]
    assert late_old[2] == later[2] > first[2]
