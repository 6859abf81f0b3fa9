"""The daemon's pre-aggregated histograms export what the SDK's own histogram exports.

Each test records the same measurements into ``otel.instruments.histogram`` on one provider and
into the SDK's synchronous histogram on another, and compares the collected points field by field.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
from opentelemetry.sdk.metrics import Histogram as SdkHistogramApi
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal.exemplar import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, use_span

from otel import histograms, names
from otel.histograms import PreAggregatedHistogram
from otel.instruments import histogram

NAME = names.GEN_AI_CLIENT_OPERATION_DURATION
METRIC = names.METRICS[NAME]
CHAT = {names.GEN_AI_OPERATION_NAME: "chat", names.GEN_AI_PROVIDER_NAME: "moonshot",
        names.SERVER_PORT: 443}
GLM = {names.GEN_AI_OPERATION_NAME: "chat", names.GEN_AI_PROVIDER_NAME: "zhipu"}
VALUES = [0.0, 0.004, 0.05, 0.05, 0.3, 2.0, 7.5, 1e6]


def _pair(**provider_args: Any) -> tuple[Any, Any, InMemoryMetricReader, InMemoryMetricReader]:
    """(ours, the SDK's) with a reader each, built alike."""
    ours_reader = InMemoryMetricReader(**provider_args.pop("reader_args", {}))
    sdk_reader = InMemoryMetricReader(**provider_args.pop("sdk_reader_args", {}))
    ours = histogram(MeterProvider(metric_readers=[ours_reader], **provider_args).get_meter("t"),
                     NAME)
    sdk = MeterProvider(metric_readers=[sdk_reader], **provider_args).get_meter("t") \
        .create_histogram(NAME, unit=METRIC.unit, description=METRIC.description,
                          explicit_bucket_boundaries_advisory=list(METRIC.buckets or ()))
    return ours, sdk, ours_reader, sdk_reader


def _points(reader: InMemoryMetricReader) -> dict[frozenset, Any]:
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {frozenset((point.attributes or {}).items()): point
            for resource in data.resource_metrics for scope in resource.scope_metrics
            for metric in scope.metrics if metric.name == NAME
            for point in metric.data.data_points}


def _metric(reader: InMemoryMetricReader) -> Any:
    data = reader.get_metrics_data()
    assert data is not None
    [metric] = [m for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics]
    return metric


def _same(ours: HistogramDataPoint, sdk: HistogramDataPoint) -> None:
    for field in ("attributes", "count", "sum", "bucket_counts", "explicit_bounds", "min", "max"):
        assert getattr(ours, field) == getattr(sdk, field), field
    assert [(e.value, e.trace_id, e.span_id, e.filtered_attributes or {}) for e in ours.exemplars] \
        == [(e.value, e.trace_id, e.span_id, e.filtered_attributes or {}) for e in sdk.exemplars]


def _sampled(trace_id: int, span_id: int, sampled: bool = True) -> NonRecordingSpan:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags))


def test_an_sdk_meter_gets_the_pre_aggregated_histogram_with_the_catalogue_entry():
    ours, _sdk, reader, _ = _pair()
    assert isinstance(ours, PreAggregatedHistogram)
    ours.record(0.2, CHAT)
    metric = _metric(reader)
    assert (metric.name, metric.unit, metric.description) == (NAME, METRIC.unit,
                                                              METRIC.description)
    assert metric.data.aggregation_temporality is AggregationTemporality.CUMULATIVE
    assert list(metric.data.data_points[0].explicit_bounds) == list(METRIC.buckets or ())


def test_cumulative_points_equal_the_sdks_across_collections():
    ours, sdk, ours_reader, sdk_reader = _pair()
    for round_values in (VALUES, VALUES[:3]):
        for value in round_values:
            for attributes in (CHAT, GLM, None):
                ours.record(value, attributes)
                sdk.record(value, attributes)
        ours_points, sdk_points = _points(ours_reader), _points(sdk_reader)
        assert ours_points.keys() == sdk_points.keys() and len(ours_points) == 3
        for key, point in sdk_points.items():
            _same(ours_points[key], point)
    assert ours_points[frozenset(CHAT.items())].count == len(VALUES) + 3


