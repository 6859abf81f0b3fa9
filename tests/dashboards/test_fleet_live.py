"""The fleet panels and alerts against a live fleet: two daemons, one agent, two authenticated
gateways (tests/harness/fleet.py, the role files compose runs).

test_live.py's stack has one collector, so it cannot produce what only an agent or a gateway does
(``names.FLEET_ONLY``: the loadbalancing exporter's series, the tokens a gateway refuses). Here
those queries must return data, the instance variable must tell the two daemons apart, no
span-metric query may show one gateway's series on its own, and the fleet alerts' expressions
must name the gateway or daemon they are about.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import yaml

from grafana.dashgen import names
from grafana.dashgen.runbooks import RULES_DIR
from tests.harness.exai_process import TOKEN
from tests.harness.fleet import Fleet, fleet
from tests.harness.procs import LOOPBACK

from .queries import Query, dashboard_queries, variable_queries
from .test_live import _has_numbers

DEADLINE_S = 240
PER_GATEWAY = "collector-tier.json / Tool calls counted per gateway / A"
MODEL = "glm-4.5-flash"


async def _calls(url: str, calls: int) -> None:
    from app.loadgen import LoadPlan, run_load

    await run_load(url, TOKEN, LoadPlan(calls=calls, concurrency=2, sessions=1, retry=False,
                                        models=(MODEL,)))


def _unauthenticated(live: Fleet) -> None:
    """An OTLP/HTTP request without a token to the first gateway, an OTLP/gRPC export without
    one to the last: both must be refused (401 / UNAUTHENTICATED)."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    first, last = live.gateways[0].collector, live.gateways[-1].collector
    reply = httpx.post(f"{first.otlp_http}/v1/traces", json={}, timeout=5)
    assert reply.status_code == 401, reply.status_code
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=f"{LOOPBACK}:{last.grpc_port}", insecure=True, timeout=3)))
    with provider.get_tracer("unauthenticated").start_as_current_span("refused"):
        pass
    provider.shutdown()


def _traffic(live: Fleet, calls: int) -> None:
    for daemon in live.daemons:
        asyncio.run(_calls(daemon.url, calls))
    _unauthenticated(live)


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Fleet:
    with fleet(tmp_path_factory.mktemp("dashboards-fleet"), daemons=2, agents=1,
               gateways=2) as running:
        _traffic(running, 30)
        yield running


def _wait(live: Fleet, ready) -> None:  # noqa: ANN001 - a predicate on nothing
    deadline = time.monotonic() + DEADLINE_S
    while not ready():
        assert time.monotonic() < deadline, "the fleet's series never arrived"
        _traffic(live, 4)
        time.sleep(3)


def test_the_fleet_only_queries_return_data(live: Fleet) -> None:
    fleet_only = [q for q in dashboard_queries()
                  if q.language == "promql" and any(m in q.text for m in names.FLEET_ONLY)]
    assert len(fleet_only) >= 4
    url = live.prometheus.url

    def missing() -> list[str]:
        return [q.where for q in fleet_only if not _has_numbers(url, q.primary)]

    _wait(live, lambda: not missing())


def test_the_instance_variable_tells_the_daemons_apart(live: Fleet) -> None:
    wanted = {d.instance_id for d in live.daemons}
    (variable,) = [q for q in variable_queries() if q.where == "overview.json / $instance"]
    (per_instance,) = [q for q in dashboard_queries()
                       if q.where == "overview.json / Tool calls per second by instance / A"]

    def both() -> bool:
        listed = {s.get("instance") for s in httpx.get(
            f"{live.prometheus.url}/api/v1/series", params={"match[]": variable.text},
            timeout=10).json()["data"]}
        shown = {r["metric"].get("instance") for r in live.prometheus.query(per_instance.text)}
        return wanted <= listed and wanted <= shown

    _wait(live, both)


def _span_metric_queries() -> list[Query]:
    return [q for q in dashboard_queries() if q.language == "promql"
            and names.SPAN_CALLS.removesuffix("_calls_total") in q.text]


def test_span_metric_queries_add_the_gateways_up(live: Fleet) -> None:
    (per_gateway,) = [q for q in _span_metric_queries() if q.where == PER_GATEWAY]
    gateways = {g.instance_id for g in live.gateways}
    _wait(live, lambda: {r["metric"].get(names.COLLECTOR_INSTANCE_LABEL)
                         for r in live.prometheus.query(per_gateway.text)} == gateways)
    kept = {q.where for q in _span_metric_queries() if q.where != PER_GATEWAY
            for r in live.prometheus.query(q.primary)
            if names.COLLECTOR_INSTANCE_LABEL in r["metric"]}
    assert not kept, f"span-metric queries showing one gateway's series: {kept}"


def _rule(alert: str) -> str:
    return next(rule["expr"] for path in sorted(RULES_DIR.glob("*.yml"))
                for group in yaml.safe_load(path.read_text())["groups"]
                for rule in group["rules"] if rule.get("alert") == alert)


def test_the_fleet_alerts_name_the_collector_and_role(live: Fleet) -> None:
    expr = _rule("CollectorUnauthenticatedRequests")
    gateways = {f"{LOOPBACK}:{g.collector.telemetry_port}" for g in live.gateways}

    def named() -> set[tuple[str, str]]:
        return {(r["metric"].get("instance", ""), r["metric"].get(names.COLLECTOR_ROLE_LABEL, ""))
                for r in live.prometheus.query(expr)}

    _wait(live, lambda: named() == {(g, "gateway") for g in gateways})
    for quiet in ("CollectorGatewayDown", "CollectorDown", "CollectorAgentCannotExport",
                  "ExaiDaemonInstanceAbsent"):
        assert live.prometheus.query(_rule(quiet)) == [], quiet
