"""Session fixtures for the pipeline tests: real processes on loopback, started once.

stack: Tempo stand-in and Loki stand-in (the built collector writing to files), Alertmanager with
loopback webhook, Slack-compatible and SMTP receivers, Prometheus (Debian 2.42) with the project's
config and rules, and the main collector running collector-config/config.yaml pointing at all of
them.
Tests isolate themselves by service.name, so they may share the stack in any order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.alertmanager import (
    Alertmanager,
    SlackReceiver,
    SMTPReceiver,
    WebhookReceiver,
    alertmanager,
)
from tests.harness.collector import Collector, StandIn, collector_binary, main_collector, standin
from tests.harness.procs import free_port
from tests.harness.prometheus import Prometheus, prometheus

# Sampling share of successful traces used by the live stack (the compose default is 10).
SAMPLE_PERCENT = 25
SLOW_THRESHOLD_MS = 1000


@dataclass
class Stack:
    collector: Collector
    tempo: StandIn
    loki: StandIn
    prometheus: Prometheus
    alertmanager: Alertmanager
    webhook: WebhookReceiver
    slack: SlackReceiver
    smtp: SMTPReceiver


@pytest.fixture(scope="session")
def otelcol_bin() -> str:
    return collector_binary()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, otelcol_bin: str) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("pipeline")
    webhook = WebhookReceiver().start()
    slack = SlackReceiver().start()
    smtp = SMTPReceiver().start()
    tempo = standin(root / "tempo")
    loki = standin(root / "loki")
    am = alertmanager(root / "alertmanager", webhook.url, slack=slack, smtp=smtp)
    telemetry_port = free_port()
    prom = prometheus(root / "prometheus", collector_metrics=f"127.0.0.1:{telemetry_port}",
                      alertmanager=am.address, fast=True)
    collector = main_collector(
        root / "otelcol", tempo_grpc=tempo.grpc_endpoint, loki_http=loki.loki_endpoint,
        remote_write_url=prom.remote_write_url, telemetry_port=telemetry_port,
        extra_env={"EXAI_TRACE_SAMPLE_PERCENT": str(SAMPLE_PERCENT),
                   "EXAI_TRACE_SLOW_THRESHOLD_MS": str(SLOW_THRESHOLD_MS)},
    )
    started = []
    try:
        for proc in (tempo.proc, loki.proc, am.proc, prom.proc, collector.proc):
            proc.start()
            started.append(proc)
        yield Stack(collector, tempo, loki, prom, am, webhook, slack, smtp)
    finally:
        for proc in reversed(started):
            proc.stop(timeout=30)
        for receiver in (webhook, slack, smtp):
            receiver.stop()
