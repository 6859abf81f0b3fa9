"""The daemon's own instrument definitions (otel/instruments.py), pushed through the real
collector, produce the Prometheus names the alert rules and dashboards use.

A rename on either side (instrument name or unit, collector translation, rule expression) fails
here instead of leaving an alert that can never fire.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from otel import names
from otel.instruments import create_instruments
from tests.harness.procs import wait_until

from .conftest import Stack
from .telemetry import unique_service

RULE_FILE = (Path(__file__).resolve().parents[2]
             / "backends" / "prometheus" / "rules" / "exai-alerts.yml")

# The series the pushed instruments below must produce, as the catalogue derives them; the
# collector's remote write (UnderscoreEscapingWithSuffixes) is the ground truth checked here.
PUSHED = (names.MCP_SERVER_OPERATION_DURATION, names.GEN_AI_CLIENT_OPERATION_DURATION,
          names.GEN_AI_CLIENT_TOKEN_USAGE, names.GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK,
          names.DB_CLIENT_OPERATION_DURATION, names.EXAI_GEN_AI_COST,
          names.EXAI_GEN_AI_UNPRICED_CALLS, names.EXAI_REJECTIONS,
          names.EXAI_CIRCUIT_BREAKER_STATE, names.EXAI_STORAGE_FALLBACK_ACTIVE)
EXPECTED_NAMES = {names.prometheus_name(name)
                  + ("_bucket" if names.METRICS[name].kind == "histogram" else "")
                  for name in PUSHED}


def _alert_expr(name: str) -> str:
    for group in yaml.safe_load(RULE_FILE.read_text())["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == name:
                return rule["expr"]
    raise KeyError(name)


@pytest.fixture(scope="module")
def pushed(stack: Stack) -> dict[str, str]:
    service = unique_service("names")
    provider_label = f"prov-{uuid.uuid4().hex[:6]}"
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=stack.collector.otlp_grpc, insecure=True),
        export_interval_millis=500)
    provider = MeterProvider(resource=Resource.create({"service.name": service}),
                             metric_readers=[reader])
    inst = create_instruments("0.0.0-test", meter_provider=provider)
    attrs = {names.GEN_AI_PROVIDER_NAME: provider_label}
    inst.operation_duration.record(0.2, {names.MCP_METHOD_NAME: "tools/call"})
    inst.genai_duration.record(1.3, attrs)
    inst.genai_tokens.record(120, {**attrs, names.GEN_AI_TOKEN_TYPE: "input"})
    inst.genai_ttfc.record(0.4, attrs)
    inst.genai_cost.add(0.002, attrs)
    inst.genai_unpriced.add(1, attrs)
    inst.rejections.add(1, {names.EXAI_REJECTION_REASON: "rate_limited"})
    inst.db_duration.record(0.003, {names.DB_SYSTEM_NAME: "redis"})
    # The two gauges the alerts watch, registered exactly as the daemon registers them.
    inst.observe_gauge(names.EXAI_CIRCUIT_BREAKER_STATE, lambda: [(2.0, attrs)])
    inst.observe_gauge(names.EXAI_STORAGE_FALLBACK_ACTIVE,
                       lambda: [(1.0, {names.EXAI_STORAGE_BACKEND: "redis"})])
    prom = stack.prometheus
    try:
        wait_until(lambda: EXPECTED_NAMES <= set(prom.series_names(f'{{job="{service}"}}')),
                   timeout=60, what="the daemon's metrics in Prometheus", interval=0.5)
        observed = prom.series_names(f'{{job="{service}"}}')
    finally:
        provider.shutdown()
    print(f"\nMEASURED daemon metric names in Prometheus: {observed}")
    return {"service": service, "provider": provider_label, "names": " ".join(observed)}


def test_histograms_and_counters_get_unit_suffixes(pushed: dict[str, str]) -> None:
    assert EXPECTED_NAMES <= set(pushed["names"].split())


def test_circuit_open_rule_matches_the_daemon_gauge(stack: Stack, pushed: dict[str, str]) -> None:
    result = stack.prometheus.query(_alert_expr("ExaiProviderCircuitOpen"))
    assert pushed["provider"] in {r["metric"].get("gen_ai_provider_name") for r in result}


def test_storage_fallback_rule_matches_the_daemon_gauge(stack: Stack,
                                                        pushed: dict[str, str]) -> None:
    result = stack.prometheus.query(_alert_expr("ExaiStorageFallbackActive"))
    assert pushed["service"] in {r["metric"].get("job") for r in result}
