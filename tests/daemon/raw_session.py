"""A bare WebSocket session past hello, for tests that send frames no client library would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.harness.exai_process import TOKEN

REPLY_TIMEOUT_SECS = 5.0


@asynccontextmanager
async def raw_session(url: str, **connect_options: Any) -> AsyncIterator[ClientConnection]:
    """A connection whose hello was accepted; closed when the block ends."""
    async with connect(url, **connect_options) as ws:
        await ws.send(json.dumps({"op": "hello", "token": TOKEN}))
        assert json.loads(await ws.recv())["ok"] is True
        yield ws


async def exchange(ws: ClientConnection, payload: str | bytes) -> dict[str, Any]:
    """Send one frame as is; the next reply, decoded."""
    await ws.send(payload)
    return json.loads(await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_SECS))


async def still_usable(ws: ClientConnection) -> None:
    """The session still answers a ping."""
    reply = await exchange(ws, json.dumps({"op": "ping", "request_id": "alive"}))
    assert reply == {"op": "pong", "request_id": "alive"}
