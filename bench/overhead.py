#!/usr/bin/env python3
"""The overhead budget, measured: the daemon with full telemetry against telemetry off, against
zero-code auto-instrumentation and against a bare WebSocket server, in one interleaved run.

    python -m bench.overhead --quick --json out.json       # < 3 min on 2 cores (from the repo root)
    python -m bench.overhead --json out.json --plot docs/benchmarks.png --markdown table.md

Everything runs on loopback, started here: a real redis-server, the fake upstream (``exai
fake-llm``, its latency switched per point), the built collector with the real config
(collector-config/config.yaml) whose Tempo/Loki exporters point at a discarding second collector
instance (bench/sink-collector.yaml) and whose Prometheus remote write is answered 204 by this
process, and four servers, all started once and kept running:

- ``off``:   ``exai serve`` with ``OTEL_SDK_DISABLED=true``;
- ``full``:  ``exai serve`` with every signal on, 100 % of spans, OTLP http/protobuf (its default);
- ``peer``:  ``opentelemetry-instrument exai serve`` (stock httpx, redis, logging and
  system-metrics instrumentations, OTLP gRPC, the agent's default) with the daemon's own
  telemetry off (``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=exai``);
- ``limit``: bench/limit_server.py, a bare ``websockets`` server answering the same frames.

K clients (one WebSocket session each) make ``chat`` calls in a closed loop. Each point (worst:
upstream 0 ms; realistic: 50 ms) runs rounds of ``off full peer limit``, one window each, so
machine drift hits every variant alike; between windows the machine is left to go quiet (the
batch processors' last export included). Ratios are taken within a round, then summarised
(median, min, max) across rounds. Telemetry volume comes from the collector's own counters, split
by receiver transport (full sends http, peer gRPC), after both have shut down and flushed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from aiohttp import web
from websockets.asyncio.client import ClientConnection, connect

from app import protocol
from tests.harness.collector import collector_binary, config_args
from tests.harness.exai_process import EXAI, daemon_env, spawn_fake_llm
from tests.harness.fake_upstream import FakeUpstreamControl
from tests.harness.procs import LOOPBACK, ManagedProcess, free_port, port_open
from tests.harness.redis_server import redis_process

REPO = Path(__file__).resolve().parents[1]

BIN = Path(sys.executable).parent
AGENT = str(BIN / "opentelemetry-instrument")
SINK_CONFIG = REPO / "bench" / "sink-collector.yaml"
LIMIT_SERVER = REPO / "bench" / "limit_server.py"
TOKEN = "bench-token-not-a-secret"
FAKE_KEY = "sk-bench-fake-key"
VARIANTS = ("off", "full", "peer", "limit")
POINTS = {"worst": 0.0, "realistic": 50.0}
PROMPTS = ("Summarise the plot of a short story in two sentences.",
           "Suggest three names for a tabby cat.",
           "Explain what a trace id is to a new engineer.")
# Export cadence for both telemetry variants: the SDK's batch delay shortened from 5 s to 1 s so
# that a window's last batch is exported before the next variant's window starts (see quiesce).
EXPORT_ENV = {"OTEL_BSP_SCHEDULE_DELAY": "1000", "OTEL_BLRP_SCHEDULE_DELAY": "1000"}
EXPORT_SETTLE_S = 1.3


@dataclass
class Profile:
    rounds: int
    window_s: float
    warmup_s: float
    clients: int


QUICK = Profile(rounds=3, window_s=3.0, warmup_s=1.0, clients=8)
FULL = Profile(rounds=8, window_s=10.0, warmup_s=3.0, clients=8)


# --- processes --------------------------------------------------------------------------------

def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=1.0).status_code == 200


@dataclass
class Infra:
    workdir: Path
    procs: list[ManagedProcess] = field(default_factory=list)
    servers: dict[str, ManagedProcess] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    collector: ManagedProcess | None = None
    telemetry_port: int = 0
    fake_port: int = 0
    remote_write: web.AppRunner | None = None
    remote_write_requests: int = 0
    profile_dir: Path | None = None
    profiler: str = "pyinstrument"
    profiled: tuple[str, ...] = ("off", "full")
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)

    def start_proc(self, proc: ManagedProcess) -> ManagedProcess:
        proc.start()
        self.procs.append(proc)
        return proc

    @property
    def stop_signal(self) -> int:
        """py-spy writes its report on SIGINT only (SIGTERM kills it); the daemon takes either."""
        return signal.SIGINT if self.profile_dir and self.profiler == "py-spy" else signal.SIGTERM

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(self.stop_signal)


async def start_remote_write_sink(infra: Infra) -> int:
    """Prometheus remote write answered 204 (the collector's metrics exporter needs a receiver)."""
    async def write(_request: web.Request) -> web.Response:
        infra.remote_write_requests += 1
        await _request.read()
        return web.Response(status=204)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/api/v1/write", write)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, LOOPBACK, port).start()
    infra.remote_write = runner
    return port


def start_redis_and_upstream(infra: Infra) -> ManagedProcess:
    """A real redis-server and ``exai fake-llm`` on free loopback ports; returns Redis."""
    redis = infra.start_proc(redis_process(infra.workdir / "redis"))
    fake, infra.fake_port = spawn_fake_llm(infra.workdir)
    infra.procs.append(fake)
    return redis


def parse_env_options(items: list[str]) -> dict[str, dict[str, str]]:
    """``--env VARIANT:KEY=VALUE`` options as ``{variant: {key: value}}``."""
    extra_env: dict[str, dict[str, str]] = {}
    for item in items:
        variant, _, assignment = item.partition(":")
        key, _, value = assignment.partition("=")
        extra_env.setdefault(variant, {})[key] = value
    return extra_env


def start_collectors(infra: Infra, binary: str, remote_write_port: int) -> None:
    sink_grpc, sink_http = free_port(), free_port()
    infra.start_proc(ManagedProcess(
        name="sink-collector", argv=[binary, f"--config={SINK_CONFIG}"],
        log_path=infra.workdir / "sink-collector.log",
        env={"SINK_GRPC_ENDPOINT": f"{LOOPBACK}:{sink_grpc}",
             "SINK_HTTP_ENDPOINT": f"{LOOPBACK}:{sink_http}"},
        ready=lambda: port_open(sink_grpc) and port_open(sink_http), ready_timeout=60))
    grpc, http, health, telemetry = (free_port() for _ in range(4))
    env = {
        "EXAI_OTELCOL_OTLP_GRPC_ENDPOINT": f"{LOOPBACK}:{grpc}",
        "EXAI_OTELCOL_OTLP_HTTP_ENDPOINT": f"{LOOPBACK}:{http}",
        "EXAI_OTELCOL_HEALTH_ENDPOINT": f"{LOOPBACK}:{health}",
        "EXAI_OTELCOL_TELEMETRY_HOST": LOOPBACK,
        "EXAI_OTELCOL_TELEMETRY_PORT": str(telemetry),
        "EXAI_OTELCOL_STORAGE_DIR": str(infra.workdir / "otelcol-storage"),
        "EXAI_TEMPO_OTLP_GRPC_ENDPOINT": f"{LOOPBACK}:{sink_grpc}",
        "EXAI_LOKI_OTLP_ENDPOINT": f"http://{LOOPBACK}:{sink_http}/otlp",
        "EXAI_PROMETHEUS_REMOTE_WRITE_URL": f"http://{LOOPBACK}:{remote_write_port}/api/v1/write",
        "EXAI_OTELCOL_LOG_LEVEL": "warn",
    }
    infra.collector = infra.start_proc(ManagedProcess(
        name="collector", argv=[binary, *config_args("single")],
        log_path=infra.workdir / "collector.log", env=env,
        ready=lambda: _http_ok(f"http://{LOOPBACK}:{health}/"), ready_timeout=60))
    infra.ports.update(otlp_grpc=grpc, otlp_http=http)
    infra.telemetry_port = telemetry


def variant_process(infra: Infra, variant: str, redis_url: str) -> ManagedProcess:
    ws_port, health_port = free_port(), free_port()
    env = daemon_env(
        infra.fake_port, ws_port, health_port, token=TOKEN, key=FAKE_KEY, REDIS_URL=redis_url,
        EXAI_RATE_LIMIT_PER_SEC="1000000", EXAI_RATE_LIMIT_BURST="1000000",
        EXAI_WS_SESSION_MAX_INFLIGHT="1000", EXAI_WS_GLOBAL_MAX_INFLIGHT="1000",
        EXAI_GLM_MAX_INFLIGHT="1000", EXAI_KIMI_MAX_INFLIGHT="1000",
        EXAI_MAX_CONNECTIONS_PER_CLIENT="1000",
    )
    argv = [EXAI, "serve", "--log-level", "INFO"]
    if variant == "off":
        env["OTEL_SDK_DISABLED"] = "true"
    elif variant == "full":
        env.update(EXPORT_ENV)
        env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{LOOPBACK}:{infra.ports['otlp_http']}",
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    elif variant == "peer":
        env.update(EXPORT_ENV)
        env.update({
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "exai",  # the daemon's own telemetry off
            "OTEL_SERVICE_NAME": "exai-daemon-peer",
            "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{LOOPBACK}:{infra.ports['otlp_grpc']}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        })
        argv = [AGENT, *argv]
    elif variant == "limit":
        argv = [sys.executable, str(LIMIT_SERVER), "--port", str(ws_port)]
        health_port = ws_port
    env.update(infra.extra_env.get(variant, {}))
    workdir = infra.workdir / variant
    workdir.mkdir(parents=True, exist_ok=True)
    if infra.profile_dir is not None and variant in infra.profiled:
        argv = profiled(infra.profiler, infra.profile_dir, variant, argv)
    proc = ManagedProcess(name=variant, argv=argv, env=env, cwd=workdir,
                          log_path=workdir / f"{variant}.log",
                          ready=lambda: port_open(health_port),
                          ready_timeout=300 if infra.profiler == "callgrind" else 60)
    proc.ws_port = ws_port  # type: ignore[attr-defined]
    return proc


def profiled(profiler: str, out_dir: Path, variant: str, argv: list[str]) -> list[str]:
    """``argv`` run under a profiler; each writes its report when the daemon stops.

    pyinstrument samples the main thread; cProfile counts every call on it; py-spy samples every
    thread (collapsed stacks, for flame graphs). callgrind counts instructions of every thread,
    starting only when told (see bench/instructions.py); it follows the agent's exec.
    """
    if profiler == "py-spy":
        return ["py-spy", "record", "--threads", "--rate", "250", "--format", "raw",
                "-o", str(out_dir / f"{variant}.folded"), "--", *argv]
    if profiler == "cprofile":
        return [sys.executable, "-m", "cProfile", "-o", str(out_dir / f"{variant}.prof"), *argv]
    if profiler == "callgrind":
        return ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=yes",
                "--separate-threads=yes", f"--callgrind-out-file={out_dir}/{variant}.%p.out",
                *argv]
    return [sys.executable, "-m", "pyinstrument", "-r", "text", "--show-all",
            "-o", str(out_dir / f"{variant}.txt"), *argv]


def set_upstream_latency(infra: Infra, latency_ms: float) -> None:
    FakeUpstreamControl.on_port(infra.fake_port).config(latency_ms=latency_ms)


async def set_limit_latency(port: int, latency_ms: float) -> None:
    async with connect(f"ws://{LOOPBACK}:{port}") as ws:
        await ws.send(json.dumps({"op": "_bench_config", "latency_ms": latency_ms}))
        await ws.recv()


# --- measuring --------------------------------------------------------------------------------

def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) from /proc; psutil's current RSS where that is unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return psutil.Process(pid).memory_info().rss / 2**20


def thread_split(proc: psutil.Process) -> dict[str, float]:
    main, other = 0.0, 0.0
    for thread in proc.threads():
        if thread.id == proc.pid:
            main += thread.user_time + thread.system_time
        else:
            other += thread.user_time + thread.system_time
    return {"main_thread": round(main, 2), "other_threads": round(other, 2)}


@dataclass
class Window:
    variant: str
    calls: int
    errors: int
    elapsed_s: float
    latencies_s: list[float]
    cpu_s: float
    collector_cpu_s: float

    @property
    def calls_per_sec(self) -> float:
        return self.calls / self.elapsed_s

    def pct(self, q: float) -> float:
        return percentile(self.latencies_s, q)

    def summary(self) -> dict[str, float]:
        return {"calls": self.calls, "errors": self.errors,
                "calls_per_sec": round(self.calls_per_sec, 2),
                "p50_ms": round(self.pct(50) * 1000, 3), "p99_ms": round(self.pct(99) * 1000, 3),
                "cpu_ms_per_call": round(self.cpu_s / max(1, self.calls) * 1000, 4),
                "collector_cpu_ms_per_call":
                    round(self.collector_cpu_s / max(1, self.calls) * 1000, 4)}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Clients:
    """K WebSocket sessions to one server, each making one ``chat`` call at a time."""

    def __init__(self, conns: list[ClientConnection]) -> None:
        self.conns = conns
        self.ids = itertools.count(1)
        self.total_calls = 0

    @classmethod
    async def open(cls, port: int, k: int) -> Clients:
        conns = []
        for _ in range(k):
            ws = await connect(f"ws://{LOOPBACK}:{port}", max_size=None, open_timeout=30)
            await ws.send(json.dumps(protocol.hello_request(TOKEN)))
            ack = json.loads(await ws.recv())
            if not protocol.parse_hello_ack(ack).ok:
                raise RuntimeError(f"hello refused on port {port}: {ack}")
            conns.append(ws)
        return cls(conns)

    async def close(self) -> None:
        for ws in self.conns:
            await ws.close()

    async def run(self, seconds: float | None = None,
                  calls: int | None = None) -> tuple[int, int, float, list[float]]:
        """Call for ``seconds``, or until ``calls`` calls have been started."""
        deadline = time.perf_counter() + seconds if seconds is not None else float("inf")
        remaining = itertools.count(calls, -1) if calls is not None else itertools.repeat(1)
        latencies: list[float] = []
        errors = 0
        prompts = itertools.cycle(PROMPTS)

        async def worker(ws: ClientConnection) -> None:
            nonlocal errors
            while time.perf_counter() < deadline and next(remaining) > 0:
                frame = json.dumps(protocol.call_tool_request(
                    "chat", {"prompt": next(prompts)}, request_id=f"b{next(self.ids)}"))
                started = time.perf_counter()
                await ws.send(frame)
                while True:
                    message = await ws.recv()
                    if '"call_tool_res"' in message:
                        break
                latencies.append(time.perf_counter() - started)
                if not protocol.parse_call_reply(json.loads(message)).ok:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(ws) for ws in self.conns))
        elapsed = time.perf_counter() - started
        self.total_calls += len(latencies)
        return len(latencies), errors, elapsed, latencies


