"""The fleet of issue 15, live on loopback: three daemons on one Redis, two agents, two
authenticated gateways, Prometheus and per-gateway Tempo stand-ins, under a load of chat calls
(some through ``exai mcp``, so traces cross processes) with failures on every daemon, and one
gateway SIGKILLed and restarted mid-run.

What each figure means is printed (``-s``). Covered elsewhere and cited, not repeated here: the
outbox's exactly-once delivery with a real daemon SIGKILLed mid-delivery
(tests/persistence/test_outbox_consumers.py: it needs PostgreSQL and the PostgREST stand-in, and
the outbox shares nothing with the collector tier); unauthenticated OTLP refused and counted
(tests/fleet/test_collector_tier.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters

from app.client import DaemonClient
from app.mcp_bridge.results import TRACE_ID_META_KEY
from app.mcp_bridge.telemetry import SERVICE_NAME as BRIDGE_SERVICE
from tests.harness.exai_process import EXAI, TOKEN
from tests.harness.fleet import DAEMON_SERVICE, Fleet, FleetDaemon, Gateway, fleet
from tests.harness.procs import wait_until
from tests.mcp.conftest import mcp_session

from .accounting import CHAT_SPAN, TraceView, counted_by, missing_parts, traces, unique_spans

MODEL = "glm-4.5-flash"  # the default model: every load call goes to the GLM dialect
SERVER_CALLS = f'span_name="{CHAT_SPAN}", span_kind="SPAN_KIND_SERVER"'
ERROR_RATE = 0.08  # random upstream 500s and 429s, wherever the call landed
LOAD_SECS, KILL_AFTER_SECS, DOWN_SECS = 24.0, 9.0, 4.0
WORKERS_PER_DAEMON, PAUSE_SECS = 3, 0.15
# A call whose spans reached the killed gateway within this many seconds before the kill may be
# lost with its memory: span metrics flush every 1 s, tail sampling holds a trace 2 s, and the
# daemon (200 ms) and agent (200 ms) batch on the way; the rest is margin for a loaded machine.
LOSS_WINDOW_SECS = 5.0


@dataclass(frozen=True)
class Call:
    daemon: str
    trace_id: str
    ok: bool
    via: str  # "ws" or "mcp"
    ended: float  # wall clock, when the reply arrived


@dataclass
class Kill:
    gateway: Gateway
    at: float = 0.0
    restarted: float = 0.0


@dataclass
class Run:
    """What the load did, for the assertions and the printed figures."""

    calls: list[Call] = field(default_factory=list)
    kill: Kill | None = None
    bridge_daemons: list[str] = field(default_factory=list)

    def made(self, via: str | None = None) -> Counter[str]:
        return Counter(c.daemon for c in self.calls if via in (None, c.via))

    def in_loss_window(self, call: Call) -> bool:
        kill = self.kill
        return kill is not None and kill.at - LOSS_WINDOW_SECS <= call.ended <= kill.at + 0.5


@pytest.fixture(scope="module")
def live_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    # Every trace is kept (100 %), so spans in Tempo can be checked against spans sent; tail
    # sampling's policies themselves are proven by tests/pipeline.
    gateway_env = {"EXAI_TRACE_SAMPLE_PERCENT": "100"}
    daemon_env = {"EXAI_SHARED_PROVIDER_LIMITS": "true", "EXAI_KIMI_MAX_INFLIGHT": "1",
                  "EXAI_GLM_MAX_INFLIGHT": "1000", "EXAI_SLOT_WAIT_SECS": "0.3"}
    with fleet(tmp_path_factory.mktemp("fleet"), gateway_env=gateway_env,
               daemon_env_overrides=daemon_env) as running:
        yield running


def bridge_params(daemon: FleetDaemon, fleet_: Fleet, workdir: Path) -> StdioServerParameters:
    """``exai mcp`` for ``daemon``, exporting to the *other* agent: the bridge's spans and the
    daemon's meet only at the gateway the trace id picks."""
    other = next(a for a in fleet_.agents if a is not daemon.agent)
    env = {"EXAI_WS_URL": daemon.url, "EXAI_WS_TOKEN": TOKEN,
           "OTEL_EXPORTER_OTLP_ENDPOINT": other.otlp_grpc, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
           "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_METRIC_EXPORT_INTERVAL": "1000"}
    if "VIRTUAL_ENV" in os.environ:
        env["VIRTUAL_ENV"] = os.environ["VIRTUAL_ENV"]
    return StdioServerParameters(command=EXAI, args=["mcp"], env=env, cwd=workdir)


