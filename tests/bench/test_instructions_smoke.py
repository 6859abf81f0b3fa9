"""bench/instructions.py counts a few calls under callgrind and reports what it promises.

Not a timed test: instructions retired do not depend on the machine's load. It proves the
program, valgrind's control channel and the collector's span counts still fit together, and
holds the event loop's share of the overhead budget. The published figures come from a full run
(docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_counting_a_few_calls_reports_instructions_per_call(tmp_path):
    out = tmp_path / "instructions.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.instructions", "--variants", "off,full",
         "--calls", "30", "--warmup-calls", "5", "--clients", "2", "--json", str(out),
         "--workdir", str(tmp_path),
         # small batches, so that a few calls export some (the real run keeps the SDK's 512)
         "--env", "full:OTEL_BSP_MAX_EXPORT_BATCH_SIZE=16"],
        capture_output=True, text=True, timeout=600, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    off, full = results["variants"]["off"], results["variants"]["full"]
    assert off["calls"] == full["calls"] == 30
    # a chat call through the daemon is millions of instructions; telemetry adds to them
    assert 1_000_000 < off["event_loop_per_call"] < full["event_loop_per_call"]
    assert full["spans_exported_in_window"] >= 16 and full["export_per_span"] > 0
    assert 3.5 < full["spans_per_call"] < 4.5  # SERVER, GenAI, HTTP, Redis
    assert results["telemetry_per_call_full"] == full["total_per_call"] - off["total_per_call"]
    # The budgets, held. The event loop's share (what a client waits for) repeats within 1 % even
    # over 30 calls. The daemon's own work came down from 5.8 M to 3.8 M instructions per call
    # in this count (3.73 M over the full run's 800 calls, issue 16's goal being 4.0 M), so 10 %
    # more than now fails here.
    assert off["event_loop_per_call"] < 4_200_000, results["variants"]
    # Telemetry added 40 % to the event loop in this count (5.31 M against 3.79 M) once histograms
    # were aggregated in the process and the provider transport made its own HTTP span (65 %
    # before), so a change that makes that share a fifth dearer fails: the SDK's histograms or
    # the httpx instrumentation's span back on the provider calls each fail here.
    added = full["event_loop_per_call"] / off["event_loop_per_call"] - 1
    assert added < 0.48, results["variants"]
    # Encoding a span straight to OTLP bytes (otel/otlp_encoding.py) took export from 621 k to
    # 412 k instructions per span in this count (150 k in the full run's 512-span batches): the
    # SDK's encoder back in place fails here.
    assert full["export_per_span"] < 500_000, results["variants"]
