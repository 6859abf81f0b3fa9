"""Prometheus scrapes the collector's self-metrics through the file_sd targets of the real
prometheus.yml, and the series the collector-health alerts need are there."""

from __future__ import annotations

from tests.harness.procs import wait_until

from .conftest import Stack


def test_prometheus_scrapes_the_collector(stack: Stack) -> None:
    prom = stack.prometheus
    wait_until(lambda: prom.target_health("otel-collector") == ["up"], timeout=30,
               what="the otel-collector target up")
    capacity = 'otelcol_exporter_queue_capacity{job="otel-collector",exporter="otlp_grpc/tempo"}'
    wait_until(lambda: prom.scalar(capacity) == 5000, timeout=30, what=f"{capacity} == 5000")
    for exporter in ("otlp_grpc/tempo", "otlp_http/loki", "prometheus_remote_write",
                     "prometheus_remote_write/span_metrics"):
        assert prom.query(f'otelcol_exporter_queue_size{{exporter="{exporter}"}}'), exporter
    # The queue-fullness expression of CollectorQueueNearlyFull evaluates (to a low value).
    ratio = prom.query(
        'max by (exporter) (otelcol_exporter_queue_size / otelcol_exporter_queue_capacity)')
    assert ratio and all(float(r["value"][1]) < 0.8 for r in ratio)
    names = set(prom.series_names(
        '{job="otel-collector",__name__=~"otelcol_(receiver|exporter)_.*"}'))
    print(f"\nMEASURED collector self-metric names: {sorted(names)}")
    assert any(n.startswith("otelcol_receiver_accepted_") for n in names), names


def test_no_collector_alert_fires_on_a_healthy_stack(stack: Stack) -> None:
    firing = {a["labels"]["alertname"] for a in stack.prometheus.alerts() if a["state"] == "firing"}
    assert not firing & {"CollectorDown", "CollectorQueueNearlyFull", "CollectorEnqueueFailed"}