async def ws_call(client: DaemonClient, daemon: FleetDaemon, prompt: str) -> Call:
    reply = await client.call_tool("chat", {"prompt": prompt})
    return Call(daemon.instance_id, reply["trace_id"], reply["ok"], "ws", time.time())


async def mcp_call(session: ClientSession, daemon: FleetDaemon, prompt: str) -> Call:
    result = await session.call_tool("chat", {"prompt": prompt})
    meta = result.meta or {}
    return Call(daemon.instance_id, meta[TRACE_ID_META_KEY], not result.is_error, "mcp",
                time.time())


async def keep_calling(run: Run, stop: asyncio.Event, call: Any, name: str) -> None:
    """One worker of the load: a call, a short pause, until ``stop``."""
    i = 0
    while not stop.is_set():
        run.calls.append(await call(f"{name} load {i}"))
        i += 1
        await asyncio.sleep(PAUSE_SECS)


async def kill_and_restart(kill: Kill) -> None:
    """SIGKILL one gateway mid-run; start it again (same ports, storage, instance id) later."""
    await asyncio.sleep(KILL_AFTER_SECS)
    proc = kill.gateway.collector.proc
    kill.at = time.time()
    await asyncio.to_thread(proc.kill)
    await asyncio.sleep(DOWN_SECS)
    await asyncio.to_thread(proc.start)
    kill.restarted = time.time()


async def one_failure_each(run: Run, fleet_: Fleet, clients: list[DaemonClient],
                           sessions: list[tuple[ClientSession, FleetDaemon]]) -> None:
    """A certain failure on every daemon and through every bridge (queued faults, one call at a
    time), before the random ones of the load."""
    for client, daemon in zip(clients, fleet_.daemons, strict=True):
        await fleet_.fake.afaults(500, 1)
        run.calls.append(await ws_call(client, daemon, f"{daemon.instance_id} fails"))
    for session, daemon in sessions:
        await fleet_.fake.afaults(503, 1)
        run.calls.append(await mcp_call(session, daemon, f"bridge to {daemon.instance_id} fails"))
    assert not any(c.ok for c in run.calls), [c for c in run.calls if c.ok]


async def drive(fleet_: Fleet, workdir: Path, kill: Gateway | None) -> Run:
    """The whole load: certain failures, then random ones from every worker, a gateway killed
    and restarted in the middle."""
    run = Run(kill=Kill(kill) if kill else None)
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(await DaemonClient.connect(d.url, TOKEN))
                   for d in fleet_.daemons]
        bridged = fleet_.daemons[:2]
        sessions = [(await stack.enter_async_context(mcp_session(
            bridge_params(d, fleet_, workdir), workdir / f"bridge-{d.instance_id}.log")), d)
            for d in bridged]
        run.bridge_daemons = [d.instance_id for d in bridged]
        await fleet_.fake.areset(quiet=True)
        await one_failure_each(run, fleet_, clients, sessions)
        await fleet_.fake.aconfig(error_rate=ERROR_RATE, latency_ms=20)
        stop = asyncio.Event()
        workers = [keep_calling(run, stop, lambda p, c=c, d=d: ws_call(c, d, p), d.instance_id)
                   for c, d in zip(clients, fleet_.daemons, strict=True)
                   for _ in range(WORKERS_PER_DAEMON)]
        workers += [keep_calling(run, stop, lambda p, s=s, d=d: mcp_call(s, d, p), "bridge")
                    for s, d in sessions]
        tasks = [asyncio.create_task(w) for w in workers]
        if run.kill:
            tasks.append(asyncio.create_task(kill_and_restart(run.kill)))
        await asyncio.sleep(LOAD_SECS)
        stop.set()
        await asyncio.gather(*tasks)
        await fleet_.fake.aconfig(error_rate=0, latency_ms=0)
    return run  # leaving the stack closed the bridges, which flushes their spans


def breaks(run: Run) -> dict[str, list[float]]:
    return {run.kill.gateway.instance_id: [run.kill.at]} if run.kill else {}


def wait_settled(fleet_: Fleet, run: Run) -> dict[str, float]:
    """Span-metric calls per daemon once the agents' queues are empty and the counts stop moving
    (or equal the calls made)."""
    made, last, stable_since = run.made(), {}, time.monotonic()

    def settled() -> bool:
        nonlocal last, stable_since
        queued = sum(a.self_metric("otelcol_exporter_queue_size") for a in fleet_.agents)
        now = counted_by(fleet_.prometheus, f'job="{DAEMON_SERVICE}", {SERVER_CALLS}',
                         "instance", breaks(run))
        if now != last:
            last, stable_since = now, time.monotonic()
        done = queued == 0 and time.monotonic() - stable_since > 6
        return now == dict(made) or done

    wait_until(settled, timeout=90, interval=1.0, what="span metrics to settle")
    return last


