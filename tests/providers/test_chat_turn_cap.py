"""What a thread keeps of one turn: at most EXAI_THREAD_MAX_TURN_CHARS characters, with a marker;
the client still gets the whole answer. The chat tool against the fake upstream over loopback."""

from __future__ import annotations

import pytest

from app.tools.chat import ChatArguments
from app.tools.conversations import cut_for_thread

from .conftest import FakeUpstream, call_context

LIMIT = 1000


@pytest.fixture
def chat_tool(make_chat_tool):
    return make_chat_tool(EXAI_THREAD_MAX_TURN_CHARS=LIMIT)


async def test_long_turns_are_stored_cut_and_answered_whole(fake: FakeUpstream, chat_tool) -> None:
    tool, threads, archive = chat_tool
    await fake.configure(answer_bytes=5000)
    prompt = "p" * 3000
    result = await tool.run(ChatArguments(prompt=prompt), call_context())
    assert len(result.text) >= 5000  # the reply keeps the whole answer

    stored = await threads.load(result.metadata["continuation_id"])
    assert [t.role for t in stored] == ["user", "assistant"]
    assert stored[0].content == "p" * LIMIT + "\n[... cut: 2000 characters not kept]"
    assert stored[1].content == (result.text[:LIMIT] +
                                 f"\n[... cut: {len(result.text) - LIMIT} characters not kept]")
    assert [t.content for t in archive.recorded[0]] == [t.content for t in stored]


async def test_short_turns_are_stored_whole(chat_tool) -> None:
    tool, threads, _ = chat_tool
    result = await tool.run(ChatArguments(prompt="hello"), call_context())
    stored = await threads.load(result.metadata["continuation_id"])
    assert [t.content for t in stored] == ["hello", result.text]


@pytest.mark.parametrize("text, limit, kept", [
    ("", 5, ""), ("abcde", 5, "abcde"), ("abcdef", 5, "abcde\n[... cut: 1 characters not kept]"),
    ("€" * 10, 3, "€€€\n[... cut: 7 characters not kept]"),
])
def test_cut_for_thread(text: str, limit: int, kept: str) -> None:
    assert cut_for_thread(text, limit) == kept