async def quiesce(watched: list[psutil.Process], min_wait: float, max_wait: float = 4.0,
                  idle_cpu_share: float = 0.05) -> None:
    """Wait ``min_wait``, then until the watched processes together use under ``idle_cpu_share``
    of one core over 100 ms (or ``max_wait`` passes)."""
    await asyncio.sleep(min_wait)
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(p) for p in watched)
        await asyncio.sleep(0.1)
        if sum(cpu_seconds(p) for p in watched) - before < 0.1 * idle_cpu_share:
            return


async def measure_point(point: str, latency_ms: float, infra: Infra, clients: dict[str, Clients],
                        procs: dict[str, psutil.Process], collector: psutil.Process,
                        profile: Profile, log) -> list[dict[str, Window]]:
    set_upstream_latency(infra, latency_ms)
    if "limit" in clients:
        await set_limit_latency(infra.servers["limit"].ws_port, latency_ms)  # type: ignore[attr-defined]
    watched = [*procs.values(), collector]
    for variant, group in clients.items():  # warm-up, not measured
        await group.run(profile.warmup_s)
        await quiesce(watched, EXPORT_SETTLE_S if variant in ("full", "peer") else 0.2)
    rounds: list[dict[str, Window]] = []
    for number in range(profile.rounds):
        windows: dict[str, Window] = {}
        for variant, group in clients.items():
            cpu0, coll0 = cpu_seconds(procs[variant]), cpu_seconds(collector)
            calls, errors, elapsed, latencies = await group.run(profile.window_s)
            # Spans of this window exported after it ends are still this variant's cost.
            await quiesce(watched, EXPORT_SETTLE_S if variant in ("full", "peer") else 0.2)
            windows[variant] = Window(variant, calls, errors, elapsed, latencies,
                                      cpu_seconds(procs[variant]) - cpu0,
                                      cpu_seconds(collector) - coll0)
        rounds.append(windows)
        log(f"{point} round {number + 1}/{profile.rounds}: " + "  ".join(
            f"{v} {w.calls_per_sec:.0f}/s p50 {w.pct(50) * 1000:.2f}ms"
            for v, w in windows.items()))
    return rounds