def wait_tempo_settled(fleet_: Fleet, sent: float) -> None:
    """Until the stand-ins hold as many spans as were sent, or their count stops moving."""
    last, stable_since = -1, time.monotonic()

    def settled() -> bool:
        nonlocal last, stable_since
        now = unique_spans(fleet_.spans_by_gateway())[0]
        if now != last:
            last, stable_since = now, time.monotonic()
        return now >= sent or time.monotonic() - stable_since > 4

    wait_until(settled, timeout=60, interval=1.0, what="the Tempo stand-ins to settle")


def describe(run: Run, counted: dict[str, float], bridge_counted: float, fleet_: Fleet,
             sent: float, views: dict[str, TraceView]) -> str:
    by_gateway = fleet_.spans_by_gateway()
    distinct, duplicates = unique_spans(by_gateway)
    made = run.made()
    lines = [
        f"calls made {sum(made.values())} ({len([c for c in run.calls if not c.ok])} failed, "
        f"{sum(run.made('mcp').values())} through exai mcp); per daemon {dict(made)}",
        f"span-metric calls {sum(counted.values()):.0f}; per daemon "
        f"{ {k: int(v) for k, v in counted.items()} }; bridge server spans counted "
        f"{bridge_counted:.0f} of {sum(run.made('mcp').values())}",
        f"spans sent into the agents {sent:.0f}; in Tempo {distinct} distinct "
        f"({duplicates} duplicates); per gateway { {g: len(s) for g, s in by_gateway.items()} }",
        f"traces in Tempo {len(views)}; calls whose trace is missing or incomplete: "
        f"{len(incomplete(run, views))}",
    ]
    if run.kill:
        into = run.kill.at - run.calls[0].ended
        down = run.kill.restarted - run.kill.at
        lines.append(f"{run.kill.gateway.instance_id} SIGKILLed {into:.1f} s into the run, "
                     f"back after {down:.1f} s; "
                     f"lost: {sum(made.values()) - sum(counted.values()):.0f} span-metric calls, "
                     f"{sent - distinct:.0f} spans")
    return "\n".join(lines)


def incomplete(run: Run, views: dict[str, TraceView]) -> dict[Call, list[str]]:
    """Calls whose trace in Tempo lacks something (see ``missing_parts``)."""
    found = {}
    for call in run.calls:
        bridge = BRIDGE_SERVICE if call.via == "mcp" else None
        lacks = missing_parts(views.get(call.trace_id), DAEMON_SERVICE, bridge, MODEL)
        if lacks:
            found[call] = lacks
    return found


async def test_span_metrics_and_traces_add_up_across_the_fleet_with_a_gateway_killed(
        live_fleet: Fleet, tmp_path: Path) -> None:
    killed = live_fleet.gateways[0]
    run = await drive(live_fleet, tmp_path, kill=killed)
    counted = await asyncio.to_thread(wait_settled, live_fleet, run)
    bridge_selector = f'job="{BRIDGE_SERVICE}", {SERVER_CALLS}'
    bridge_counted = sum(counted_by(live_fleet.prometheus, bridge_selector, "job",
                                    breaks(run)).values())
    sent = live_fleet.agent_spans_accepted()
    await asyncio.to_thread(wait_tempo_settled, live_fleet, sent)
    views = traces(live_fleet.spans_by_gateway())
    print("\nFLEET " + describe(run, counted, bridge_counted, live_fleet, sent, views)
          .replace("\n", "\nFLEET "))
    assert_load_reached_every_part(run, live_fleet)
    assert_counts(run, counted, bridge_counted)
    assert_traces(run, views, killed, live_fleet)


def assert_load_reached_every_part(run: Run, fleet_: Fleet) -> None:
    failed = Counter(c.daemon for c in run.calls if not c.ok)
    assert set(failed) == {d.instance_id for d in fleet_.daemons}, failed
    assert {c.daemon for c in run.calls if c.via == "mcp" and not c.ok} == set(run.bridge_daemons)
    spans = fleet_.spans_by_gateway()
    assert all(spans.values()), {g: len(s) for g, s in spans.items()}  # both got a share
    per_gateway = counted_by(fleet_.prometheus, f'job="{DAEMON_SERVICE}", {SERVER_CALLS}',
                             "collector_instance_id", breaks(run))
    assert set(per_gateway) == {g.instance_id for g in fleet_.gateways}, per_gateway


