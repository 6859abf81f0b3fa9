"""Backend outages lose nothing: spans sent while the Tempo stand-in is down wait in the
collector's file-backed sending queue and all arrive when it returns, also when the collector
itself is restarted in between."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.collector import Collector, StandIn, main_collector, standin
from tests.harness.procs import wait_until

from .conftest import Stack
from .telemetry import send_tool_calls, unique_service

QUEUE = "otelcol_exporter_queue_size"
TEMPO_EXPORTER = "otlp_grpc/tempo"
M = 40


@dataclass
class Outage:
    collector: Collector
    tempo: StandIn


@pytest.fixture(scope="module")
def outage(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    """Its own collector and Tempo stand-in (100 % sampling), so stopping them disturbs no one."""
    root: Path = tmp_path_factory.mktemp("outage")
    tempo = standin(root / "tempo")
    collector = main_collector(
        root / "otelcol", tempo_grpc=tempo.grpc_endpoint, loki_http=tempo.loki_endpoint,
        remote_write_url=stack.prometheus.remote_write_url,
        extra_env={"EXAI_TRACE_SAMPLE_PERCENT": "100"},
    )
    tempo.proc.start()
    collector.proc.start()
    try:
        yield Outage(collector, tempo)
    finally:
        collector.proc.stop(timeout=30)
        tempo.proc.stop()


def _arrived(outage: Outage, service: str) -> set[str]:
    return {s["traceId"] for s in outage.tempo.spans()
            if s["resource"].get("service.name") == service}


def _queue(outage: Outage) -> float:
    return outage.collector.self_metric(QUEUE, exporter=TEMPO_EXPORTER)


def _send_while_down(outage: Outage, service: str) -> set[str]:
    outage.tempo.proc.stop()
    sent = send_tool_calls(outage.collector.otlp_grpc, service, n=M, errors=set())
    wait_until(lambda: _queue(outage) > 0, timeout=30, what="spans waiting in the Tempo queue")
    time.sleep(3)  # the tail-sampling decision wait (2 s) passes for the whole burst
    assert not _arrived(outage, service)
    return {s.trace_id for s in sent}


def _bring_tempo_back(outage: Outage, service: str, sent: set[str]) -> float:
    """Start the Tempo stand-in again; seconds until every trace in ``sent`` arrived."""
    outage.tempo.proc.start()
    back = time.monotonic()
    wait_until(lambda: _arrived(outage, service) == sent, timeout=60,
               what=f"all {M} traces after Tempo returned", interval=0.5)
    return time.monotonic() - back


def test_tempo_outage_queues_and_delivers_everything(outage: Outage) -> None:
    service = unique_service("outage")
    sent = _send_while_down(outage, service)
    queued = _queue(outage)
    took = _bring_tempo_back(outage, service, sent)
    print(f"\nMEASURED outage: {M} traces queued ({queued:.0f} requests) while Tempo was down, "
          f"all delivered {took:.1f}s after it returned")
    wait_until(lambda: _queue(outage) == 0, timeout=30, what="queue drained")


def test_queue_survives_a_collector_restart(outage: Outage) -> None:
    service = unique_service("restart")
    sent = _send_while_down(outage, service)
    outage.collector.proc.stop(timeout=30)
    outage.collector.proc.start()
    assert _queue(outage) > 0, "the persistent queue came back empty"
    took = _bring_tempo_back(outage, service, sent)
    print(f"\nMEASURED restart: {M} traces queued, collector restarted, all delivered "
          f"{took:.1f}s after Tempo returned")
