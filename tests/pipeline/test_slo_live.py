"""The fast-burn page, live: provider failures through the real daemon, collector, Prometheus
(running the generated SLO rules) and Alertmanager reach the webhook with their runbook link.

It has its own collector, Prometheus and Alertmanager (sharing only the Tempo/Loki stand-ins),
because the SLOs are counted over every daemon a Prometheus sees: other tests' failures in the
shared stack would page too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.client import DaemonClient
from slo import load
from tests.harness.alertmanager import WebhookReceiver, alertmanager
from tests.harness.collector import Collector, main_collector
from tests.harness.exai_process import TOKEN, spawn_daemon, spawn_fake_llm
from tests.harness.fake_upstream import FakeUpstreamControl
from tests.harness.procs import ManagedProcess, wait_until
from tests.harness.prometheus import Prometheus, prometheus

from .conftest import Stack

PAGE = "ExaiToolAvailabilityBurnRatePage"
CALLS = 40  # one call in two fails: 100x the 0.5 % budget
ERROR_RATIO = 'slo:sli_error:ratio_rate5m{slo="tool-availability"}'


@dataclass
class SloStack:
    url: str
    upstream: FakeUpstreamControl
    prometheus: Prometheus
    webhook: WebhookReceiver


@pytest.fixture(scope="module")
def slo_stack(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SloStack]:
    root: Path = tmp_path_factory.mktemp("slo-live")
    webhook = WebhookReceiver().start()
    am = alertmanager(root / "alertmanager", webhook.url)
    prom = prometheus(root / "prometheus", alertmanager=am.address, fast=True)
    collector: Collector = main_collector(
        root / "otelcol", tempo_grpc=stack.tempo.grpc_endpoint, loki_http=stack.loki.loki_endpoint,
        remote_write_url=prom.remote_write_url)
    started: list[ManagedProcess] = []
    fake = daemon = None
    try:
        for proc in (am.proc, prom.proc, collector.proc):
            proc.start()
            started.append(proc)
        fake, llm_port = spawn_fake_llm(root)
        daemon, url = spawn_daemon(
            root, llm_port, OTEL_EXPORTER_OTLP_ENDPOINT=collector.otlp_grpc,
            OTEL_EXPORTER_OTLP_PROTOCOL="grpc", OTEL_METRIC_EXPORT_INTERVAL="1000",
            EXAI_PROVIDER_MAX_RETRIES="0", EXAI_CIRCUIT_FAILURE_THRESHOLD="1000")
        yield SloStack(url, FakeUpstreamControl(f"http://127.0.0.1:{llm_port}"), prom, webhook)
    finally:
        for proc in (daemon, fake, *reversed(started)):
            if proc is not None:
                proc.stop(timeout=30)
        webhook.stop()


async def _burst(stack: SloStack) -> None:
    """Alternate successes and provider 500s over a few seconds, so Prometheus sees the counters
    rise (rate() does not count what a series held when it first appeared)."""
    client = await DaemonClient.connect(stack.url, TOKEN)
    try:
        for number in range(CALLS):
            if number % 2:
                stack.upstream.faults(500, 1)
            reply = await client.call_tool("chat", {"prompt": f"call {number}"})
            assert reply["ok"] is not bool(number % 2), reply
            await asyncio.sleep(0.15)
    finally:
        await client.close()


def test_a_fast_burn_pages_with_its_runbook(slo_stack: SloStack) -> None:
    started = time.monotonic()
    asyncio.run(_burst(slo_stack))
    wait_until(lambda: (slo_stack.prometheus.scalar(ERROR_RATIO) or 0) > 0.072, timeout=60,
               what="the 5m error ratio over the fast-burn threshold", interval=0.5)
    ratio = slo_stack.prometheus.scalar(ERROR_RATIO)

    def paged() -> list[dict]:
        return [alert for _, status, alert in slo_stack.webhook.alerts(PAGE)
                if status == "firing"]
    wait_until(lambda: bool(paged()), timeout=240, what=f"{PAGE} at the webhook", interval=1)
    took = time.monotonic() - started
    alert = paged()[0]
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["slo"] == "tool-availability"
    assert alert["annotations"]["runbook_url"] == load().runbook_url(PAGE)
    assert alert["annotations"]["dashboard_url"].startswith(load().grafana_url)
    print(f"\nMEASURED fast burn: {CALLS} calls, half failing; 5m error ratio {ratio:.2f}; "
          f"page at the webhook {took:.0f}s after the burst began (rule for: 2m)")
