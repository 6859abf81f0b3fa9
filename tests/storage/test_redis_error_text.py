"""A Redis failure is described by what failed, never by the command that failed.

redis-py quotes a failed pipeline command, arguments and all, into its error: for a thread
append, the start of the user's prompt. That description goes to the console, the exported log
and ``/health`` (which needs no token), so it must name the error, not the data.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from app.storage.redis_store import KEY_PREFIX, describe_error
from app.storage.turns import Turn
from tests.harness.log_capture import LogOutput, captured_logs

PROMPT = "Initech merger: my private prompt"
SECRET_WORD = "Initech"  # redis-py cuts the quoted command short: its start is what leaks
STORAGE_LOG = "app.storage"


@pytest.fixture
def log_output() -> Iterator[LogOutput]:
    """The daemon's console handler and OTel bridge, on the storage loggers."""
    with captured_logs(STORAGE_LOG) as output:
        yield output


async def _config(url: str, **settings: object) -> None:
    async with Redis.from_url(url) as raw:
        for name, value in settings.items():
            await raw.config_set(name.replace("_", "-"), value)


async def test_out_of_memory_names_the_error_not_the_prompt(own_redis, make_store, log_output):
    store = await make_store(own_redis.url)
    # Any used memory is over one byte: every write is refused with OOM.
    await _config(own_redis.url, maxmemory_policy="noeviction", maxmemory=1)

    thread = await store.append(str(uuid.uuid4()), [Turn("user", PROMPT)])
    assert [t.content for t in thread] == [PROMPT]  # served from memory meanwhile

    health = await store.health()
    assert health["fallback_active"] is True
    assert health["last_error"] == "OutOfMemoryError: OOM"
    assert "OutOfMemoryError: OOM" in log_output.console.getvalue()
    assert log_output.exported.get_finished_logs()
    assert SECRET_WORD not in log_output.everything()
    assert SECRET_WORD not in json.dumps(health)


async def test_an_error_reply_is_named_by_its_code(own_redis, make_store, log_output):
    store = await make_store(own_redis.url)
    continuation_id = str(uuid.uuid4())
    async with Redis.from_url(own_redis.url) as raw:
        await raw.set(f"{KEY_PREFIX}{continuation_id}", "not a list")

    await store.append(continuation_id, [Turn("user", PROMPT)])  # RPUSH on a string: WRONGTYPE

    health = await store.health()
    assert health["last_error"] == "ResponseError: WRONGTYPE"
    assert SECRET_WORD not in log_output.everything() + json.dumps(health)


@pytest.mark.parametrize("error, expected", [
    (ResponseError("Command # 2 (RPUSH exai:thread:x {\"content\":\"" + PROMPT + "\"}) of "
                   "pipeline caused error: ('WRONGTYPE Operation against a key',)"),
     "ResponseError: WRONGTYPE"),
    (ResponseError("unknown command 'X', with args beginning with: '" + PROMPT + "'",
                   status_code="ERR"), "ResponseError: ERR"),
    (ResponseError(PROMPT), "ResponseError"),
    (RedisConnectionError("Command # 1 (LPUSH k " + PROMPT + ") of pipeline caused error: "
                          "Connection reset by peer"),
     "ConnectionError: Connection reset by peer"),
    (RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."),
     "ConnectionError: Error 111 connecting to 127.0.0.1:1. Connection refused."),
    (OSError("auth failed for s3cret-pass\nforged line"),
     "OSError: auth failed for ****\\nforged line"),
    (TimeoutError(), "TimeoutError"),
])
def test_describe_error(error, expected) -> None:
    assert describe_error(error, secrets=("s3cret-pass",)) == expected


async def test_the_redis_client_span_names_the_failed_command_not_its_arguments(
        own_redis, make_store, telemetry, traced_redis):
    store = await make_store(own_redis.url)
    await _config(own_redis.url, maxmemory_policy="noeviction", maxmemory=1)
    await store.append(str(uuid.uuid4()), [Turn("user", PROMPT)])
    failed = [s for s in telemetry.finished() if s.status.description]
    assert failed, "the failed MULTI has an error span"
    for span in failed:
        assert "(RPUSH)" in span.status.description
        recorded = [span.status.description, *(str(dict(e.attributes or {})) for e in span.events)]
        assert not any(SECRET_WORD in text for text in recorded), recorded
