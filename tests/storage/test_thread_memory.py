"""The in-memory thread store: TTL, turn limit and the bound on how many threads it keeps."""

from __future__ import annotations

import uuid

import pytest

from app.storage.memory import MemoryThreads
from app.storage.turns import Turn
from otel import names


class Clock:
    """A clock the test moves by hand, so expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def turns(*contents: str) -> list[Turn]:
    return [Turn("user" if i % 2 == 0 else "assistant", c) for i, c in enumerate(contents)]


def test_round_trip_returns_copies() -> None:
    memory = MemoryThreads(ttl_secs=60, max_turns=20)
    stored = memory.append("a", turns("hi", "hello"))
    assert [t.content for t in stored] == ["hi", "hello"]
    stored.append(Turn("user", "not stored"))
    assert memory.load("a") == stored[:2]
    assert memory.load("missing") is None


def test_expiry_on_read_and_append_refreshes_ttl() -> None:
    clock = Clock()
    memory = MemoryThreads(ttl_secs=10, max_turns=20, clock=clock)
    memory.append("a", turns("one"))
    clock.now += 8
    memory.append("a", turns("two"))
    clock.now += 8
    assert [t.content for t in memory.load("a") or []] == ["one", "two"]
    assert memory.remaining_ttl("a") == pytest.approx(2)
    clock.now += 3
    assert memory.load("a") is None
    assert memory.remaining_ttl("a") is None
    assert [t.content for t in memory.append("a", turns("fresh"))] == ["fresh"]


def test_keeps_newest_turns_in_order() -> None:
    memory = MemoryThreads(ttl_secs=60, max_turns=3)
    for i in range(7):
        stored = memory.append("a", [Turn("user", f"m{i}")])
    assert [t.content for t in stored] == ["m4", "m5", "m6"]
    assert [t.content for t in memory.load("a") or []] == ["m4", "m5", "m6"]


def test_threads_are_isolated() -> None:
    memory = MemoryThreads(ttl_secs=60, max_turns=5)
    memory.append("a", turns("for a"))
    memory.append("b", turns("for b"))
    assert [t.content for t in memory.load("a") or []] == ["for a"]
    assert [t.content for t in memory.load("b") or []] == ["for b"]


def test_bounded_evicts_least_recently_written() -> None:
    memory = MemoryThreads(ttl_secs=60, max_turns=5, max_threads=3)
    for name in "abcd":
        memory.append(name, turns(name))
    memory.append("b", turns("b again"))  # b is now the most recently written
    memory.append("e", turns("e"))
    assert len(memory) == 3
    assert memory.load("a") is None and memory.load("c") is None
    assert all(memory.load(name) for name in "bde")


def test_expired_threads_leave_without_being_read() -> None:
    clock = Clock()
    memory = MemoryThreads(ttl_secs=10, max_turns=5, clock=clock)
    for i in range(100):
        memory.append(str(i), turns("x"))
    clock.now += 11
    memory.append("new", turns("y"))
    assert len(memory) == 1


@pytest.mark.parametrize("kwargs", [{"ttl_secs": 0}, {"max_turns": 0}, {"max_threads": 0}])
def test_rejects_nonsense_limits(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        MemoryThreads(**{"ttl_secs": 1, "max_turns": 1, **kwargs})


async def test_factory_without_redis_url_serves_from_memory(make_store, telemetry) -> None:
    store = await make_store(redis_url="", max_turns=2)
    cid = str(uuid.uuid4())
    assert await store.load(cid) is None
    await store.append(cid, turns("one", "two"))
    stored = await store.append(cid, turns("three"))
    assert [t.content for t in stored] == ["two", "three"]
    assert await store.health() == {
        "status": "healthy", "backend": "memory", "configured": "memory",
        "fallback_active": False, "last_error": None, "pending_resync": 0,
    }
    [point] = telemetry.points(names.EXAI_STORAGE_FALLBACK_ACTIVE)
    assert point.value == 0
    assert dict(point.attributes) == {names.EXAI_STORAGE_BACKEND: "memory"}
    assert telemetry.points(names.DB_CLIENT_OPERATION_DURATION) == []


async def test_append_without_turns_is_a_caller_bug(make_store) -> None:
    store = await make_store()
    with pytest.raises(ValueError):
        await store.append(str(uuid.uuid4()), [])