def test_delta_points_start_again_after_each_collection():
    delta = {"preferred_temporality": {SdkHistogramApi: AggregationTemporality.DELTA}}
    ours, sdk, ours_reader, sdk_reader = _pair(reader_args=delta, sdk_reader_args=delta)
    for value in VALUES:
        ours.record(value, CHAT)
        sdk.record(value, CHAT)
    first = _points(ours_reader)
    _same(first[frozenset(CHAT.items())], _points(sdk_reader)[frozenset(CHAT.items())])
    ours.record(3.0, CHAT)
    sdk.record(3.0, CHAT)
    second, sdk_second = _points(ours_reader), _points(sdk_reader)
    _same(second[frozenset(CHAT.items())], sdk_second[frozenset(CHAT.items())])
    point = second[frozenset(CHAT.items())]
    assert (point.count, point.min, point.max) == (1, 3.0, 3.0)
    assert point.start_time_unix_nano == first[frozenset(CHAT.items())].time_unix_nano
    assert _points(ours_reader) == {} == _points(sdk_reader)  # nothing recorded since


def test_exemplars_follow_the_trace_based_filter_and_are_cleared_at_collection():
    ours, sdk, ours_reader, sdk_reader = _pair()
    with use_span(_sampled(0xA1, 0xB1)):
        for value in (0.05, 0.06, 5.0):  # two in one bucket: the last one is kept
            ours.record(value, CHAT)
            sdk.record(value, CHAT)
    with use_span(_sampled(0xA2, 0xB2, sampled=False)):
        ours.record(0.5, CHAT)
        sdk.record(0.5, CHAT)
    ours.record(0.7, CHAT)  # no span at all
    sdk.record(0.7, CHAT)
    point = _points(ours_reader)[frozenset(CHAT.items())]
    _same(point, _points(sdk_reader)[frozenset(CHAT.items())])
    assert [(e.value, e.trace_id, e.span_id) for e in point.exemplars] == [
        (0.06, 0xA1, 0xB1), (5.0, 0xA1, 0xB1)]
    assert _points(ours_reader)[frozenset(CHAT.items())].exemplars == []


@pytest.mark.parametrize("exemplar_filter", [AlwaysOnExemplarFilter(), AlwaysOffExemplarFilter()])
def test_the_providers_exemplar_filter_is_obeyed(exemplar_filter: Any) -> None:
    ours, sdk, ours_reader, sdk_reader = _pair(exemplar_filter=exemplar_filter)
    with use_span(_sampled(0xA3, 0xB3, sampled=False)):
        ours.record(0.05, CHAT)
        sdk.record(0.05, CHAT)
    ours.record(9.0, CHAT)
    sdk.record(9.0, CHAT)
    point = _points(ours_reader)[frozenset(CHAT.items())]
    _same(point, _points(sdk_reader)[frozenset(CHAT.items())])
    assert len(point.exemplars) == (2 if isinstance(exemplar_filter, AlwaysOnExemplarFilter)
                                    else 0)


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_a_negative_or_infinite_measurement_is_dropped_as_the_sdk_drops_it(
        value: float, caplog: pytest.LogCaptureFixture) -> None:
    ours, sdk, ours_reader, sdk_reader = _pair()
    ours.record(value, CHAT)
    sdk.record(value, CHAT)
    ours.record(1.0, CHAT)
    sdk.record(1.0, CHAT)
    _same(_points(ours_reader)[frozenset(CHAT.items())],
          _points(sdk_reader)[frozenset(CHAT.items())])
    assert any(NAME in record.getMessage() for record in caplog.records)


def test_attribute_sets_past_the_limit_go_to_the_overflow_point():
    ours, _sdk, reader, _ = _pair()
    for index in range(histograms.CARDINALITY_LIMIT + 50):
        ours.record(1.0, {"n": index})
    points = _points(reader)
    assert len(points) == histograms.CARDINALITY_LIMIT + 1
    overflow = points[frozenset(histograms.OVERFLOW_ATTRIBUTES.items())]
    assert overflow.count == 50


