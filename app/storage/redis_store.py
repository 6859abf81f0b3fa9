"""Threads in Redis: one list per thread, one JSON-encoded turn per element, oldest first.

Every call goes through ``redis.asyncio.Redis`` methods (commands and MULTI pipelines), which
``opentelemetry-instrumentation-redis`` wraps at class level, so each one gets a client span once
the daemon has instrumented Redis. The instrumentation records no metrics, so every call here
records ``db.client.operation.duration`` itself, under the operation name its span has: the
command, or ``MULTI`` for a transaction of different commands (``otel.setup.RedisInstrumentation``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError

from otel import names
from otel.errors import error_type_of
from otel.instruments import Histogram
from otel.redaction import scrub

from .redis_client import redis_password
from .turns import Turn

KEY_PREFIX = "exai:thread:"
# redis-py's note on a failed pipeline command: "Command # 1 (RPUSH key <turn JSON>) of pipeline
# caused error: ('<the reply>',)". Greedy up to the last "of pipeline": the quoted arguments may
# hold anything, that phrase included.
_PIPELINE_COMMAND = re.compile(r"Command # \d+ \(.*\) of pipeline caused error: ", re.DOTALL)
# The error code a Redis error reply starts with (OOM, WRONGTYPE, READONLY...), past the quote
# and parenthesis of the pipeline note.
_REPLY_CODE = re.compile(r"[('\"]*([A-Z][A-Z_]+)\b")

# db.operation.name of a MULTI ... EXEC of different commands, as the Redis conventions name it.
MULTI = "MULTI"

# What "Redis is unavailable" looks like: the store falls back to memory on these.
REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError)


def describe_error(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """What failed, never the data: fit for the console, exported logs and ``/health``.

    An error reply from the server is its class and error code ("OutOfMemoryError: OOM"), since
    redis-py quotes the failed command's arguments (a user's turn) into it, and a reply may quote
    them too ("unknown command ..., with args beginning with: ..."). Other errors (connection,
    timeout) keep their text, without any quoted command, scrubbed of ``secrets`` and controls.
    """
    name = type(exc).__name__
    if isinstance(exc, ResponseError):
        code = _reply_code(exc)
        return f"{name}: {code}" if code else name
    text = _PIPELINE_COMMAND.sub("", str(exc))
    return scrub(f"{name}: {text}", secrets) if text else name


def _reply_code(exc: ResponseError) -> str | None:
    """The reply's error code: the one redis-py took off the message, else its first word."""
    code = getattr(exc, "status_code", None)  # redis-py 8 keeps the code it mapped to a class
    if code:
        return str(code)
    match = _REPLY_CODE.match(_PIPELINE_COMMAND.sub("", str(exc)))
    return match.group(1) if match else None


def quiet_pipeline(client: Redis, transaction: bool = True) -> Pipeline:
    """``client.pipeline()`` whose errors name a failed command but not its arguments.

    redis-py writes the failed command, arguments and all (a user's turn), into the error while
    the Redis instrumentation's client span is still open, so the span's status and exception
    event would quote it; ``describe_error`` cannot reach those.
    """
    pipe = client.pipeline(transaction=transaction)
    pipe.annotate_exception = _annotate_with_command_name  # type: ignore[method-assign]
    return pipe


def _annotate_with_command_name(exception: Exception, number: int,
                                command: Iterable[object]) -> None:
    """redis-py's ``Pipeline.annotate_exception``, without the arguments."""
    name = next(iter(command), "?")
    exception.args = (f"Command # {number} ({name!s}) of pipeline caused error: "
                      f"{exception.args}", *exception.args[1:])


class RedisThreads:
    """Threads in Redis with the TTL and turn limit applied atomically on every append.

    ``client`` is the process's shared one (``app.storage.redis_client``), decoding replies to
    ``str``; its owner closes it, not this store."""

    def __init__(self, client: Redis, ttl_secs: float, max_turns: int, db_duration: Histogram,
                 prefix: str = KEY_PREFIX) -> None:
        self._client = client
        self._password = redis_password(client)
        self._ttl_ms = max(1, int(ttl_secs * 1000))
        self._max_turns = max_turns
        self._duration = db_duration
        self._prefix = prefix

    def key(self, continuation_id: str) -> str:
        return f"{self._prefix}{continuation_id}"

    async def load(self, continuation_id: str) -> list[Turn] | None:
        """The thread's turns, oldest first, or None when the key is missing or expired."""
        async with self._measure("LRANGE"):
            raw = await self._client.lrange(self.key(continuation_id), 0, -1)
        return _decode(raw) if raw else None

    async def append(self, continuation_id: str, turns: Sequence[Turn]) -> list[Turn]:
        """Append, trim to the newest turns and refresh the TTL in one MULTI; return the thread."""
        key = self.key(continuation_id)
        async with self._measure(MULTI):
            async with quiet_pipeline(self._client) as pipe:
                pipe.rpush(key, *_encode(turns))
                pipe.ltrim(key, -self._max_turns, -1)
                pipe.pexpire(key, self._ttl_ms)
                pipe.lrange(key, 0, -1)
                *_, raw = await pipe.execute()
        return _decode(raw)

    async def replace(self, continuation_id: str, turns: Sequence[Turn], ttl_secs: float) -> None:
        """Overwrite a thread with ``turns`` (idempotent, so a write-back may safely be retried)."""
        key = self.key(continuation_id)
        async with self._measure(MULTI):
            async with quiet_pipeline(self._client) as pipe:
                pipe.delete(key)
                pipe.rpush(key, *_encode(turns))
                pipe.ltrim(key, -self._max_turns, -1)
                pipe.pexpire(key, max(1, int(ttl_secs * 1000)))
                await pipe.execute()

    async def ping(self) -> None:
        async with self._measure("PING"):
            await self._client.ping()

    def describe(self, exc: BaseException) -> str:
        """A short, secret-free account of a failure, fit for logs and health answers."""
        return describe_error(exc, (self._password,) if self._password else ())

    @asynccontextmanager
    async def _measure(self, operation: str) -> AsyncIterator[None]:
        attributes = {names.DB_SYSTEM_NAME: "redis", names.DB_OPERATION_NAME: operation}
        start = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            attributes[names.ERROR_TYPE] = error_type_of(exc)
            raise
        finally:
            self._duration.record(time.perf_counter() - start, attributes)


def _encode(turns: Sequence[Turn]) -> list[str]:
    return [json.dumps(turn.to_dict(), ensure_ascii=False, separators=(",", ":")) for turn in turns]


def _decode(raw: Sequence[str | bytes]) -> list[Turn]:
    return [Turn.from_dict(json.loads(item)) for item in raw]
