"""bench/overhead.py runs end to end with tiny counts and writes the JSON it promises.

Not a performance test: the figures of a one-second window on a shared machine mean nothing;
this only proves the program, its processes and its report still work (well under a minute).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_with_tiny_counts_writes_the_ratios(tmp_path):
    out = tmp_path / "overhead.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.overhead", "--quick", "--rounds", "1",
         "--window", "0.7", "--warmup", "0.2", "--clients", "2", "--json", str(out),
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=110, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    for point in ("worst", "realistic"):
        data = results[point]
        for key in ("throughput_ratio_full_vs_off", "p50_ratio_full_vs_off",
                    "throughput_ratio_peer_vs_off", "p50_ratio_peer_vs_off"):
            assert data[key] > 0, (point, key, data)
        for variant in ("off", "full", "peer", "limit"):
            row = data["variants"][variant]
            assert row["calls"] > 0 and row["errors"] == 0, (point, variant, row)
    volume = results["telemetry_per_call"]
    # full emits its own spans (server, GenAI) on top of the peer's library spans (httpx, redis)
    assert volume["full"]["spans"] > volume["peer"]["spans"] > 0, volume


def test_the_tables_of_a_run_without_off_show_no_ratio():
    """``--variants full --profile DIR`` (a profile, nothing to compare) used to end in a
    KeyError on the missing ratios after the whole run."""
    from bench.overhead import markdown_table

    row = {"calls_per_sec": 500.0, "p50_ms": 12.5, "p99_ms": 40.0, "cpu_ms_per_call": 1.9,
           "collector_cpu_ms_per_call": 0.1, "calls": 1000, "errors": 0}
    table = markdown_table({"worst": {"upstream_latency_ms": 0, "rounds": 1,
                                      "variants": {"full": row}}})
    assert "| full | 500 | 12.50 | 40.00 | 1.900 | 0.100 | - | - |" in table
    with_off = markdown_table({"worst": {
        "upstream_latency_ms": 0, "rounds": 1, "variants": {"off": row, "full": row},
        "spread": {"full": {name: {"median": 1.0, "min": 0.9, "max": 1.1}
                            for name in ("throughput_ratio", "p50_ratio", "p99_ratio")}}}})
    assert "| full | 500 | 12.50 | 40.00 | 1.900 | 0.100 | 1.000 (0.900-1.100) |" in with_off
