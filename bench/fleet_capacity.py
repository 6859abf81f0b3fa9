#!/usr/bin/env python3
"""What one gateway of the fleet (issue 15) carries on this machine, for docs/scaling.md.

    python -m bench.fleet_capacity            # ~2 min on 2 cores, from the repo root
    python -m bench.fleet_capacity --quick    # a few seconds per phase: proves the program only

One gateway (collector-config common + config + gateway: bearer token, span metrics from 100 % of
spans, tail sampling with the production decision wait of 10 s) runs on loopback with the
production intervals; its Tempo/Loki exporters go to a discarding collector (bench/sink-
collector.yaml) and its Prometheus remote write is answered 204 here, so only the gateway's own
work is measured. The phases:

1. spans per call: a real ``exai serve`` (fake upstream, real Redis) sends straight to the gateway
   with the SDK's OTEL_EXPORTER_OTLP_HEADERS; the gateway's accepted spans over the calls made;
2. memory per held trace: traces sent in steps faster than the decision wait lets them go; the
   slope of the gateway's RSS (and Go heap) against the traces tail sampling holds;
3. CPU per 1,000 spans at a fixed moderate rate (not saturated);
4. spans per second sustained: senders in a closed loop for a window; accepted spans per second,
   refusals (memory limiter) counted.

Load: OTLP/gRPC export requests built here (protobuf, fresh trace and span ids every request),
shaped like the daemon's traces (server span, GenAI client, upstream HTTP, Redis), 2 % errors,
from several simulated daemons, sent as raw bytes by threads (the gRPC calls release the GIL).
The load generator shares the machine's cores with the gateway: the sustained figure is a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, Status

from app.client import DaemonClient
from bench.overhead import SINK_CONFIG, Infra, cpu_seconds, machine, start_remote_write_sink
from tests.harness.collector import Collector, collector_binary, main_collector
from tests.harness.exai_process import EXAI, TOKEN, daemon_env, spawn_fake_llm
from tests.harness.procs import LOOPBACK, ManagedProcess, free_port, port_open
from tests.harness.redis_server import redis_process

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
GATEWAY_TOKEN = "bench-gateway-token-not-a-secret"
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS_PER_TRACE = 4
# Production intervals (config.yaml's defaults), not the test suite's fast ones.
PRODUCTION_ENV = {"EXAI_OTELCOL_TAIL_DECISION_WAIT": "10s",
                  "EXAI_SPANMETRICS_FLUSH_INTERVAL": "15s", "EXAI_OTELCOL_BATCH_TIMEOUT": "2s",
                  "EXAI_OTELCOL_RETRY_MAX_INTERVAL": "30s", "EXAI_OTELCOL_LOG_LEVEL": "warn"}
DECISION_WAIT_S = 10.0
MEMORY_LIMIT_MIB, SPIKE_MIB = 512, 128  # common.yaml's memory_limiter defaults
HELD_TRACES = "otelcol_processor_tail_sampling_sampling_traces_on_memory"
CALL_RATES = (0.1, 1.0, 10.0)  # chat calls per second per daemon the figures are given for


@dataclass
class Profile:
    calls: int = 120
    memory_steps: int = 4
    traces_per_step: int = 4000
    moderate_spans_per_s: int = 2000
    moderate_s: float = 15.0
    step_s: float = 14.0  # longer than the decision wait: each step reaches its steady state
    rates: tuple[int, ...] = (4000, 8000, 12000, 16000, 20000, 24000, 28000)
    senders: int = 4
    settle_s: float = DECISION_WAIT_S + 3  # after a phase: every held trace decided and gone


QUICK = Profile(calls=10, memory_steps=2, traces_per_step=200, moderate_spans_per_s=500,
                moderate_s=2.0, step_s=2.0, rates=(500, 1000), senders=2,
                settle_s=0.5)


# --- synthetic daemon traces ------------------------------------------------------------------

def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


SPAN_SHAPES: list[tuple[str, int, list[KeyValue]]] = [
    ("tools/call chat", Span.SPAN_KIND_SERVER,
     [_kv("mcp.method.name", "tools/call"), _kv("gen_ai.tool.name", "chat"),
      _kv("gen_ai.operation.name", "execute_tool"), _kv("exai.session.id", "0" * 32),
      _kv("exai.request.id", "r" * 16), _kv("network.transport", "tcp")]),
    ("chat glm-4.5-flash", Span.SPAN_KIND_CLIENT,
     [_kv("gen_ai.operation.name", "chat"), _kv("gen_ai.provider.name", "z_ai"),
      _kv("gen_ai.request.model", "glm-4.5-flash"), _kv("gen_ai.response.model", "glm-4.5-flash"),
      _kv("gen_ai.usage.input_tokens", 812), _kv("gen_ai.usage.output_tokens", 240),
      _kv("gen_ai.response.finish_reasons", "stop"), _kv("server.address", "open.bigmodel.cn")]),
    ("POST", Span.SPAN_KIND_CLIENT,
     [_kv("http.request.method", "POST"), _kv("url.full", "https://open.bigmodel.cn/api/paas/v4"),
      _kv("http.response.status_code", 200), _kv("server.address", "open.bigmodel.cn")]),
    ("LRANGE", Span.SPAN_KIND_CLIENT,
     [_kv("db.system.name", "redis"), _kv("db.operation.name", "LRANGE"),
      _kv("server.address", "127.0.0.1"), _kv("server.port", 6379)]),
]


class TraceBatches:
    """Export requests of ``traces`` traces from one simulated daemon; ``next()`` refreshes ids and
    timestamps in place (cheap) and serializes."""

    def __init__(self, daemon: int, traces: int) -> None:
        self.request = ExportTraceServiceRequest()
        resource_spans: ResourceSpans = self.request.resource_spans.add()
        resource_spans.resource.attributes.extend(
            [_kv("service.name", "exai-daemon"), _kv("service.instance.id", f"bench-{daemon}"),
             _kv("service.version", "bench")])
        scope = resource_spans.scope_spans.add()
        scope.scope.name = "exai"
        self.spans = []
        for _ in range(traces):
            for name, kind, attributes in SPAN_SHAPES:
                span = scope.spans.add(name=name, kind=kind)
                span.attributes.extend(attributes)
                self.spans.append(span)
        self.sent = 0

    def next(self) -> bytes:
        now = time.time_ns()
        traces = len(self.spans) // SPANS_PER_TRACE
        trace_ids, span_ids = os.urandom(16 * traces), os.urandom(8 * len(self.spans))
        for k, span in enumerate(self.spans):
            t, first = divmod(k, SPANS_PER_TRACE)
            span.trace_id = trace_ids[16 * t:16 * t + 16]
            span.span_id = span_ids[8 * k:8 * k + 8]
            root = self.spans[k - first]
            span.parent_span_id = root.span_id if first else b""
            span.start_time_unix_nano, span.end_time_unix_nano = now - 30_000_000, now
            if not first:  # 2 % of traces carry an error on their server span
                failed = (self.sent + t) % 50 == 0
                span.status.code = Status.STATUS_CODE_ERROR if failed else \
                    Status.STATUS_CODE_UNSET
        self.sent += traces
        return self.request.SerializeToString()


@dataclass
class SendCounts:
    spans: int = 0
    refused_spans: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, spans: int, error: str | None) -> None:
        with self.lock:
            if error is None:
                self.spans += spans
            else:
                self.refused_spans += spans
                self.errors[error] = self.errors.get(error, 0) + 1


class Sender:
    """One gRPC channel to the gateway sending raw export requests with the bearer token."""

    def __init__(self, address: str, daemon: int, traces_per_request: int) -> None:
        self.channel = grpc.insecure_channel(address)
        self.export = self.channel.unary_unary(EXPORT_METHOD)
        self.batches = TraceBatches(daemon, traces_per_request)
        self.spans_per_request = traces_per_request * SPANS_PER_TRACE

    def send(self, counts: SendCounts) -> None:
        payload = self.batches.next()
        try:
            self.export(payload, timeout=10,
                        metadata=(("authorization", f"Bearer {GATEWAY_TOKEN}"),))
            counts.add(self.spans_per_request, None)
        except grpc.RpcError as failure:
            counts.add(self.spans_per_request, failure.code().name)

    def close(self) -> None:
        self.channel.close()


def send_for(senders: list[Sender], seconds: float, spans_per_s: float | None = None) \
        -> SendCounts:
    """Every sender in its own thread for ``seconds``: closed loop, or paced to ``spans_per_s``
    in total."""
    counts = SendCounts()
    deadline = time.monotonic() + seconds

    def loop(sender: Sender) -> None:
        pause = (sender.spans_per_request * len(senders) / spans_per_s) if spans_per_s else 0.0
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            sender.send(counts)
            next_at += pause
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    with ThreadPoolExecutor(max_workers=len(senders)) as pool:
        list(pool.map(loop, senders))
    return counts


def send_traces(senders: list[Sender], traces: int) -> None:
    """About ``traces`` traces, spread over the senders, as fast as they go."""
    per = max(1, traces // (len(senders) * (senders[0].spans_per_request // SPANS_PER_TRACE)))
    counts = SendCounts()
    with ThreadPoolExecutor(max_workers=len(senders)) as pool:
        list(pool.map(lambda s: [s.send(counts) for _ in range(per)], senders))


# --- the gateway and what it reports ----------------------------------------------------------

@dataclass
class Rig:
    workdir: Path
    infra: Infra
    gateway: Collector
    redis_url: str = ""
    fake_port: int = 0

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.gateway.grpc_port}"

    @property
    def process(self) -> psutil.Process:
        assert self.gateway.proc.process is not None
        return psutil.Process(self.gateway.proc.process.pid)

    def metric(self, name: str) -> float:
        return self.gateway.self_metric(name)

    def snapshot(self) -> dict[str, float]:
        proc = self.process
        return {"cpu_s": cpu_seconds(proc), "rss_mb": proc.memory_info().rss / 2**20,
                "heap_mb": self.metric("otelcol_process_runtime_heap_alloc_bytes") / 2**20,
                "held_traces": self.metric(HELD_TRACES),
                "accepted": self.metric("otelcol_receiver_accepted_spans"),
                "refused": self.metric("otelcol_receiver_refused_spans"),
                "wall": time.monotonic()}


async def start_rig(workdir: Path, binary: str) -> Rig:
    infra = Infra(workdir)
    remote_write_port = await start_remote_write_sink(infra)
    sink_grpc, sink_http = free_port(), free_port()
    infra.start_proc(ManagedProcess(
        name="sink-collector", argv=[binary, f"--config={SINK_CONFIG}"],
        log_path=workdir / "sink-collector.log",
        env={"SINK_GRPC_ENDPOINT": f"{LOOPBACK}:{sink_grpc}",
             "SINK_HTTP_ENDPOINT": f"{LOOPBACK}:{sink_http}"},
        ready=lambda: port_open(sink_grpc) and port_open(sink_http), ready_timeout=60))
    gateway = main_collector(
        workdir / "gateway", tempo_grpc=f"{LOOPBACK}:{sink_grpc}",
        loki_http=f"http://{LOOPBACK}:{sink_http}/otlp",
        remote_write_url=f"http://{LOOPBACK}:{remote_write_port}/api/v1/write", role="gateway",
        extra_env={**PRODUCTION_ENV, "EXAI_OTELCOL_GATEWAY_TOKEN": GATEWAY_TOKEN,
                   "EXAI_OTELCOL_INSTANCE_ID": "bench-gateway"})
    infra.start_proc(gateway.proc)
    return Rig(workdir, infra, gateway)


# --- phases -------------------------------------------------------------------------------------

async def spans_per_call(rig: Rig, calls: int) -> dict[str, Any]:
    """A real daemon, sending straight to the gateway with the token, makes ``calls`` chat calls;
    stopping it flushes its spans."""
    redis = rig.infra.start_proc(redis_process(rig.workdir / "redis"))
    fake, fake_port = spawn_fake_llm(rig.workdir)
    rig.infra.procs.append(fake)
    ws_port, health_port = free_port(), free_port()
    env = daemon_env(fake_port, ws_port, health_port, REDIS_URL=redis.url,  # type: ignore[attr-defined]
                     OTEL_EXPORTER_OTLP_ENDPOINT=rig.gateway.otlp_grpc,
                     OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
                     OTEL_EXPORTER_OTLP_HEADERS=f"Authorization=Bearer%20{GATEWAY_TOKEN}",
                     OTEL_BSP_SCHEDULE_DELAY="200", EXAI_INSTANCE_ID="bench-daemon",
                     EXAI_RATE_LIMIT_PER_SEC="10000", EXAI_RATE_LIMIT_BURST="10000")
    daemon = ManagedProcess(name="exai-serve", argv=[EXAI, "serve"], env=env, cwd=rig.workdir,
                            log_path=rig.workdir / "serve.log",
                            ready=lambda: port_open(health_port) and port_open(ws_port))
    await asyncio.to_thread(daemon.start)
    before = rig.metric("otelcol_receiver_accepted_spans")
    async with await DaemonClient.connect(f"ws://{LOOPBACK}:{ws_port}", TOKEN) as client:
        replies = [await client.call_tool("chat", {"prompt": f"capacity {i}"})
                   for i in range(calls)]
    await asyncio.to_thread(daemon.stop)
    await asyncio.sleep(1.0)
    spans = rig.metric("otelcol_receiver_accepted_spans") - before
    return {"calls": calls, "failed": sum(not r["ok"] for r in replies), "spans": spans,
            "spans_per_call": round(spans / calls, 2)}


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    num = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    den = sum((x - mx) ** 2 for x in xs)
    return num / den if den else 0.0


def memory_per_trace(rig: Rig, profile: Profile) -> dict[str, Any]:
    """Fill tail sampling's memory in steps, all within one decision wait; RSS and heap against
    the traces it reports holding (its gauge is refreshed on each decision tick, every second)."""
    senders = [Sender(rig.address, d, 100) for d in range(profile.senders)]
    points = [rig.snapshot()]
    for _ in range(profile.memory_steps):
        send_traces(senders, profile.traces_per_step)
        time.sleep(1.2)
        points.append(rig.snapshot())
    for sender in senders:
        sender.close()
    held = [p["held_traces"] for p in points]
    filled_in = points[-1]["wall"] - points[0]["wall"]
    time.sleep(profile.settle_s)
    return {"held_traces": held, "rss_mb": [round(p["rss_mb"], 1) for p in points],
            "heap_mb": [round(p["heap_mb"], 1) for p in points],
            "filled_in_s": round(filled_in, 1),
            "rss_kib_per_trace": round(slope(held, [p["rss_mb"] for p in points]) * 1024, 2),
            "heap_kib_per_trace": round(slope(held, [p["heap_mb"] for p in points]) * 1024, 2),
            "baseline_rss_mb": round(points[0]["rss_mb"], 1)}


def load_window(rig: Rig, profile: Profile, seconds: float, spans_per_s: float | None,
                drain_s: float = 0.0) -> dict[str, Any]:
    """Send for ``seconds`` (paced or closed loop); the gateway's accepted spans, and its CPU
    until ``drain_s`` after the sending stopped (tail sampling decides, and exports, a decision
    wait later: a window that stops with the senders would miss that work)."""
    senders = [Sender(rig.address, 100 + d, 125) for d in range(profile.senders)]
    before = rig.snapshot()
    counts = send_for(senders, seconds, spans_per_s)
    sent = rig.snapshot()
    for sender in senders:
        sender.close()
    time.sleep(drain_s)
    after = rig.snapshot()
    wall = sent["wall"] - before["wall"]
    accepted = sent["accepted"] - before["accepted"]
    cpu = after["cpu_s"] - before["cpu_s"]
    return {"offered_spans_per_s": spans_per_s, "seconds": round(wall, 1),
            "drain_s": drain_s, "accepted_spans": accepted,
            "accepted_spans_per_s": round(accepted / wall),
            "refused_spans": after["refused"] - before["refused"],
            "send_errors": counts.errors, "gateway_cpu_s": round(cpu, 2),
            "gateway_cores_while_sending": round((sent["cpu_s"] - before["cpu_s"]) / wall, 2),
            "cpu_s_per_1000_spans": round(cpu / max(accepted, 1) * 1000, 4),
            "peak_rss_mb": round(max(sent["rss_mb"], after["rss_mb"]), 1)}


def sustained_rate(rig: Rig, profile: Profile, log: Callable[[str], None]) -> dict[str, Any]:
    """Offered rates in rising steps, no pause between them; the highest one the gateway took
    whole (nothing refused, at least 95 % of it accepted: the senders kept up) is sustained."""
    steps, best = [], None
    for rate in profile.rates:
        step = load_window(rig, profile, profile.step_s, rate)
        steps.append(step)
        log(f"step {rate} spans/s: {step}")
        if step["refused_spans"] or step["accepted_spans_per_s"] < 0.95 * rate:
            break
        best = step
    return {"steps": steps, "sustained": best or steps[0]}


def daemons_per_gateway(spans_call: float, cpu_per_1000: float, sustained: float,
                        kib_per_trace: float, baseline_mb: float) -> dict[str, Any]:
    """From the measured figures: daemons one gateway serves at each stated call rate, bound by
    one core of CPU, by the measured sustained rate, and by memory (tail sampling holds one trace
    per call for the decision wait, under the memory limiter's soft limit)."""
    per_core = 1000 / cpu_per_1000
    memory_room_kib = (MEMORY_LIMIT_MIB - SPIKE_MIB - baseline_mb) * 1024
    rows = {}
    for rate in CALL_RATES:
        spans_s = spans_call * rate
        bounds = {"cpu_one_core": per_core / spans_s, "sustained_here": sustained / spans_s,
                  "memory_limit": memory_room_kib / max(kib_per_trace * rate * DECISION_WAIT_S,
                                                        1e-9)}
        rows[str(rate)] = {"spans_per_s_per_daemon": round(spans_s, 2),
                           **{k: int(v) for k, v in bounds.items()},
                           "daemons": int(min(bounds.values()))}
    return {"spans_per_core_s": round(per_core), "by_call_rate": rows}


# --- report -------------------------------------------------------------------------------------

def _first_failed(results: dict[str, Any]) -> str:
    last = results["steps"][-1]
    if last is results["sustained"]:
        return "none up to the last step"
    return (f"{last['offered_spans_per_s']:,} spans/s: {last['accepted_spans_per_s']:,} accepted, "
            f"{last['refused_spans']:,.0f} refused, peak RSS {last['peak_rss_mb']} MiB")


def markdown(results: dict[str, Any]) -> str:
    calls, memory = results["spans_per_call"], results["memory"]
    moderate, peak = results["moderate"], results["sustained"]
    fleet = results["daemons_per_gateway"]
    host = results["machine"]
    lines = [
        "# One gateway's capacity (`python -m bench.fleet_capacity`)", "",
        f"{host['cpus']} cores ({host['cpu_model']}), {host['memory_gb']} GiB; load average "
        f"{results['load_average_before'][0]:.2f} at the start; the run took "
        f"{results['settings']['elapsed_s']} s. See docs/scaling.md, Capacity, measured.", "",
        "| figure | value |", "|---|---|",
        f"| spans per chat call (real daemon, direct with the token) | {calls['spans_per_call']} |",
        f"| spans per second one gateway sustained (highest step taken whole, "
        f"{peak['seconds']} s; load generator on the same 2 cores) | "
        f"{peak['accepted_spans_per_s']:,} |",
        f"| first step refused (memory limiter) or not kept up with | "
        f"{_first_failed(results)} |",
        f"| gateway CPU at that rate | {peak['gateway_cores_while_sending']} cores |",
        f"| gateway CPU seconds per 1,000 spans, at {moderate['accepted_spans_per_s']:,} spans/s "
        f"| {moderate['cpu_s_per_1000_spans']} |",
        f"| ... at the sustained rate | {peak['cpu_s_per_1000_spans']} |",
        f"| memory per held trace ({SPANS_PER_TRACE} spans; RSS slope / Go heap slope) | "
        f"{memory['rss_kib_per_trace']} KiB / {memory['heap_kib_per_trace']} KiB |",
        f"| gateway RSS idle | {memory['baseline_rss_mb']} MiB |",
        "", "| calls/s per daemon | spans/s per daemon | bound by 1 core | by the sustained rate "
        "| by memory (limiter) | daemons per gateway |", "|---|---|---|---|---|---|",
    ]
    for rate, row in fleet["by_call_rate"].items():
        lines.append(f"| {rate} | {row['spans_per_s_per_daemon']} | {row['cpu_one_core']:,} | "
                     f"{row['sustained_here']:,} | {row['memory_limit']:,} | "
                     f"**{row['daemons']:,}** |")
    return "\n".join(lines) + "\n"


async def run(profile: Profile, binary: str, log: Callable[[str], None]) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="exai-fleet-bench-"))
    started = time.monotonic()
    rig = await start_rig(workdir, binary)
    results: dict[str, Any] = {"machine": machine(), "load_average_before": os.getloadavg()}
    try:
        results["spans_per_call"] = await spans_per_call(rig, profile.calls)
        log(f"spans per call: {results['spans_per_call']}")
        results["memory"] = await asyncio.to_thread(memory_per_trace, rig, profile)
        log(f"memory: {results['memory']}")
        results["moderate"] = await asyncio.to_thread(
            load_window, rig, profile, profile.moderate_s, profile.moderate_spans_per_s,
            profile.settle_s)
        log(f"moderate: {results['moderate']}")
        stepped = await asyncio.to_thread(sustained_rate, rig, profile, log)
        results["steps"], results["sustained"] = stepped["steps"], stepped["sustained"]
    finally:
        rig.infra.stop_all()
        if rig.infra.remote_write is not None:
            await rig.infra.remote_write.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    results["daemons_per_gateway"] = daemons_per_gateway(
        results["spans_per_call"]["spans_per_call"], results["moderate"]["cpu_s_per_1000_spans"],
        results["sustained"]["accepted_spans_per_s"], results["memory"]["rss_kib_per_trace"],
        results["memory"]["baseline_rss_mb"])
    results["settings"] = {"profile": profile.__dict__, "decision_wait_s": DECISION_WAIT_S,
                           "memory_limit_mib": MEMORY_LIMIT_MIB, "spike_mib": SPIKE_MIB,
                           "gateway_env": PRODUCTION_ENV, "elapsed_s": 0.0}
    results["settings"]["elapsed_s"] = round(time.monotonic() - started, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: proves the program")
    parser.add_argument("--json", type=Path, default=RESULTS / "fleet-capacity.json")
    parser.add_argument("--markdown", type=Path, default=RESULTS / "fleet-capacity.md")
    parser.add_argument("--collector-bin", default=None)
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else Profile()
    results = asyncio.run(run(profile, args.collector_bin or collector_binary(),
                              lambda line: print(line, flush=True)))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    args.markdown.write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
