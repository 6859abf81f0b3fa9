"""RED metrics from 100 % of spans while traces are tail-sampled, proven with counts.

N synthetic SERVER spans ``tools/call chat`` (a fixed set failing, a few slow) go through the real
collector. Prometheus must count exactly N calls and exactly the failures; the Tempo stand-in must
hold every error trace, every slow trace, and about the configured share of the rest; exemplars in
Prometheus must point at traces that exist.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from tests.harness.procs import wait_until

from .conftest import SAMPLE_PERCENT, Stack
from .telemetry import SentSpan, send_tool_calls, unique_service

N = 200
ERRORS = {i for i in range(N) if i % 5 == 0}  # 40 failures
SLOW = {i for i in range(N) if i % 20 == 3}  # 10 successful calls over the latency threshold


@dataclass
class Run:
    service: str
    sent: list[SentSpan]
    started: float


@pytest.fixture(scope="module")
def run(stack: Stack) -> Run:
    service = unique_service("red")
    started = time.monotonic()
    sent = send_tool_calls(stack.collector.otlp_grpc, service, n=N, errors=ERRORS, slow=SLOW)
    return Run(service, sent, started)


ERROR_STATUS = ',status_code="STATUS_CODE_ERROR"'
LE_1S = ',le="1"'


def _selector(run: Run, extra: str = "") -> str:
    return f'{{service_name="{run.service}",span_name="tools/call chat"{extra}}}'


def test_span_metrics_count_every_call_and_every_error(stack: Stack, run: Run) -> None:
    prom = stack.prometheus
    calls = f"sum(traces_span_metrics_calls_total{_selector(run)})"
    wait_until(lambda: prom.scalar(calls) == N, timeout=90, what=f"{calls} == {N}", interval=0.5)
    elapsed = time.monotonic() - run.started
    errors = prom.scalar(
        f"sum(traces_span_metrics_calls_total{_selector(run, ERROR_STATUS)})")
    assert errors == len(ERRORS)
    count = prom.scalar(f"sum(traces_span_metrics_duration_seconds_count{_selector(run)})")
    assert count == N
    # Histogram in seconds: the slow calls (1.5 s) sit above the 1 s bucket, everything else below.
    above_1s = prom.scalar(
        f'sum(traces_span_metrics_duration_seconds_count{_selector(run)}) - '
        f"sum(traces_span_metrics_duration_seconds_bucket{_selector(run, LE_1S)})")
    assert above_1s == len(SLOW)
    labels = prom.query(f"traces_span_metrics_calls_total{_selector(run)}")[0]["metric"]
    assert labels["gen_ai_tool_name"] == "chat" and labels["mcp_method_name"] == "tools/call"
    assert labels["span_kind"] == "SPAN_KIND_SERVER"
    names = prom.series_names(f'{{service_name="{run.service}"}}')
    print(f"\nMEASURED span metrics: calls={N} errors={errors} seen in Prometheus after "
          f"{elapsed:.1f}s; series names {names}; labels {labels}")


def _sampled_ids(stack: Stack, run: Run) -> set[str]:
    return {s["traceId"] for s in stack.tempo.spans()
            if s["resource"].get("service.name") == run.service}


def test_tail_sampling_keeps_errors_slow_and_a_share_of_the_rest(stack: Stack, run: Run) -> None:
    must_keep = {s.trace_id for s in run.sent if s.error or s.slow}
    wait_until(lambda: must_keep <= _sampled_ids(stack, run), timeout=90,
               what="every error and slow trace at the Tempo stand-in", interval=0.5)
    time.sleep(4)  # decisions for one burst land together; allow the last batch to flush
    kept = _sampled_ids(stack, run)
    sent_ids = {s.trace_id for s in run.sent}
    assert kept <= sent_ids
    rest = [s for s in run.sent if not s.error and not s.slow]
    kept_rest = [s for s in rest if s.trace_id in kept]
    share = len(kept_rest) / len(rest)
    # Binomial(150, 0.25): mean 25 %, sd 3.5 %; the band is about +-4 sd.
    expected = SAMPLE_PERCENT / 100
    assert expected - 0.14 <= share <= expected + 0.14, f"sampled share {share:.2%}"
    print(f"\nMEASURED tail sampling: sent={N} errors={len(ERRORS)} slow={len(SLOW)} "
          f"ok={len(rest)}; Tempo got {len(kept)} traces: all {len(must_keep)} error/slow + "
          f"{len(kept_rest)}/{len(rest)} others = {share:.1%} (configured {SAMPLE_PERCENT}%)")


def test_exemplars_point_at_traces_in_tempo(stack: Stack, run: Run) -> None:
    prom = stack.prometheus
    query = f'traces_span_metrics_duration_seconds_bucket{_selector(run)}'
    wait_until(lambda: prom.exemplars(query), timeout=90, what="exemplars in Prometheus")
    must_keep = {s.trace_id for s in run.sent if s.error or s.slow}
    wait_until(lambda: must_keep <= _sampled_ids(stack, run), timeout=90,
               what="error and slow traces at the Tempo stand-in")
    time.sleep(3)
    in_tempo = _sampled_ids(stack, run)
    sent_ids = {s.trace_id for s in run.sent}
    total = error_total = linked = 0
    for series in prom.exemplars(query):
        error_series = series["seriesLabels"].get("status_code") == "STATUS_CODE_ERROR"
        for exemplar in series["exemplars"]:
            trace_id = exemplar["labels"]["trace_id"]
            total += 1
            assert trace_id in sent_ids
            linked += trace_id in in_tempo
            if error_series:
                error_total += 1
                assert trace_id in in_tempo, "an error exemplar links to a trace Tempo lacks"
    assert error_total > 0 and linked >= error_total
    print(f"\nMEASURED exemplars: {total} on the duration histogram, {error_total} on error "
          f"series (all in Tempo), {linked}/{total} link to a stored trace")
