"""Row builders are pure: stable idempotency keys, ordered timestamps, bounded titles."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from app.persistence.rows import (
    conversation_row,
    idempotency_key,
    message_rows,
    newest_in_order,
    title_from,
    turn_from_row,
)
from app.storage.turns import Turn

T0 = "2026-11-29T07:00:00.000Z"


def test_idempotency_key_is_stable_and_tells_turns_apart() -> None:
    turn = Turn("user", "hello", T0)
    key = idempotency_key("c-1", turn)
    assert key == idempotency_key("c-1", Turn("user", "hello", T0))
    # The same instant written another way is the same turn (history read back from Supabase).
    assert key == idempotency_key("c-1", Turn("user", "hello", "2026-11-29T07:00:00+00:00"))
    others = {idempotency_key("c-2", turn), idempotency_key("c-1", Turn("assistant", "hello", T0)),
              idempotency_key("c-1", Turn("user", "hello!", T0)),
              idempotency_key("c-1", Turn("user", "hello", "2026-11-29T07:00:00.001Z"))}
    assert key not in others and len(others) == 4 and len(key) == 64


def test_message_rows_keep_order_when_turns_share_a_timestamp() -> None:
    turns = [Turn("system", "be brief", T0), Turn("user", "q", T0), Turn("assistant", "a", T0)]
    rows = message_rows("c-1", turns, {"model": "glm-4.5-flash", "usage": {"input_tokens": 3}})
    stamps = [r["created_at"] for r in rows]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    assert [r["role"] for r in rows] == ["system", "user", "assistant"]
    assert rows[2]["metadata"] == {"model": "glm-4.5-flash", "usage": {"input_tokens": 3}}
    assert rows[0]["metadata"] == rows[1]["metadata"] == {}
    assert len({r["idempotency_key"] for r in rows}) == 3


def test_conversation_row_title_and_metadata() -> None:
    long = "why  is\nthe sky " + "blue " * 100
    row = conversation_row("c-1", "sess", [Turn("system", "sys", T0), Turn("user", long, T0)],
                           {"when": datetime(2026, 11, 29, tzinfo=UTC), "n": 1})
    assert row["continuation_id"] == "c-1" and row["session_id"] == "sess"
    assert row["title"].startswith("why is the sky blue") and len(row["title"]) == 120
    assert row["metadata"]["n"] == 1 and row["metadata"]["when"] == "2026-11-29 00:00:00+00:00"
    assert row["updated_at"].startswith("2026-11-29T07:00:00")
    assert title_from([Turn("assistant", "x", T0)]) is None


def test_newest_in_order_takes_the_newest_and_returns_them_oldest_first() -> None:
    rows = [{"role": "user", "content": str(i), "idempotency_key": f"k{i}",
             "created_at": f"2026-11-29T07:00:{i:02d}Z"} for i in range(30)]
    random.Random(5).shuffle(rows)
    picked = newest_in_order(rows + rows[:5], 10)
    assert [r["content"] for r in picked] == [str(i) for i in range(20, 30)]
    assert newest_in_order(rows, 0) == []
    assert turn_from_row(picked[-1]) == Turn("user", "29", "2026-11-29T07:00:29.000Z")
