"""The Redis-backed thread store against a real redis-server."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from redis.asyncio import Redis

from app.storage.memory import MemoryThreads
from app.storage.redis_store import KEY_PREFIX, RedisThreads
from app.storage.threads import ThreadStore
from app.storage.turns import Turn
from otel import names
from otel.setup import RedisInstrumentation


def contents(thread: list[Turn] | None) -> list[str]:
    assert thread is not None
    return [t.content for t in thread]


async def test_round_trip_under_prefixed_key_with_ttl(redis_server, make_store) -> None:
    store = await make_store(redis_server.url, ttl_hours=1)
    cid = str(uuid.uuid4())
    first = [Turn("user", "hi ü"), Turn("assistant", "hello")]
    assert await store.append(cid, first) == first
    assert await store.load(cid) == first
    async with Redis.from_url(redis_server.url, decode_responses=True) as raw:
        key = f"{KEY_PREFIX}{cid}"
        assert [json.loads(item)["content"] for item in await raw.lrange(key, 0, -1)] == \
            ["hi ü", "hello"]
        assert 3590 * 1000 < await raw.pttl(key) <= 3600 * 1000
    assert (await store.health())["status"] == "healthy"


async def test_unknown_thread_is_none(redis_server, make_store) -> None:
    store = await make_store(redis_server.url)
    assert await store.load(str(uuid.uuid4())) is None


async def test_expires_after_ttl_and_append_refreshes_it(redis_server, telemetry,
                                                        make_client) -> None:
    redis = RedisThreads(make_client(redis_server.url), 0.4, 20,
                         telemetry.instruments.db_duration)
    store = ThreadStore(MemoryThreads(0.4, 20), redis, retry_secs=60)
    try:
        cid = str(uuid.uuid4())
        await store.append(cid, [Turn("user", "one")])
        await asyncio.sleep(0.25)
        await store.append(cid, [Turn("user", "two")])
        await asyncio.sleep(0.25)
        assert contents(await store.load(cid)) == ["one", "two"]
        await asyncio.sleep(0.3)
        assert await store.load(cid) is None
    finally:
        await store.aclose()


async def test_trimming_keeps_newest_turns_in_order(redis_server, make_store) -> None:
    store = await make_store(redis_server.url, max_turns=4)
    cid = str(uuid.uuid4())
    for i in range(0, 10, 2):
        stored = await store.append(cid, [Turn("user", f"m{i}"), Turn("assistant", f"m{i + 1}")])
    assert contents(stored) == ["m6", "m7", "m8", "m9"]
    assert contents(await store.load(cid)) == ["m6", "m7", "m8", "m9"]
    big = [Turn("user", f"b{i}") for i in range(6)]
    assert contents(await store.append(cid, big)) == ["b2", "b3", "b4", "b5"]


async def test_threads_are_isolated(redis_server, make_store) -> None:
    store = await make_store(redis_server.url)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    await asyncio.gather(*(store.append(a, [Turn("user", f"a{i}")]) for i in range(5)),
                         *(store.append(b, [Turn("user", f"b{i}")]) for i in range(5)))
    assert sorted(contents(await store.load(a))) == [f"a{i}" for i in range(5)]
    assert sorted(contents(await store.load(b))) == [f"b{i}" for i in range(5)]


async def test_records_operation_duration_with_bounded_attributes(
        redis_server, make_store, telemetry) -> None:
    store = await make_store(redis_server.url)
    for _ in range(3):
        cid = str(uuid.uuid4())
        await store.append(cid, [Turn("user", "x")])
        await store.load(cid)
    points = {p.attributes[names.DB_OPERATION_NAME]: p
              for p in telemetry.points(names.DB_CLIENT_OPERATION_DURATION)}
    assert set(points) == {"PING", "MULTI", "LRANGE"}
    assert points["LRANGE"].count == 3 and points["MULTI"].count == 3
    for operation, point in points.items():
        assert dict(point.attributes) == {names.DB_SYSTEM_NAME: "redis",
                                          names.DB_OPERATION_NAME: operation}
        assert 0 < point.sum < 1


async def test_spans_follow_the_redis_conventions(redis_server, make_store, make_client,
                                                  traced_redis) -> None:
    """A MULTI is named MULTI (not after its commands), with the batch size and the database
    index; a single command keeps its name and gets the same attributes; the duration metric
    names the operation as the span does."""
    store = await make_store(redis_server.url)
    cid = str(uuid.uuid4())
    await store.append(cid, [Turn("user", "x")])
    await store.load(cid)
    other_db = make_client(redis_server.url.rsplit("/", 1)[0] + "/3")
    async with other_db.pipeline(transaction=False) as pipe:
        pipe.rpush(f"exai:test:{cid}", "a")
        pipe.rpush(f"exai:test:{cid}", "b")
        await pipe.execute()
    async with other_db.pipeline() as pipe:  # one command: an operation, not a batch
        pipe.delete(f"exai:test:{cid}")
        await pipe.execute()

    spans = {span.name: span for span in traced_redis.finished()}
    assert set(spans) == {"PING", "MULTI", "LRANGE", "PIPELINE RPUSH", "MULTI DEL"}, set(spans)
    expected = {"PING": ("0", None), "LRANGE": ("0", None), "MULTI": ("0", 4),
                "PIPELINE RPUSH": ("3", 2), "MULTI DEL": ("3", None)}
    for name, (namespace, batch_size) in expected.items():
        span = spans[name]
        assert span.kind is SpanKind.CLIENT
        assert span.attributes[names.DB_OPERATION_NAME] == name
        assert span.attributes[names.DB_NAMESPACE] == namespace
        assert span.attributes.get(names.DB_OPERATION_BATCH_SIZE) == batch_size
        system = span.attributes.get(names.DB_SYSTEM_NAME) or span.attributes.get("db.system")
        assert system == "redis"
    assert spans["MULTI"].attributes["db.redis.pipeline_length"] == 4  # still the instrumentation's
    measured = {p.attributes[names.DB_OPERATION_NAME]
                for p in traced_redis.points(names.DB_CLIENT_OPERATION_DURATION)}
    assert measured == {"PING", "MULTI", "LRANGE"}


async def test_a_failed_multi_is_named_by_the_conventions_too(own_redis, make_store,
                                                              traced_redis) -> None:
    """The instrumentation's response hook never runs for a failed pipeline: the name must not
    depend on it."""
    store = await make_store(own_redis.url, retry_secs=60)
    own_redis.kill()
    await store.append(str(uuid.uuid4()), [Turn("user", "x")])  # falls back to memory
    assert store.fallback_active
    [failed] = [s for s in traced_redis.finished() if s.status.status_code is StatusCode.ERROR]
    assert failed.name == "MULTI" and failed.attributes[names.DB_OPERATION_NAME] == "MULTI"
    assert failed.attributes[names.DB_OPERATION_BATCH_SIZE] == 4
    assert failed.attributes[names.DB_NAMESPACE] == "0"


def test_uninstrumenting_removes_the_naming_wrapper_too(telemetry) -> None:
    import redis.asyncio.client
    import redis.client

    original = (redis.asyncio.client.Pipeline.execute, redis.client.Pipeline.execute)
    instrumentation = RedisInstrumentation().instrument(telemetry.tracer_provider)
    if not instrumentation.owned:
        pytest.skip("Redis is already instrumented globally by another fixture")
    assert redis.asyncio.client.Pipeline.execute is not original[0]
    instrumentation.uninstrument()
    assert (redis.asyncio.client.Pipeline.execute, redis.client.Pipeline.execute) == original