def assert_counts(run: Run, counted: dict[str, float], bridge_counted: float) -> None:
    """Nothing counted twice; nothing lost except what the killed gateway held in memory."""
    made = run.made()
    for daemon, n in made.items():
        assert counted.get(daemon, 0) <= n, (daemon, counted, made)  # never counted twice
    lost = sum(made.values()) - sum(counted.values())
    window = [c for c in run.calls if run.in_loss_window(c)]
    assert lost <= len(window), (lost, len(window))
    if run.kill is None:
        assert lost == 0
    assert bridge_counted <= sum(run.made("mcp").values())


def assert_traces(run: Run, views: dict[str, TraceView], killed: Gateway, fleet_: Fleet) -> None:
    """Each trace from one gateway only; every trace complete, bridge spans included, except a
    few the killed gateway held; the restarted gateway takes its share again."""
    straddling = [v.trace_id for v in views.values() if len(v.gateways) > 1]
    assert not straddling, straddling
    for call, lacks in incomplete(run, views).items():
        view = views.get(call.trace_id)
        assert run.in_loss_window(call), (call, lacks)
        assert view is None or view.gateways == {killed.instance_id}, (call, lacks)
    if run.kill:
        ages = sorted(run.kill.at - c.ended for c in incomplete(run, views))
        if ages:
            print(f"FLEET traces lost with the killed gateway: replies {ages[-1]:.1f} to "
                  f"{ages[0]:.1f} s before the kill (window allowed: {LOSS_WINDOW_SECS} s)")
    errors = [c for c in run.calls if not c.ok]
    complete_errors = [c for c in errors if c not in incomplete(run, views)]
    print(f"FLEET error traces complete in Tempo: {len(complete_errors)} of {len(errors)}")
    if run.kill:
        after = [s for s in killed.tempo.spans()
                 if int(s["startTimeUnixNano"]) / 1e9 > run.kill.restarted]
        assert after, "the restarted gateway never received spans again"


async def test_a_conversation_continues_on_another_daemon(live_fleet: Fleet) -> None:
    """Threads live in the shared Redis: each turn on a different daemon sees all before it."""
    tokens, continuation = [], None
    for daemon in live_fleet.daemons:
        async with await DaemonClient.connect(daemon.url, TOKEN) as client:
            args = {"prompt": f"turn on {daemon.instance_id}"}
            if continuation:
                args["continuation_id"] = continuation
            reply = await client.call_tool("chat", args)
        assert reply["ok"], reply
        continuation = reply["metadata"]["continuation_id"]
        tokens.append(reply["metadata"]["usage"]["input_tokens"])
    print(f"\nFLEET one thread over {len(tokens)} daemons, input tokens per turn {tokens}")
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)


async def kimi_on_every_daemon(fleet_: Fleet) -> list[tuple[bool, str | None]]:
    async def one(daemon: FleetDaemon) -> dict[str, Any]:
        async with await DaemonClient.connect(daemon.url, TOKEN) as client:
            return await client.call_tool("chat", {"prompt": "shared", "model": "kimi-latest"})
    replies = await asyncio.gather(*(one(d) for d in fleet_.daemons))
    return sorted((r["ok"], (r.get("error") or {}).get("code")) for r in replies)


async def test_the_shared_provider_limit_holds_across_daemons_and_fails_open_without_redis(
        live_fleet: Fleet) -> None:
    """EXAI_KIMI_MAX_INFLIGHT=1 shared: of three concurrent Kimi calls, one on each daemon, one
    runs; with Redis gone each daemon falls back to its own limit of 1 and none fails for it.
    (The limiter's own cases are in tests/storage/test_shared_limits.py and
    tests/daemon/test_shared_limits.py.) Stops Redis: the last test of the module."""
    await live_fleet.fake.aconfig(latency_ms=800)
    try:
        shared = await kimi_on_every_daemon(live_fleet)
        live_fleet.redis.stop()
        local = await kimi_on_every_daemon(live_fleet)
    finally:
        await live_fleet.fake.aconfig(latency_ms=0)
    print(f"\nFLEET Kimi limit 1 shared by 3 daemons: {shared}; Redis stopped: {local}")
    assert shared == [(False, "OVER_CAPACITY"), (False, "OVER_CAPACITY"), (True, None)]
    assert local == [(True, None)] * 3
