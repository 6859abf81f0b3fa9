"""The chat tool's memory: threads in Redis (or memory), rebuilt from the Supabase archive when
Redis has lost them.

Each turn is kept cut to ``max_turn_chars`` characters with a visible marker, so one long turn
cannot make every later call of the conversation carry it, nor fill the store; the client still
gets the whole answer.
"""

from __future__ import annotations

from typing import Any

from ..errors import ErrorCode, ToolError
from ..persistence import ArchiveError
from ..storage.turns import Turn


class Conversations:
    """``threads`` (app.storage) in front of ``archive`` (app.persistence)."""

    def __init__(self, threads: Any, archive: Any, *, max_turns: int,
                 max_turn_chars: int) -> None:
        self._threads = threads
        self._archive = archive
        self._max_turns = max_turns
        self._max_turn_chars = max_turn_chars

    async def history(self, continuation_id: str | None) -> list[Turn]:
        """The thread's turns, from Redis/memory or else rebuilt from the Supabase archive."""
        if continuation_id is None:
            return []
        turns = await self._threads.load(continuation_id)
        if turns is None:
            try:
                turns = await self._archive.load_history(continuation_id, self._max_turns)
            except ArchiveError as exc:
                raise ToolError(ErrorCode.STORAGE_ERROR,
                                "thread not in Redis and the Supabase archive cannot be read now",
                                details={"continuation_id": continuation_id},
                                error_type=exc.error_type) from None
            if turns:
                await self._threads.append(continuation_id, turns)
        if turns is None:
            raise ToolError(ErrorCode.CONTINUATION_NOT_FOUND,
                            "no conversation with that continuation_id (expired or unknown)",
                            details={"continuation_id": continuation_id})
        return list(turns)

    async def record(self, continuation_id: str, session_id: str, prompt: str, answer: str,
                     metadata: dict[str, Any]) -> None:
        """Append one exchange to the thread and hand it to the archive's outbox."""
        new_turns = [Turn("user", cut_for_thread(prompt, self._max_turn_chars)),
                     Turn("assistant", cut_for_thread(answer, self._max_turn_chars))]
        await self._threads.append(continuation_id, new_turns)
        await self._archive.record_turn(continuation_id, session_id, new_turns, metadata)


def cut_for_thread(text: str, limit: int) -> str:
    """``text`` as a thread keeps it: the first ``limit`` characters, and a marker saying how many
    were left out, so whoever reads the thread back sees that it was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... cut: {len(text) - limit} characters not kept]"
