"""Every PromQL query of every panel returns data from the live test stack.

The stack (tests/dashboards/live_stack.py) is the project's collector build with its real config,
Prometheus with the real rules, and the daemon under a load that includes failures. Each query
runs as Grafana runs a time-series panel: a range query over the last minutes, with the
dashboard's variables at their defaults. "Returns data" means at least one series with at least
one number (not NaN): a panel that would show "No data", or only gaps, fails.

Queries ending in ``or vector(0)`` show 0 when nothing failed; their expression without that
fallback must return data too, except the few failure counters listed in
CANNOT_PROVOKE (the collector retries forever, so its send/enqueue failure counters never appear
in a healthy run; the memory limiter and tail sampling count refusals and early drops only when
they happen). The series only an agent or a gateway produces (``names.FLEET_ONLY``) are not
required here: this stack runs one collector.
"""

from __future__ import annotations

import math
import time

import httpx
import pytest

from grafana.dashgen import names

from .live_stack import LiveStack, drive_load, live_stack, trickle
from .queries import Query, dashboard_queries, datasource_link_queries, variable_queries

CANNOT_PROVOKE = (
    "otelcol_exporter_send_failed_",
    "otelcol_exporter_enqueue_failed_",
    'ALERTS{alertstate="firing"}',
    "exai_supabase_outbox_dropped_total",
    "otelcol_processor_memory_limiter_refused_",
    names.TAIL_SAMPLING_DROPPED_TOO_EARLY,
)
WINDOW_S = 15 * 60
STEP_S = 5
DEADLINE_S = 240  # span metrics flush every second here; the margin absorbs a slow, shared machine



def _has_numbers(prom_url: str, expr: str) -> bool:
    now = time.time()
    reply = httpx.get(f"{prom_url}/api/v1/query_range", timeout=20, params={
        "query": expr, "start": now - WINDOW_S, "end": now, "step": STEP_S}).json()
    if reply.get("status") != "success":
        raise AssertionError(f"Prometheus rejected {expr!r}: {reply.get('error')}")
    return any(not math.isnan(float(value)) for series in reply["data"]["result"]
               for _ts, value in series["values"])


def _must_have_data(query: Query) -> list[str]:
    """The expressions of ``query`` that must return data."""
    if any(marker in query.text for marker in names.FLEET_ONLY):
        return []
    exprs = [query.text]
    if query.zero_fallback and not any(marker in query.primary for marker in CANNOT_PROVOKE):
        exprs.append(query.primary)
    return exprs


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> LiveStack:
    with live_stack(tmp_path_factory.mktemp("dashboards-live")) as running:
        drive_load(running)
        yield running


def _wait_for_all(stack: LiveStack, queries: list[Query]) -> dict[str, list[str]]:
    """Poll until every query has data or the deadline passes; return what still has none."""
    url = stack.prometheus.url
    missing: dict[str, list[str]] = {}
    deadline = time.monotonic() + DEADLINE_S
    while True:
        missing = {}
        for query in queries:
            empty = [expr for expr in _must_have_data(query) if not _has_numbers(url, expr)]
            if empty:
                missing[query.where] = empty
        if not missing or time.monotonic() > deadline:
            return missing
        trickle(stack)
        time.sleep(3)


def test_every_panel_promql_query_returns_data(stack):
    queries = [q for q in dashboard_queries() if q.language == "promql"]
    missing = _wait_for_all(stack, queries)
    assert not missing, "queries without data:\n" + "\n".join(
        f"{where}: {exprs}" for where, exprs in missing.items())
    proven = sum(len(_must_have_data(q)) for q in queries)
    print(f"\n{len(queries)} panel PromQL queries returned data ({proven} expressions)")


def test_every_variable_has_values(stack):
    url = stack.prometheus.url
    for query in variable_queries():
        series = httpx.get(f"{url}/api/v1/series", params={"match[]": query.text},
                           timeout=10).json()["data"]
        assert series, query.where


def test_traces_to_metrics_links_return_data(stack):
    queries = [q for q in datasource_link_queries() if q.language == "promql"]
    assert not _wait_for_all(stack, queries)