def test_invalid_attribute_values_are_cleaned_as_the_sdk_cleans_them():
    ours, sdk, ours_reader, sdk_reader = _pair()
    attributes: dict[str, Any] = {"ok": "yes", "bad": object(), "seq": ("a", "b")}
    ours.record(1.0, attributes)
    sdk.record(1.0, attributes)
    [ours_point] = _points(ours_reader).values()
    [sdk_point] = _points(sdk_reader).values()
    assert dict(ours_point.attributes) == dict(sdk_point.attributes) == {
        "ok": "yes", "bad": None, "seq": ("a", "b")}


def test_creating_it_twice_gives_one_instrument_and_one_metric():
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    first, second = histogram(meter, NAME), histogram(meter, NAME)
    assert first is second
    first.record(1.0)
    second.record(2.0)
    [point] = _points(reader).values()
    assert point.count == 2


def test_every_reader_of_the_provider_gets_its_own_points():
    first, second = InMemoryMetricReader(), InMemoryMetricReader(
        preferred_temporality={SdkHistogramApi: AggregationTemporality.DELTA})
    ours = histogram(MeterProvider(metric_readers=[first, second]).get_meter("t"), NAME)
    ours.record(1.0)
    assert [p.count for p in _points(second).values()] == [1]
    ours.record(2.0)
    assert [p.count for p in _points(first).values()] == [2]
    assert [p.count for p in _points(second).values()] == [1]


def test_histograms_join_the_scope_of_the_meters_other_instruments():
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("exai", "1.2.3")
    meter.create_counter("calls").add(1)
    histogram(meter, NAME).record(1.0)
    data = reader.get_metrics_data()
    assert data is not None
    [resource] = data.resource_metrics
    [scope] = resource.scope_metrics
    assert (scope.scope.name, scope.scope.version) == ("exai", "1.2.3")
    assert sorted(metric.name for metric in scope.metrics) == sorted(["calls", NAME])


def test_views_or_exponential_buckets_leave_the_histogram_to_the_sdk():
    with_view = MeterProvider(metric_readers=[InMemoryMetricReader()],
                              views=[View(instrument_name="other")])
    assert not isinstance(histogram(with_view.get_meter("t"), NAME), PreAggregatedHistogram)
    exponential = InMemoryMetricReader(preferred_aggregation={
        SdkHistogramApi: ExponentialBucketHistogramAggregation()})
    provider = MeterProvider(metric_readers=[exponential])
    assert not isinstance(histogram(provider.get_meter("t"), NAME), PreAggregatedHistogram)


class _Keep(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.exported: list[MetricsData] = []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def test_the_periodic_reader_exports_it_and_its_last_collection_at_shutdown():
    exporter = _Keep()
    provider = MeterProvider(metric_readers=[
        PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)])
    histogram(provider.get_meter("t"), NAME).record(1.0, CHAT)
    provider.shutdown()
    counts = [point.count for data in exporter.exported for r in data.resource_metrics
              for s in r.scope_metrics for m in s.metrics if m.name == NAME
              for point in m.data.data_points]
    assert counts == [1]


def test_recording_while_another_thread_collects_loses_nothing():
    delta = {"preferred_temporality": {SdkHistogramApi: AggregationTemporality.DELTA}}
    reader = InMemoryMetricReader(**delta)
    ours = histogram(MeterProvider(metric_readers=[reader]).get_meter("t"), NAME)
    total = 0
    done = threading.Event()

    def collect() -> None:
        nonlocal total
        while not done.is_set():
            total += sum(p.count for p in _points(reader).values())

    collector = threading.Thread(target=collect)
    collector.start()
    for _ in range(20_000):
        ours.record(0.1, CHAT)
    done.set()
    collector.join()
    total += sum(p.count for p in _points(reader).values())
    assert total == 20_000
