"""bench/fleet_capacity.py runs end to end with tiny counts and writes the figures it promises.

Not a performance test: a few seconds per phase on a shared machine mean nothing; this only
proves the gateway, the load generator (token included), the real daemon and the report still fit
together. The published figures come from a full run (docs/scaling.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_reports_every_capacity_figure(tmp_path: Path) -> None:
    out, table = tmp_path / "capacity.json", tmp_path / "capacity.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench.fleet_capacity", "--quick", "--json", str(out),
         "--markdown", str(table)],
        capture_output=True, text=True, timeout=150, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["spans_per_call"]["failed"] == 0
    assert results["spans_per_call"]["spans_per_call"] >= 3  # server, GenAI, HTTP at least
    assert results["sustained"]["accepted_spans"] > 0 and results["sustained"]["send_errors"] == {}
    assert results["moderate"]["cpu_s_per_1000_spans"] > 0
    held = results["memory"]["held_traces"]
    assert held[-1] > held[0], held  # tail sampling held what was sent
    for row in results["daemons_per_gateway"]["by_call_rate"].values():
        assert row["daemons"] > 0, row
    assert "daemons per gateway" in table.read_text()
