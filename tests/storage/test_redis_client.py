"""The one Redis client the thread store and the outbox share."""

from __future__ import annotations

from app.storage.redis_client import (
    CONNECT_TIMEOUT_SECS,
    SOCKET_TIMEOUT_SECS,
    create_redis_client,
    redis_password,
)


def test_no_url_means_no_client() -> None:
    assert create_redis_client("") is None


async def test_one_set_of_timeouts_replies_decoded_and_the_password_known() -> None:
    client = create_redis_client("redis://:s3cret-pw@127.0.0.1:1/0")
    assert client is not None
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == SOCKET_TIMEOUT_SECS
        assert kwargs["socket_connect_timeout"] == CONNECT_TIMEOUT_SECS
        assert kwargs["decode_responses"] is True
        assert redis_password(client) == "s3cret-pw"
    finally:
        await client.aclose()

