"""What a thread keeps of one turn: at most EXAI_THREAD_MAX_TURN_CHARS characters, with a marker;
the client still gets the whole answer. The chat tool against the fake upstream over loopback."""

from __future__ import annotations

from typing import Any

import pytest

from app.limits import Slots
from app.storage.threads import create_thread_store
from app.storage.turns import Turn
from app.tools.base import CallContext
from app.tools.chat import ChatArguments, ChatTool
from app.tools.conversations import Conversations, cut_for_thread

from .conftest import FakeUpstream, Telemetry, settings_for

LIMIT = 1000


class RecordingArchive:
    """Stands in for the Supabase archive: keeps what it was asked to record."""

    def __init__(self) -> None:
        self.recorded: list[list[Turn]] = []

    async def record_turn(self, continuation_id: str, session_id: str, turns: list[Turn],
                          meta: dict[str, Any]) -> None:
        self.recorded.append(list(turns))

    async def load_history(self, continuation_id: str, max_turns: int) -> list[Turn]:
        return []


async def _noop(_: str) -> None:
    return None


@pytest.fixture
def chat_tool(fake: FakeUpstream, telemetry: Telemetry, make_registry):
    settings = settings_for(fake, EXAI_THREAD_MAX_TURN_CHARS=LIMIT)
    threads = create_thread_store(settings, telemetry.instruments)
    archive = RecordingArchive()
    slots = {key: Slots("provider", 4, 1.0) for key in ("kimi", "glm")}
    tool = ChatTool(make_registry(settings), slots, Conversations(
        threads, archive, max_turns=settings.max_conversation_turns,
        max_turn_chars=settings.max_turn_chars))
    return tool, threads, archive


def _ctx() -> CallContext:
    return CallContext("r-1", "s-1", "0" * 32, progress=_noop, stream_chunk=_noop)


async def test_long_turns_are_stored_cut_and_answered_whole(fake: FakeUpstream, chat_tool) -> None:
    tool, threads, archive = chat_tool
    await fake.configure(answer_bytes=5000)
    prompt = "p" * 3000
    result = await tool.run(ChatArguments(prompt=prompt), _ctx())
    assert len(result.text) >= 5000  # the reply keeps the whole answer

    stored = await threads.load(result.metadata["continuation_id"])
    assert [t.role for t in stored] == ["user", "assistant"]
    assert stored[0].content == "p" * LIMIT + "\n[... cut: 2000 characters not kept]"
    assert stored[1].content == (result.text[:LIMIT] +
                                 f"\n[... cut: {len(result.text) - LIMIT} characters not kept]")
    assert [t.content for t in archive.recorded[0]] == [t.content for t in stored]


async def test_short_turns_are_stored_whole(chat_tool) -> None:
    tool, threads, _ = chat_tool
    result = await tool.run(ChatArguments(prompt="hello"), _ctx())
    stored = await threads.load(result.metadata["continuation_id"])
    assert [t.content for t in stored] == ["hello", result.text]


@pytest.mark.parametrize("text, limit, kept", [
    ("", 5, ""), ("abcde", 5, "abcde"), ("abcdef", 5, "abcde\n[... cut: 1 characters not kept]"),
    ("€" * 10, 3, "€€€\n[... cut: 7 characters not kept]"),
])
def test_cut_for_thread(text: str, limit: int, kept: str) -> None:
    assert cut_for_thread(text, limit) == kept