# --- summarising ------------------------------------------------------------------------------

def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4)}


def summarise_point(rounds: list[dict[str, Window]], latency_ms: float) -> dict[str, Any]:
    variants = list(rounds[0])
    result: dict[str, Any] = {"upstream_latency_ms": latency_ms, "rounds": len(rounds)}
    for other in ("full", "peer", "limit"):
        if other not in variants or "off" not in variants:
            continue
        thr = [r[other].calls_per_sec / r["off"].calls_per_sec for r in rounds]
        p50 = [r[other].pct(50) / r["off"].pct(50) for r in rounds]
        p99 = [r[other].pct(99) / r["off"].pct(99) for r in rounds]
        cpu = [(r[other].cpu_s / r[other].calls) / (r["off"].cpu_s / r["off"].calls)
               for r in rounds]
        result[f"throughput_ratio_{other}_vs_off"] = round(statistics.median(thr), 4)
        result[f"p50_ratio_{other}_vs_off"] = round(statistics.median(p50), 4)
        result[f"p99_ratio_{other}_vs_off"] = round(statistics.median(p99), 4)
        result[f"cpu_per_call_ratio_{other}_vs_off"] = round(statistics.median(cpu), 4)
        result.setdefault("spread", {})[other] = {
            "throughput_ratio": spread(thr), "p50_ratio": spread(p50), "p99_ratio": spread(p99)}
    table = {}
    for variant in variants:
        windows = [r[variant] for r in rounds]
        latencies = [x for w in windows for x in w.latencies_s]
        calls = sum(w.calls for w in windows)
        table[variant] = {
            "calls_per_sec": round(statistics.median(w.calls_per_sec for w in windows), 2),
            "p50_ms": round(percentile(latencies, 50) * 1000, 3),
            "p99_ms": round(percentile(latencies, 99) * 1000, 3),
            "cpu_ms_per_call": round(sum(w.cpu_s for w in windows) / calls * 1000, 4),
            "collector_cpu_ms_per_call":
                round(sum(w.collector_cpu_s for w in windows) / calls * 1000, 4),
            "calls": calls, "errors": sum(w.errors for w in windows),
        }
    result["variants"] = table
    result["per_round"] = [{v: w.summary() for v, w in r.items()} for r in rounds]
    return result


