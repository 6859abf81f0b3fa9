"""Drive real traffic through the daemon and summarise what happened."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from .client import DaemonClient

PROMPTS = ("Summarise the plot of a short story in two sentences.",
           "Suggest three names for a tabby cat.",
           "Explain what a trace id is to a new engineer.")


@dataclass
class LoadSummary:
    calls: int
    elapsed_s: float
    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def succeeded(self) -> int:
        return self.calls - sum(self.errors.values())

    @property
    def calls_per_sec(self) -> float:
        return self.calls / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_s:
            return 0.0
        if len(self.latencies_s) == 1:
            return self.latencies_s[0]
        return statistics.quantiles(self.latencies_s, n=100, method="inclusive")[int(q) - 1]

    def as_dict(self) -> dict[str, object]:
        return {"calls": self.calls, "succeeded": self.succeeded, "errors": dict(self.errors),
                "elapsed_s": round(self.elapsed_s, 3),
                "calls_per_sec": round(self.calls_per_sec, 2),
                "p50_ms": round(self.percentile(50) * 1000, 1),
                "p95_ms": round(self.percentile(95) * 1000, 1),
                "p99_ms": round(self.percentile(99) * 1000, 1)}


async def run_load(url: str, token: str, calls: int, concurrency: int, model: str | None = None,
                   stream: bool = False, on_done: Callable[[], None] | None = None,
                   connections: int = 1) -> LoadSummary:
    """``calls`` chat calls, ``concurrency`` at a time, spread over ``connections`` sessions."""
    clients = [await DaemonClient.connect(url, token) for _ in range(max(1, connections))]
    numbers = iter(range(calls))
    prompts = itertools.cycle(PROMPTS)
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def worker(client: DaemonClient) -> None:
        for _ in numbers:
            arguments = {"prompt": next(prompts), "stream": stream}
            if model:
                arguments["model"] = model
            started = time.perf_counter()
            try:
                reply = await client.call_tool("chat", arguments)
                if reply.get("ok"):
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[reply.get("error", {}).get("code", "UNKNOWN")] += 1
            except Exception as exc:  # noqa: BLE001 - counted, the run goes on
                errors[type(exc).__name__] += 1
            if on_done is not None:
                on_done()

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(clients[i % len(clients)]) for i in range(concurrency)))
    finally:
        for client in clients:
            await client.close()
    return LoadSummary(calls=calls, elapsed_s=time.perf_counter() - started,
                       latencies_s=latencies, errors=errors)
