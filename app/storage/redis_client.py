"""The process's one Redis client, shared by the thread store and the Supabase outbox.

Both live on ``REDIS_URL``; one client means one connection pool and one set of timeouts. They
are the thread store's, the stricter: a chat waits on every thread read and write, so a Redis
slower than a second is treated as down (the store falls back to memory) rather than waited for.
The outbox loses nothing by the stricter limit: a write that times out waits in memory and moves
to Redis once it answers again. Replies are decoded to ``str``, which both sides read.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

# Redis answers in milliseconds; anything slower is an outage, and a chat must not wait on it.
SOCKET_TIMEOUT_SECS = 1.0
CONNECT_TIMEOUT_SECS = 1.0
# One immediate retry on a connection error reconnects a pooled connection that a Redis restart
# left stale. A timeout is not retried: a hung Redis would only cost the chat another timeout.
RETRY = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def create_redis_client(url: str) -> Redis | None:
    """The shared client for ``url`` (``REDIS_URL``), or None without one (all in memory).

    No connection is made here; the composition root closes the client after both users."""
    if not url:
        return None
    return Redis.from_url(url, decode_responses=True, socket_timeout=SOCKET_TIMEOUT_SECS,
                          socket_connect_timeout=CONNECT_TIMEOUT_SECS, retry=RETRY)


def redis_password(client: Redis) -> str | None:
    """The password the client logs in with, so error descriptions can scrub it."""
    return client.connection_pool.connection_kwargs.get("password")
