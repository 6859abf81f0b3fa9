"""EXAI_SHARED_PROVIDER_LIMITS end to end: two daemons on one Redis share a provider's limit.

The limiter itself (load, dead holders, Redis outages) is tested in tests/storage.
"""

from __future__ import annotations

import asyncio
import time

from otel import names


async def test_two_daemons_share_one_provider_limit(start_daemon, fake_upstream, capture):
    settings = {"EXAI_SHARED_PROVIDER_LIMITS": True, "EXAI_KIMI_MAX_INFLIGHT": 1,
                "EXAI_SLOT_WAIT_SECS": 0.2}
    first, second = await start_daemon(**settings), await start_daemon(**settings)
    await fake_upstream.aconfig(latency_ms=600)
    clients = [await first.client(), await second.client()]
    started = time.monotonic()
    try:
        replies = await asyncio.gather(*(
            c.call_tool("chat", {"prompt": "shared", "model": "kimi-latest"}) for c in clients))
    finally:
        for c in clients:
            await c.close()
    elapsed = time.monotonic() - started
    outcomes = sorted((r["ok"], r.get("error", {}).get("code"),
                       r.get("error", {}).get("details", {}).get("scope")) for r in replies)
    print(f"\nMEASURED two daemons, EXAI_KIMI_MAX_INFLIGHT=1 shared: {outcomes} "
          f"in {elapsed:.2f} s")
    assert outcomes == [(False, "OVER_CAPACITY", "provider"), (True, None, None)]
    modes = [s.attributes.get(names.EXAI_PROVIDER_LIMIT_MODE) for s in capture.spans()
             if s.name == "tools/call chat"]
    assert modes.count("shared") == 2, modes
