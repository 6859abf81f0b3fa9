"""SIGTERM ends ``exai serve`` within ``EXAI_SHUTDOWN_TIMEOUT_SECS``, whatever the collector or the
clients do.

Docker sends SIGKILL 10 s after SIGTERM, and a process killed then loses everything it still
buffered without a word. Before the deadline existed, a collector that accepted connections but
never answered kept the daemon alive 42 s (three providers flushed one after the other, each
waiting its own export timeout), and one client that never read kept it 12.5 s. Each test here
runs the real ``exai serve`` process, sends SIGTERM to it alone (as Docker does) and prints the
measured exit time (``pytest -s`` shows it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app import __version__
from app.client import DaemonClient
from otel.instruments import create_instruments
from otel.setup import Batching, CountingExporter, CountingMetricExporter, Telemetry
from tests.harness.exai_process import EXAI, TOKEN, spawn_daemon
from tests.harness.fake_upstream import FakeUpstreamControl
from tests.harness.hanging_otlp import HangingEndpoint
from tests.harness.otlp_sink import OtlpSink
from tests.harness.procs import ManagedProcess, free_port

DEFAULT_DEADLINE_SECS = 8.0  # Settings.shutdown_timeout_secs
# From the deadline to the process being gone: writing the last console line and exiting.
EXIT_MARGIN_SECS = 1.5
WAIT_AT_MOST_SECS = 60.0  # long enough to measure the old behaviour instead of killing it
DROPPED = re.compile(r"telemetry: dropped (\d+) spans, (\d+) log records, metrics not flushed: "
                     r"collector did not answer within (\d+\.\d) s")
FLUSHED = re.compile(r"telemetry: flushed in (\d+\.\d) s")


def _serve(tmp_path: Path, upstream_port: int, collector: str, protocol: str,
           deadline_secs: float | None) -> tuple[ManagedProcess, str]:
    """``exai serve`` exporting to ``collector``; the default deadline unless one is given."""
    env = {
        "EXAI_RATE_LIMIT_PER_SEC": "10000",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        # Exports start while the calls run, so one is in flight (and hanging) at SIGTERM.
        "OTEL_BSP_SCHEDULE_DELAY": "500", "OTEL_BLRP_SCHEDULE_DELAY": "500",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
    }
    if deadline_secs is not None:
        env["EXAI_SHUTDOWN_TIMEOUT_SECS"] = str(deadline_secs)
    return spawn_daemon(tmp_path, upstream_port, **env)


def _loadgen(url: str, calls: int) -> None:
    done = subprocess.run([EXAI, "loadgen", "--url", url, "--calls", str(calls),
                           "--concurrency", "4", "--json"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "EXAI_WS_TOKEN": TOKEN})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["succeeded"] == calls


def _sigterm_and_time(daemon: ManagedProcess, case: str) -> float:
    """Seconds from SIGTERM, sent to the daemon alone as Docker does, until it has exited."""
    assert daemon.process is not None
    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    try:
        daemon.process.wait(timeout=WAIT_AT_MOST_SECS)
        elapsed = time.monotonic() - started
    except subprocess.TimeoutExpired:
        elapsed = float("inf")
    finally:
        daemon.stop()  # SIGKILL if it is still there
    print(f"\n[shutdown] {case}: exited {elapsed:.2f} s after SIGTERM")
    return elapsed


def _log(tmp_path: Path) -> str:
    return (tmp_path / "serve.log").read_text(errors="replace")


# --- the count, in process: what is dropped is counted, not guessed -----------------------------

class StuckSpanExporter(SpanExporter):
    """Takes a batch and does not return until released, like an export to a collector that
    never answers; shutting it down does not end the call in flight (neither does HTTP's)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait()
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


class RefusedSpanExporter(SpanExporter):
    """Fails every batch at once, like an export to a port nothing listens on."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


class FixedMetricExporter(MetricExporter):
    """Answers every collection with ``result``, after ``release`` is set."""

    def __init__(self, result: MetricExportResult, release: threading.Event) -> None:
        super().__init__()
        self.result = result
        self.release = release

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs) -> MetricExportResult:
        self.release.wait()
        return self.result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


def _telemetry(span_exporter: SpanExporter, metric_exporter: MetricExporter,
               batch_size: int) -> Telemetry:
    """A Telemetry built the way configure_telemetry builds it, on exporters the test controls
    and without touching the global providers, holding 25 ended spans and one metric. Nothing
    is exported on a schedule before the shutdown; a full batch is exported at once."""
    counting = CountingExporter(span_exporter, SpanExportResult)
    batching = Batching(BatchSpanProcessor(counting, max_export_batch_size=batch_size,
                                           schedule_delay_millis=60_000), counting.tally)
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(batching.processor)
    counting_metrics = CountingMetricExporter(metric_exporter)
    meter_provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(counting_metrics, 60_000)],
        shutdown_on_exit=False)
    meter_provider.get_meter("t").create_counter("calls").add(1)
    for number in range(25):
        tracer_provider.get_tracer("t").start_span(f"span {number}").end()
    return Telemetry(instruments=create_instruments(__version__, tracer_provider, meter_provider),
                     enabled=True, tracer_provider=tracer_provider, meter_provider=meter_provider,
                     logger_provider=LoggerProvider(shutdown_on_exit=False),
                     _span_batching=batching, _metric_tally=counting_metrics.tally)


def test_a_collector_that_never_answers_is_given_the_deadline_and_what_it_holds_is_counted():
    stuck, never = StuckSpanExporter(), threading.Event()
    telemetry = _telemetry(stuck, FixedMetricExporter(MetricExportResult.SUCCESS, never),
                           batch_size=10)
    started = time.monotonic()
    try:
        outcome = telemetry.shutdown(0.5)
    finally:
        stuck.release.set()
        never.set()
    assert time.monotonic() - started < 0.8
    assert outcome.timed_out and not outcome.metrics_flushed
    assert outcome.dropped_spans == 25  # 10 in the export that never returned, 15 queued
    assert outcome.summary() == ("telemetry: dropped 25 spans, 0 log records, metrics not "
                                 "flushed: collector did not answer within 0.5 s")
    assert telemetry.shutdown(0.5) is outcome, "a second shutdown reports the first"


def test_a_collector_that_refuses_is_counted_as_failed_exports_not_as_a_timeout():
    answered = threading.Event()
    answered.set()
    telemetry = _telemetry(RefusedSpanExporter(),
                           FixedMetricExporter(MetricExportResult.FAILURE, answered),
                           batch_size=512)
    outcome = telemetry.shutdown(5.0)
    assert not outcome.timed_out and outcome.seconds < 1.0
    assert outcome.dropped_spans == 25 and not outcome.metrics_flushed
    assert outcome.summary().startswith("telemetry: dropped 25 spans, 0 log records, metrics not "
                                        "flushed: export failed after ")


def test_a_collector_that_answers_gets_everything_and_one_short_line():
    answered = threading.Event()
    answered.set()
    spans = InMemorySpanExporter()
    telemetry = _telemetry(spans, FixedMetricExporter(MetricExportResult.SUCCESS, answered),
                           batch_size=10)
    outcome = telemetry.shutdown(5.0)
    assert outcome.complete and len(spans.get_finished_spans()) == 25
    assert FLUSHED.fullmatch(outcome.summary())


def test_the_backstop_ends_a_process_whose_exit_is_held():
    """What no deadline reaches (here a thread the interpreter joins at exit; a task that
    ignores its cancellation, an executor thread stuck in DNS) cannot keep the process past it."""
    code = ("import threading, time\n"
            "from app.daemon import exit_after\n"
            "threading.Thread(target=time.sleep, args=(60,)).start()\n"
            "exit_after(time.monotonic() + 0.5)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, cwd=Path(__file__).parents[2])
    assert done.returncode == 1, done.stderr
    assert "stopping took longer than the shutdown deadline: exiting now" in done.stderr


# --- (a) a collector that accepts and never answers --------------------------------------------

@pytest.mark.parametrize("protocol, speak_http2, deadline_secs", [
    ("http/protobuf", False, None),
    ("http/protobuf", False, 3.0),
    ("grpc", False, 3.0),   # never sends the HTTP/2 preface: the channel never gets READY
    ("grpc", True, None),   # READY, but the Export call never returns
], ids=["http-8s", "http-3s", "grpc-no-preface-3s", "grpc-no-answer-8s"])
def test_a_collector_that_never_answers_costs_the_deadline_not_more(
        tmp_path, fake_llm_process, protocol, speak_http2, deadline_secs):
    collector = HangingEndpoint(speak_http2=speak_http2).start()
    try:
        daemon, url = _serve(tmp_path, fake_llm_process.port, collector.endpoint, protocol,
                             deadline_secs)
        _loadgen(url, calls=40)
        time.sleep(1.0)  # the first batches are handed to the exporters, which now hang
        assert collector.connections >= 1, "the exporters reached the hanging collector"
        elapsed = _sigterm_and_time(daemon, f"hanging {protocol} collector, "
                                            f"speak_http2={speak_http2}, deadline "
                                            f"{deadline_secs or DEFAULT_DEADLINE_SECS} s")
    finally:
        collector.stop()
    deadline = deadline_secs or DEFAULT_DEADLINE_SECS
    log = _log(tmp_path)
    assert elapsed < deadline + EXIT_MARGIN_SECS, log[-3000:]
    dropped = DROPPED.search(log)
    assert dropped, log[-3000:]
    spans, log_records, waited = int(dropped[1]), int(dropped[2]), float(dropped[3])
    print(f"[shutdown] {dropped[0]}")
    assert spans >= 40, "every call's SERVER span at least was never delivered"
    assert log_records > 0
    assert 0 < waited <= deadline
    assert "Traceback" not in log


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_with_no_collector_listening_the_daemon_stops_at_once(tmp_path, fake_llm_process,
                                                                protocol):
    """A refused connection cannot take what is queued: nothing is waited for (before: the
    exporters retried until the whole 8 s deadline)."""
    closed = f"http://127.0.0.1:{free_port()}"
    daemon, url = _serve(tmp_path, fake_llm_process.port, closed, protocol, None)
    _loadgen(url, calls=40)
    elapsed = _sigterm_and_time(daemon, f"no {protocol} collector listening")
    log = _log(tmp_path)
    assert elapsed < 2.0, log[-3000:]
    assert "no collector accepted a connection" in log, log[-3000:]
    assert "Traceback" not in log


# --- (b) a client that never reads --------------------------------------------------------------

def _masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client-to-server WebSocket frame (RFC 6455 section 5.2): FIN, ``opcode``, masked."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    else:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _raw_session(port: int) -> socket.socket:
    """A socket past the WebSocket upgrade and the hello, with a small receive buffer: a client
    that can stop reading entirely, which no WebSocket library lets a test do."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)  # byte by byte: nothing after the headers is read
    assert response.startswith(b"HTTP/1.1 101"), response
    sock.sendall(_masked_frame(0x1, json.dumps({"op": "hello", "token": TOKEN}).encode()))
    return sock


def _flood_with_pings(sock: socket.socket, seconds: float) -> int:
    """Send pings and read none of the pongs, until the daemon's buffers to us are full."""
    ping = _masked_frame(0x1, json.dumps({"op": "ping", "request_id": "p" * 100}).encode())
    sock.settimeout(0.5)
    sent = 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        try:
            sock.sendall(ping * 50)
        except TimeoutError:
            break  # the daemon stopped reading us too: everything is backed up
        sent += 50
    return sent


def test_a_client_that_never_reads_does_not_hold_the_daemon(tmp_path, fake_llm_process):
    sink = OtlpSink().start()
    try:
        daemon, url = _serve(tmp_path, fake_llm_process.port, sink.endpoint, "http/protobuf",
                             None)
        sock = _raw_session(int(url.rsplit(":", 1)[1]))
        try:
            sent = _flood_with_pings(sock, seconds=3.0)
            assert sent > 0
            elapsed = _sigterm_and_time(daemon, f"client that never reads ({sent} pings unread)")
        finally:
            sock.close()
    finally:
        sink.stop()
    log = _log(tmp_path)
    assert elapsed < DEFAULT_DEADLINE_SECS + EXIT_MARGIN_SECS, log[-3000:]
    assert FLUSHED.search(log), log[-3000:]
    assert "Traceback" not in log


# --- (c) a call in flight -----------------------------------------------------------------------

async def test_a_call_in_flight_is_answered_or_closed_within_the_deadline(tmp_path,
                                                                           fake_llm_process):
    upstream = FakeUpstreamControl.on_port(fake_llm_process.port)
    sink = OtlpSink().start()
    await upstream.aconfig(latency_ms=30000)
    try:
        daemon, url = _serve(tmp_path, fake_llm_process.port, sink.endpoint, "http/protobuf",
                         None)
        client = await DaemonClient.connect(url, TOKEN)
        call = asyncio.create_task(client.call_tool("chat", {"prompt": "a slow answer"}))
        await asyncio.sleep(1.0)
        assert not call.done(), "the call is waiting for the upstream"
        started = time.monotonic()
        elapsed = await asyncio.to_thread(_sigterm_and_time, daemon, "chat call in flight")
        # The client is not left hanging: a reply, or a closed connection.
        outcome = await asyncio.wait_for(asyncio.gather(call, return_exceptions=True),
                                         timeout=DEFAULT_DEADLINE_SECS + EXIT_MARGIN_SECS)
        answered_after = time.monotonic() - started
        print(f"[shutdown] the client's call ended {answered_after:.2f} s after SIGTERM: "
              f"{outcome[0]!r}"[:300])
        await client.close()
    finally:
        await upstream.aconfig(latency_ms=0)
        sink.stop()
    log = _log(tmp_path)
    assert elapsed < DEFAULT_DEADLINE_SECS + EXIT_MARGIN_SECS, log[-3000:]
    assert answered_after < DEFAULT_DEADLINE_SECS + EXIT_MARGIN_SECS
    assert FLUSHED.search(log), log[-3000:]
    assert "Traceback" not in log
