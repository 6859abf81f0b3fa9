#!/usr/bin/env python3
"""Telemetry's cost in instructions per chat call, counted by callgrind: a figure the machine's
noise cannot move.

    python -m bench.instructions --json out.json          # about 6 min on 2 cores

On a shared virtual machine the same daemon's CPU time per call drifts by a third from one
window to the next, so a change worth 5 % of telemetry's cost cannot be seen in timings.
Instructions retired are deterministic to well under 1 %. This program runs the variants of
bench/overhead.py (same processes, same settings) under valgrind's callgrind, one at a time,
with counting switched on only for a fixed number of calls after a warm-up, and reports:

- **event loop**: instructions of the main thread per call. Everything on a request's path
  (spans started and ended, measurements, instrumentation wrappers) runs here;
- **export**: instructions of every other thread (batch processors, exporters, gRPC) per exported
  span, from the collector's count of spans accepted during the window, times spans per call.
  The batch processors export full batches (512 spans) as in a timed run, not one batch per
  second of a run slowed fifty times by valgrind. Metrics are read once a minute whatever the
  call rate, so their export is left out of the window (``OTEL_METRIC_EXPORT_INTERVAL``).

Instructions are not time (cache misses, GIL hand-offs and the collector are not in them), so
the timed ratios of bench/overhead.py stay the headline; this is the instrument for telling
whether a change to the telemetry made it cheaper.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import overhead
from bench.overhead import (
    Clients,
    Infra,
    collector_counters,
    parse_env_options,
    set_upstream_latency,
    start_collectors,
    start_redis_and_upstream,
    start_remote_write_sink,
    variant_process,
)
from tests.harness.collector import collector_binary

VARIANTS = ("off", "full", "peer")
TRANSPORT = {"full": "http", "peer": "grpc"}
# Size-triggered batches only, as at full speed; no metric export inside the counted window.
COUNTING_ENV = {"OTEL_BSP_SCHEDULE_DELAY": "600000", "OTEL_BLRP_SCHEDULE_DELAY": "600000",
                "OTEL_METRIC_EXPORT_INTERVAL": "3600000"}
_TOTALS = re.compile(rb"^totals:\s+(\d+)", re.MULTILINE)


def callgrind_control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def thread_totals(out_dir: Path, variant: str, pid: int, dump: int) -> dict[int, int]:
    """Instructions per thread (1 is the main thread) in callgrind's ``dump``-th dump."""
    totals: dict[int, int] = {}
    for path in out_dir.glob(f"{variant}.{pid}.out.{dump}-*"):
        thread = int(path.name.rsplit("-", 1)[1])
        match = _TOTALS.search(path.read_bytes())
        totals[thread] = int(match.group(1)) if match else 0
    if not totals:
        raise RuntimeError(f"callgrind wrote no dump {dump} for {variant} (pid {pid}) in {out_dir}")
    return totals


async def wait_for_spans_to_settle(port: int, transport: str, quiet_s: float = 3.0,
                                   max_s: float = 120.0) -> float:
    """The collector's accepted-span count once it has stopped moving for ``quiet_s``."""
    last, since = -1.0, time.monotonic()
    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline:
        now = collector_counters(port).get(("spans", transport), 0.0)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        await asyncio.sleep(0.5)
    return last


async def count_variant(infra: Infra, variant: str, redis_url: str,
                        spans_at_start: dict[str, float], args: argparse.Namespace,
                        log) -> dict[str, Any]:
    """Start one variant under callgrind, warm it up, count ``args.calls`` calls, stop it."""
    server = variant_process(infra, variant, redis_url)
    infra.start_proc(server)
    pid = server.process.pid  # type: ignore[union-attr]
    clients = await Clients.open(server.ws_port, args.clients)  # type: ignore[attr-defined]
    try:
        calls, errors, _, _ = await clients.run(calls=args.warmup_calls)
        transport = TRANSPORT.get(variant)
        spans_before = (await wait_for_spans_to_settle(infra.telemetry_port, transport)
                        if transport else 0.0)
        log(f"{variant}: warmed up ({calls} calls); counting {args.calls} calls")
        callgrind_control("--instr=on", str(pid))
        started = time.monotonic()
        calls, errors, _, _ = await clients.run(calls=args.calls)
        spans_after = (await wait_for_spans_to_settle(infra.telemetry_port, transport)
                       if transport else 0.0)
        callgrind_control("--dump", str(pid))
        callgrind_control("--instr=off", str(pid))
        log(f"{variant}: {calls} calls counted in {time.monotonic() - started:.0f}s")
    finally:
        await clients.close()
    if errors:
        raise RuntimeError(f"{variant}: {errors} of {calls} calls failed; see {server.log_path}")
    totals = thread_totals(infra.profile_dir, variant, pid, dump=1)  # type: ignore[arg-type]
    main = totals.pop(1, 0)
    others = sum(totals.values())
    server.stop(timeout=120)  # its SDK flushes every span still queued
    result: dict[str, Any] = {"calls": calls, "event_loop_per_call": round(main / calls)}
    if transport:
        # Spans per call over the daemon's whole life (each variant has its own transport).
        lifetime_spans = (await wait_for_spans_to_settle(infra.telemetry_port, transport)
                          - spans_at_start[transport])
        spans_per_call = lifetime_spans / clients.total_calls
        exported = spans_after - spans_before
        if not exported:
            raise RuntimeError(f"{variant}: no batch was exported while counting; count more "
                               f"calls (--calls) or export smaller batches "
                               f"(--env {variant}:OTEL_BSP_MAX_EXPORT_BATCH_SIZE=N)")
        per_span = others / exported
        result.update({
            "spans_exported_in_window": int(exported),
            "spans_per_call": round(spans_per_call, 3),
            "export_per_span": round(per_span),
            "export_per_call": round(per_span * spans_per_call),
        })
    else:
        result.update({"export_per_call": round(others / calls)})
    result["total_per_call"] = result["event_loop_per_call"] + result["export_per_call"]
    return result


