"""The benchmark's ceiling: a bare ``websockets`` server speaking just enough of the daemon's
protocol (hello, then ``progress`` + ``call_tool_res`` for every ``call_tool``) with no work at all:
no validation, no provider call, no Redis, no telemetry; its frames come from the daemon's own
builders (app/protocol.py). Only the upstream latency is simulated (``asyncio.sleep``), so at the
realistic point its latency is the floor a daemon can approach.

The benchmark sets that latency with a ``{"op": "_bench_config", "latency_ms": N}`` frame.
Run: ``python bench/limit_server.py --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from websockets.asyncio.server import ServerConnection, serve

from app import protocol  # the installed project (pip install -e .), like the daemon

ANSWER = "signal river lantern orbit quartz meadow cobalt harbor ember tundra velvet prism"
TOOL_TIMEOUT_SECS = 120.0  # announced in hello_ack like the daemon's default; never enforced
_state = {"latency_s": 0.0}


async def handle(ws: ServerConnection) -> None:
    hello = json.loads(await ws.recv())
    if hello.get("op") == "_bench_config":
        _state["latency_s"] = float(hello.get("latency_ms", 0)) / 1000
        await ws.send('{"op":"_bench_config","ok":true}')
        return
    await ws.send(protocol.encode(protocol.hello_ack("limit", "0", TOOL_TIMEOUT_SECS)))
    async for message in ws:
        frame = json.loads(message)
        request_id = frame.get("request_id")
        await ws.send(protocol.encode(protocol.progress(request_id,
                                                        "calling glm model glm-4.5-flash")))
        if _state["latency_s"] > 0:
            await asyncio.sleep(_state["latency_s"])
        await ws.send(protocol.encode(protocol.call_ok(request_id, ANSWER, {}, "0" * 32)))


async def main(host: str, port: int) -> None:
    async with serve(handle, host, port, max_size=None):
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        asyncio.run(main(args.host, args.port))
    except KeyboardInterrupt:
        pass