def collector_counters(port: int) -> dict[tuple[str, str], float]:
    """otelcol_receiver_accepted_{spans,metric_points,log_records} by (signal, transport)."""
    text = httpx.get(f"http://{LOOPBACK}:{port}/metrics", timeout=5).text
    totals: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if not line.startswith("otelcol_receiver_accepted_"):
            continue
        head, _, value = line.rpartition(" ")
        name = head.split("{", 1)[0]
        signal_name = name.removeprefix("otelcol_receiver_accepted_").removesuffix("_total")
        transport = (head.split('transport="', 1)[1].split('"', 1)[0]
                     if 'transport="' in head else "")
        key = (signal_name, transport)
        totals[key] = totals.get(key, 0.0) + float(value)
    return totals


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}


def markdown_table(results: dict[str, Any]) -> str:
    lines = []
    for point in POINTS:
        if point not in results:
            continue
        data = results[point]
        lines.append(f"**{point}** (upstream latency {data['upstream_latency_ms']:g} ms, "
                     f"{data['rounds']} rounds)\n")
        lines.append("| variant | calls/s | p50 ms | p99 ms | daemon CPU ms/call | "
                     "collector CPU ms/call | throughput vs off | p50 vs off |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for variant, row in data["variants"].items():
            s = data.get("spread", {}).get(variant)
            if variant == "off":
                thr = p50 = "1"
            elif s is None:  # a run without off (say, --variants full --profile DIR)
                thr = p50 = "-"
            else:
                thr = "{median:.3f} ({min:.3f}-{max:.3f})".format(**s["throughput_ratio"])
                p50 = "{median:.3f} ({min:.3f}-{max:.3f})".format(**s["p50_ratio"])
            lines.append(f"| {variant} | {row['calls_per_sec']:.0f} | {row['p50_ms']:.2f} | "
                         f"{row['p99_ms']:.2f} | {row['cpu_ms_per_call']:.3f} | "
                         f"{row['collector_cpu_ms_per_call']:.3f} | {thr} | {p50} |")
        lines.append("")
    if "telemetry_per_call" in results:
        lines.append("| variant | spans/call | metric points/call | log records/call | "
                     "peak RSS MB |")
        lines.append("|---|---:|---:|---:|---:|")
        for variant in VARIANTS:
            volume = results["telemetry_per_call"].get(variant, {})
            rss = results.get("peak_rss_mb", {}).get(variant, float("nan"))
            lines.append(f"| {variant} | {volume.get('spans', 0):.2f} | "
                         f"{volume.get('metric_points', 0):.3f} | "
                         f"{volume.get('log_records', 0):.3f} | {rss:.0f} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [p for p in POINTS if p in results]
    others = [v for v in ("full", "peer", "limit") if v in results[points[0]].get("spread", {})]
    colours = {"full": "#2b6cb0", "peer": "#dd6b20", "limit": "#718096"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = ((axes[0], "throughput_ratio", "throughput vs off (higher is better)"),
              (axes[1], "p50_ratio", "p50 latency vs off (lower is better)"))
    for axis, metric, title in panels:
        width = 0.8 / len(others)
        for i, variant in enumerate(others):
            xs, ys, lo, hi = [], [], [], []
            for j, point in enumerate(points):
                s = results[point]["spread"][variant][metric]
                xs.append(j + (i - (len(others) - 1) / 2) * width)
                ys.append(s["median"])
                lo.append(s["median"] - s["min"])
                hi.append(s["max"] - s["median"])
            top = 1.6  # the limit's worst-case ratio (~30x) would flatten the rest: clip, label
            shown = [min(y, top) for y in ys]
            axis.bar(xs, shown, width, label=variant, color=colours[variant],
                     yerr=[[0 if y > top else low for low, y in zip(lo, ys, strict=True)],
                           [0 if y > top else high for y, high in zip(ys, hi, strict=True)]],
                     capsize=3)
            for x, y in zip(xs, ys, strict=True):
                axis.text(x, min(y, top) + 0.02, f"{y:.2f}", ha="center", fontsize=7)
        axis.axhline(1.0, color="black", linewidth=0.8)
        axis.set_xticks(range(len(points)),
                        [f"{p}\n({results[p]['upstream_latency_ms']:g} ms upstream)"
                         for p in points])
        axis.set_title(title)
        axis.set_ylim(0, 1.75)
    axes[0].legend()
    fig.suptitle("exai-daemon telemetry overhead (median of rounds, bars: min-max)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


# --- main ---------------------------------------------------------------------------------------

async def run(args: argparse.Namespace, profile: Profile, log) -> dict[str, Any]:
    variants = [v for v in VARIANTS if v in args.variants.split(",")]
    points = {p: POINTS[p] for p in args.points.split(",")}
    workdir = Path(tempfile.mkdtemp(prefix="exai-bench-", dir=args.workdir))
    infra = Infra(workdir, profile_dir=args.profile, profiler=args.profiler,
                  extra_env=parse_env_options(args.env))
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    clients: dict[str, Clients] = {}
    started = time.monotonic()
    try:
        redis = start_redis_and_upstream(infra)
        if "full" in variants or "peer" in variants:
            start_collectors(infra, args.collector_bin or collector_binary(),
                             await start_remote_write_sink(infra))
        for variant in variants:
            infra.servers[variant] = variant_process(infra, variant, redis.url)  # type: ignore[attr-defined]
        # Start them together: the daemons' imports dominate start-up.
        await asyncio.gather(*(asyncio.to_thread(infra.start_proc, p)
                               for p in infra.servers.values()))
        log(f"started in {time.monotonic() - started:.1f}s; work dir {workdir}")
        procs = {v: psutil.Process(p.process.pid) for v, p in infra.servers.items()}  # type: ignore[union-attr]
        collector = psutil.Process(infra.collector.process.pid if infra.collector  # type: ignore[union-attr]
                                   else os.getpid())
        for variant in variants:
            clients[variant] = await Clients.open(infra.servers[variant].ws_port,  # type: ignore[attr-defined]
                                                  profile.clients)
        counters_before = collector_counters(infra.telemetry_port) if infra.collector else {}
        for point, latency_ms in points.items():
            rounds = await measure_point(point, latency_ms, infra, clients, procs, collector,
                                         profile, log)
            results[point] = summarise_point(rounds, latency_ms)
        results["peak_rss_mb"] = {v: round(peak_rss_mb(p.pid), 1) for v, p in procs.items()}
        # CPU seconds of each daemon's main thread against all its other threads (export, gRPC).
        results["thread_cpu_s"] = {v: thread_split(p) for v, p in procs.items()}
        calls = {v: c.total_calls for v, c in clients.items()}
        lifetimes = {v: time.time() - p.create_time() for v, p in procs.items()}
        for group in clients.values():
            await group.close()
        clients = {}
        if infra.collector:
            # Shut the telemetry variants down (their SDKs flush), let the collector count it all.
            for variant in ("full", "peer"):
                if variant in infra.servers:
                    infra.servers[variant].stop(infra.stop_signal, timeout=30)
            await asyncio.sleep(2.0)
            after = collector_counters(infra.telemetry_port)
            volume: dict[str, dict[str, float]] = {}
            for variant, transport in (("full", "http"), ("peer", "grpc")):
                if variant not in calls:
                    continue
                per = {}
                for signal_name in ("spans", "metric_points", "log_records"):
                    key = (signal_name, transport)
                    total = after.get(key, 0.0) - counters_before.get(key, 0.0)
                    per[signal_name] = round(total / max(1, calls[variant]), 4)
                per["metric_points_per_min"] = round(
                    (after.get(("metric_points", transport), 0.0)
                     - counters_before.get(("metric_points", transport), 0.0))
                    / (lifetimes[variant] / 60), 1)
                volume[variant] = per
            volume["off"] = {"spans": 0, "metric_points": 0, "log_records": 0}
            volume["limit"] = {"spans": 0, "metric_points": 0, "log_records": 0}
            results["telemetry_per_call"] = volume
            results["collector_accepted"] = {
                "/".join(key): count - counters_before.get(key, 0.0)
                for key, count in after.items()}
        results["calls_per_variant"] = calls
    finally:
        for group in clients.values():
            await group.close()
        infra.stop_all()
        if infra.remote_write is not None:
            await infra.remote_write.cleanup()
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    results["machine"] = machine()
    results["settings"] = {"quick": args.quick, "clients": profile.clients,
                           "rounds": profile.rounds, "window_s": profile.window_s,
                           "warmup_s": profile.warmup_s, "order": variants,
                           "export_env": EXPORT_ENV,
                           "elapsed_s": round(time.monotonic() - started, 1)}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the daemon's telemetry overhead.")
    parser.add_argument("--quick", action="store_true", help="short run (< 3 min on 2 cores)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", type=Path, help="write the result tables here")
    parser.add_argument("--plot", type=Path, help="write a PNG plot here (needs matplotlib)")
    parser.add_argument("--rounds", type=int, help="rounds per point")
    parser.add_argument("--window", type=float, help="seconds per measured window")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per variant and point")
    parser.add_argument("--clients", type=int, help="concurrent WebSocket clients (K)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--points", default=",".join(POINTS))
    parser.add_argument("--collector-bin", help="collector binary (default: $EXAI_OTELCOL_BIN, "
                                                "else collector-config/build.sh)")
    parser.add_argument("--workdir", help="parent of the scratch directory (default: temp)")
    parser.add_argument("--profile", type=Path,
                        help="run the off and full daemons under a profiler; write "
                             "DIR/<variant>.{txt,prof,folded} (slows them: use for where time "
                             "goes, not for the figures)")
    parser.add_argument("--profiler", choices=("pyinstrument", "cprofile", "py-spy"),
                        default="pyinstrument")
    parser.add_argument("--env", action="append", default=[], metavar="VARIANT:KEY=VALUE",
                        help="an extra environment variable for one variant (experiments)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs for inspection")
    parser.add_argument("--from-json", type=Path,
                        help="do not measure: redraw the tables and plot from an earlier --json")
    args = parser.parse_args(argv)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        if args.markdown:
            args.markdown.write_text(markdown_table(results))
        if args.plot:
            plot(results, args.plot)
        print(markdown_table(results))
        return 0

    base = QUICK if args.quick else FULL
    profile = Profile(rounds=args.rounds or base.rounds, window_s=args.window or base.window_s,
                      warmup_s=args.warmup if args.warmup is not None else base.warmup_s,
                      clients=args.clients or base.clients)
    # The servers' telemetry is set per variant below; nothing inherited may change it.
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[key]

    def log(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    results = asyncio.run(run(args, profile, log))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown_table(results)
    if args.markdown:
        args.markdown.write_text(table)
    if args.plot:
        plot(results, args.plot)
    print(table)
    for point in POINTS:
        if point in results and "throughput_ratio_full_vs_off" in results[point]:
            r = results[point]
            print(f"{point}: full/off throughput {r['throughput_ratio_full_vs_off']:.3f} "
                  f"p50 {r['p50_ratio_full_vs_off']:.3f}"
                  + (f"; peer/off throughput {r['throughput_ratio_peer_vs_off']:.3f} "
                     f"p50 {r['p50_ratio_peer_vs_off']:.3f}" if "throughput_ratio_peer_vs_off" in r
                     else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