def summarise(counts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    off = counts.get("off")
    summary: dict[str, Any] = {"variants": counts}
    if off:
        for variant in ("full", "peer"):
            if variant in counts:
                row = counts[variant]
                summary[f"telemetry_per_call_{variant}"] = (
                    row["total_per_call"] - off["total_per_call"])
                summary[f"instruction_ratio_{variant}_vs_off"] = round(
                    row["total_per_call"] / off["total_per_call"], 4)
    return summary


def markdown(summary: dict[str, Any]) -> str:
    lines = ["| variant | event loop Ir/call | export Ir/call | total Ir/call | spans/call | "
             "telemetry Ir/call | total vs off |", "|---|---:|---:|---:|---:|---:|---:|"]
    for variant, row in summary["variants"].items():
        telemetry = summary.get(f"telemetry_per_call_{variant}", 0)
        ratio = summary.get(f"instruction_ratio_{variant}_vs_off", 1.0)
        lines.append(f"| {variant} | {row['event_loop_per_call']:,} | {row['export_per_call']:,} | "
                     f"{row['total_per_call']:,} | {row.get('spans_per_call', 0):.2f} | "
                     f"{telemetry:,} | {ratio:.3f} |")
    return "\n".join(lines) + "\n"


async def run(args: argparse.Namespace, log) -> dict[str, Any]:
    variants = [v for v in VARIANTS if v in args.variants.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="exai-instructions-", dir=args.workdir))
    extra_env = {v: dict(COUNTING_ENV) for v in variants}
    for variant, overrides in parse_env_options(args.env).items():
        extra_env.setdefault(variant, {}).update(overrides)
    infra = Infra(workdir, profile_dir=workdir / "callgrind", profiler="callgrind",
                  profiled=tuple(variants), extra_env=extra_env)
    infra.profile_dir.mkdir()  # type: ignore[union-attr]
    counts: dict[str, dict[str, Any]] = {}
    spans_at_start: dict[str, float] = {}
    try:
        redis = start_redis_and_upstream(infra)
        set_upstream_latency(infra, 0.0)
        if "full" in variants or "peer" in variants:
            start_collectors(infra, args.collector_bin or collector_binary(),
                             await start_remote_write_sink(infra))
            counters = collector_counters(infra.telemetry_port)
            spans_at_start = {t: counters.get(("spans", t), 0.0) for t in TRANSPORT.values()}
        for variant in variants:  # one at a time: nothing else competes while one is counted
            counts[variant] = await count_variant(infra, variant, redis.url,  # type: ignore[attr-defined]
                                                  spans_at_start, args, log)
            log(f"{variant}: {counts[variant]}")
    finally:
        infra.stop_all()
        if infra.remote_write is not None:
            await infra.remote_write.cleanup()
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = summarise(counts)
    summary["settings"] = {"calls": args.calls, "warmup_calls": args.warmup_calls,
                           "clients": args.clients, "upstream_latency_ms": 0,
                           "valgrind": subprocess.run(["valgrind", "--version"], text=True,
                                                      capture_output=True).stdout.strip()}
    summary["machine"] = overhead.machine()
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=800, help="calls counted per variant")
    parser.add_argument("--warmup-calls", type=int, default=100,
                        help="calls before counting starts (connections, caches, first batches)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent WebSocket clients")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--env", action="append", default=[], metavar="VARIANT:KEY=VALUE",
                        help="an extra environment variable for one variant (experiments: "
                             "full:OTEL_TRACES_SAMPLER=always_off counts all but the spans)")
    parser.add_argument("--json", type=Path, help="write the counts here")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    parser.add_argument("--collector-bin", help="collector binary (default: $EXAI_OTELCOL_BIN, "
                                                "else collector-config/build.sh)")
    parser.add_argument("--workdir", help="parent of the scratch directory (default: temp)")
    parser.add_argument("--keep-workdir", action="store_true",
                        help="keep logs and callgrind files (callgrind_annotate reads them)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[key]

    def log(message: str) -> None:
        print(f"[instructions] {message}", file=sys.stderr, flush=True)

    summary = asyncio.run(run(args, log))
    table = markdown(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
