"""Pure builders between the daemon's ``Turn`` and the archive's table rows.

Nothing here does I/O or checks what the database will check (role, length): the database's
constraints are the single judge, and a row they reject becomes a dead letter, not a crash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from app.storage.turns import Turn
from app.timestamps import format_utc, normalize_iso, parse_iso

TITLE_MAX_CHARS = 120
_KEY_VERSION = "exai-turn-v1"


def idempotency_key(continuation_id: str, turn: Turn) -> str:
    """A stable key for one turn of one thread: the same turn always maps to the same row.

    Built from what identifies the turn (thread, role, creation time, content), so re-sending a
    turn, or a whole thread, after a retry or a restart can never create a second row.
    """
    digest = hashlib.sha256()
    # The timestamp in one canonical form, so a turn read back from Supabase keys the same.
    created_at = normalize_iso(turn.created_at)
    for part in (_KEY_VERSION, continuation_id, turn.role, created_at, turn.content):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x1f")
    return digest.hexdigest()


def jsonable(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """A JSON object for a ``jsonb`` column: anything not JSON-native becomes its string."""
    if not metadata:
        return {}
    return json.loads(json.dumps(dict(metadata), default=str))


def title_from(turns: Iterable[Turn]) -> str | None:
    """The first user message, on one line, cut to ``TITLE_MAX_CHARS``."""
    for turn in turns:
        if turn.role == "user":
            text = " ".join(turn.content.split())
            if not text:
                continue
            return text if len(text) <= TITLE_MAX_CHARS else text[:TITLE_MAX_CHARS - 1] + "\u2026"
    return None


def conversation_row(continuation_id: str, session_id: str | None, turns: Sequence[Turn],
                     metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``conversations`` upsert body (keyed on ``continuation_id``).

    ``created_at`` is left to the database default on insert and kept on update (the migration's
    trigger also keeps the first title and only moves ``updated_at`` forward).
    """
    times = [t for t in (parse_iso(turn.created_at) for turn in turns) if t]
    updated = max(times) if times else datetime.now(UTC)
    return {
        "continuation_id": continuation_id,
        "session_id": session_id,
        "title": title_from(turns),
        "metadata": jsonable(metadata),
        "updated_at": format_utc(updated, "microseconds"),
    }


def message_rows(continuation_id: str, turns: Sequence[Turn],
                 metadata: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The ``messages`` upsert body (keyed on ``idempotency_key``), without ``conversation_id``.

    Turns keep their own ``created_at``, so history is ordered by when a turn happened, not by
    when the outbox delivered it. Turns of one batch that share a timestamp are spread by a
    microsecond each, so "newest N in order" is never ambiguous. The exchange's ``metadata``
    (provider, model, usage...) rides on the assistant turns.
    """
    rows: list[dict[str, Any]] = []
    previous: datetime | None = None
    extra = jsonable(metadata)
    for turn in turns:
        created = parse_iso(turn.created_at)
        if created is not None:
            if previous is not None and created <= previous:
                created = previous + timedelta(microseconds=1)
            previous = created
            created_at = format_utc(created, "microseconds")
        else:
            created_at = turn.created_at  # the database rejects it; it becomes a dead letter
        rows.append({
            "role": turn.role,
            "content": turn.content,
            "metadata": extra if turn.role == "assistant" else {},
            "idempotency_key": idempotency_key(continuation_id, turn),
            "created_at": created_at,
        })
    return rows


def turn_from_row(row: Mapping[str, Any]) -> Turn:
    created_at = normalize_iso(str(row.get("created_at") or ""))
    if created_at:
        return Turn(role=row["role"], content=row["content"], created_at=created_at)
    return Turn(role=row["role"], content=row["content"])


def newest_in_order(rows: Iterable[Mapping[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The ``limit`` newest rows (by ``created_at``), oldest first; duplicates by key dropped."""
    unique: dict[str, dict[str, Any]] = {}
    for row in rows:
        unique.setdefault(str(row.get("idempotency_key") or id(row)), dict(row))
    oldest = datetime.min.replace(tzinfo=UTC)
    ordered = sorted(unique.values(),
                     key=lambda r: (parse_iso(str(r.get("created_at"))) or oldest))
    return ordered[-limit:] if limit > 0 else []
