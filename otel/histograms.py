"""Explicit-bucket histograms aggregated by the daemon, exported with the SDK's own metrics.

A synchronous SDK histogram measurement costs about 120 k instructions (SDK 1.45.2, six
attributes): a ``Measurement`` dataclass that cleans every attribute value, the attributes hashed
into a sorted tuple, an exemplar filter and reservoir, three locks. A chat call records five
(GenAI duration, input and output tokens, the MCP operation's and the Redis write's duration).
``PreAggregatedHistogram`` aggregates the same measurements for about 22 k: one frozenset of
the attributes, a dict look-up, a bisect and a lock. Attributes are cleaned once per distinct set.

The data are the SDK's: per attribute set, bucket counts, sum, count, min and max with the
instrument's bucket boundaries, cumulative or delta as the reader prefers for histograms, at most
2,000 attribute sets with the rest under ``otel.metric.overflow=true``, and an exemplar per bucket
(the last measurement that passed ``OTEL_METRICS_EXEMPLAR_FILTER``, trace-based by default, with
its trace and span id), cleared at each collection. At each collection by a reader the points are
added to that reader's ``MetricsData`` under the meter's instrumentation scope, so every reader
and exporter (OTLP, in-memory, Prometheus) sees an ordinary histogram.

The SDK has no asynchronous histogram and, in 1.45.2, no ``MetricProducer``; the collection hook
is each reader's collect callback (``MetricReader._collect``), set by the ``MeterProvider``.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import replace
from time import time_ns
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import _clean_attribute_value
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    Exemplar,
    ExemplarFilter,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics import Meter as SdkMeter
from opentelemetry.sdk.metrics._internal.instrument import _Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.view import DefaultAggregation, ExplicitBucketHistogramAggregation
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

_logger = logging.getLogger(__name__)

CARDINALITY_LIMIT = 2000  # the SDK's default per metric stream
OVERFLOW_ATTRIBUTES = {"otel.metric.overflow": True}
_OVERFLOW_KEY = frozenset(OVERFLOW_ATTRIBUTES.items())
_NO_ATTRIBUTES: frozenset = frozenset()

# (trace id, span id) of the measurement's span, or None: the exemplar filter's decision
SampledBy = Callable[[Context | None], "tuple[int, int] | None"]


def _trace_based(context: Context | None) -> tuple[int, int] | None:
    span_context = trace.get_current_span(context).get_span_context()
    # only a valid context carries the sampled flag (the invalid span's flags are 0)
    if span_context.trace_flags & trace.TraceFlags.SAMPLED:
        return span_context.trace_id, span_context.span_id
    return None


def _always_on(context: Context | None) -> tuple[int, int] | None:
    span_context = trace.get_current_span(context).get_span_context()
    return (span_context.trace_id, span_context.span_id) if span_context.is_valid else (0, 0)


def _always_off(_context: Context | None) -> None:
    return None


def sampler_for(exemplar_filter: ExemplarFilter) -> SampledBy:
    """The SDK's exemplar filter as a function of the measurement's context."""
    if isinstance(exemplar_filter, TraceBasedExemplarFilter):
        return _trace_based
    if isinstance(exemplar_filter, AlwaysOnExemplarFilter):
        return _always_on
    if isinstance(exemplar_filter, AlwaysOffExemplarFilter):
        return _always_off

    def custom(context: Context | None) -> tuple[int, int] | None:
        if exemplar_filter.should_sample(0, time_ns(), None, context or Context()):
            return _always_on(context)
        return None
    return custom


class _Point:
    """One attribute set's aggregate since the reader's last collection (delta) or start."""

    __slots__ = ("attributes", "start", "counts", "sum", "min", "max", "exemplars")

    def __init__(self, attributes: dict[str, Any], buckets: int, start: int) -> None:
        self.attributes = attributes
        self.start = start
        self.counts = [0] * buckets
        self.sum: float = 0
        self.min = math.inf
        self.max = -math.inf
        # per bucket, the last sampled measurement: (value, time, (trace id, span id))
        self.exemplars: list[tuple[float, int, tuple[int, int]] | None] | None = None

    def data_point(self, bounds: tuple[float, ...], now: int) -> HistogramDataPoint:
        exemplars = [Exemplar({}, value, time, span_id or None, trace_id or None)
                     for value, time, (trace_id, span_id) in filter(None, self.exemplars or ())]
        return HistogramDataPoint(
            attributes=self.attributes, start_time_unix_nano=self.start, time_unix_nano=now,
            count=sum(self.counts), sum=self.sum, bucket_counts=tuple(self.counts),
            explicit_bounds=bounds, min=self.min, max=self.max, exemplars=exemplars)


class _ReaderPoints:
    """A reader's points of one histogram: every reader aggregates on its own, as in the SDK."""

    __slots__ = ("delta", "points", "previous_collection")

    def __init__(self, delta: bool) -> None:
        self.delta = delta
        self.points: dict[frozenset, _Point] = {}
        self.previous_collection = 0


class PreAggregatedHistogram:
    """A histogram with the SDK instrument's ``record`` signature, aggregated in the process."""

    def __init__(self, name: str, unit: str, description: str, bounds: Sequence[float],
                 sampled_by: SampledBy) -> None:
        self.name = name
        self.unit = unit
        self.description = description
        self._bounds = tuple(bounds)
        self._sampled_by = sampled_by
        self._lock = threading.Lock()
        self._readers: dict[MetricReader, _ReaderPoints] = {}

    def add_reader(self, reader: MetricReader) -> None:
        temporality = reader._instrument_class_temporality[SdkHistogram]
        with self._lock:
            self._readers.setdefault(
                reader, _ReaderPoints(temporality is AggregationTemporality.DELTA))

    def record(self, amount: float, attributes: dict[str, Any] | None = None,
               context: Context | None = None) -> None:
        if not 0 <= amount < math.inf:  # also False for NaN
            _logger.warning("histogram %s: ignored a measurement that is negative or not finite",
                            self.name)
            return
        key = frozenset(attributes.items()) if attributes else _NO_ATTRIBUTES
        index = bisect_left(self._bounds, amount)
        sampled = self._sampled_by(context)
        exemplar = None if sampled is None else (amount, time_ns(), sampled)
        with self._lock:
            for reader_points in self._readers.values():
                point = reader_points.points.get(key) or self._new_point(
                    reader_points, key, attributes)
                point.counts[index] += 1
                point.sum += amount
                if amount < point.min:
                    point.min = amount
                if amount > point.max:
                    point.max = amount
                if exemplar is not None:
                    if point.exemplars is None:
                        point.exemplars = [None] * len(point.counts)
                    point.exemplars[index] = exemplar

    def _new_point(self, reader_points: _ReaderPoints, key: frozenset,
                   attributes: dict[str, Any] | None) -> _Point:
        """Called with the lock held, for an attribute set the reader has not seen."""
        points = reader_points.points
        if len(points) >= CARDINALITY_LIMIT:
            key, attributes = _OVERFLOW_KEY, dict(OVERFLOW_ATTRIBUTES)
            if key in points:
                return points[key]
        # the SDK's own cleaning of a measurement's attributes, once per attribute set
        cleaned = dict(_clean_attribute_value(attributes, None) or {}) if attributes else {}
        point = points[key] = _Point(cleaned, len(self._bounds) + 1,
                                     reader_points.previous_collection or time_ns())
        return point

    def collect(self, reader: MetricReader, now: int) -> Metric | None:
        """This reader's points as a metric (None without any), exemplars cleared; a delta
        reader's points start again from zero."""
        with self._lock:
            reader_points = self._readers.get(reader)
            if reader_points is None:
                return None
            points = list(reader_points.points.values())
            data_points = [point.data_point(self._bounds, now) for point in points]
            for point in points:
                point.exemplars = None
            if reader_points.delta:
                reader_points.points = {}
                reader_points.previous_collection = now
        if not data_points:
            return None
        temporality = (AggregationTemporality.DELTA if reader_points.delta
                       else AggregationTemporality.CUMULATIVE)
        return Metric(name=self.name, description=self.description, unit=self.unit,
                      data=Histogram(data_points=data_points, aggregation_temporality=temporality))


class _MeterHistograms:
    """The pre-aggregated histograms of one ``MeterProvider``, by scope and name, and the hook
    that adds them to each of its readers' collections."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer  # the SDK's measurement consumer: the readers, the config
        self._resource = consumer._sdk_config.resource
        self._sampled_by = sampler_for(consumer._sdk_config.exemplar_filter)
        self._histograms: dict[tuple[InstrumentationScope, str], PreAggregatedHistogram] = {}
        self._hooked: weakref.WeakSet[MetricReader] = weakref.WeakSet()
        self._lock = threading.Lock()

    def histogram(self, scope: InstrumentationScope, name: str, unit: str, description: str,
                  bounds: Sequence[float]) -> PreAggregatedHistogram:
        with self._lock:
            found = self._histograms.get((scope, name))
            if found is None:
                found = self._histograms[(scope, name)] = PreAggregatedHistogram(
                    name, unit, description, bounds, self._sampled_by)
            for reader in self._consumer._reader_storages:
                found.add_reader(reader)
                self._hook(reader)
        return found

    def _hook(self, reader: MetricReader) -> None:
        """Wrap the reader's collect callback once: the SDK's collection, then ours."""
        hooked: Any = reader  # the callback is the SDK's private attribute
        if reader in self._hooked or hooked._collect is None:
            return
        sdk_collect = hooked._collect

        def collect(metric_reader: MetricReader,
                    timeout_millis: float = 10_000) -> MetricsData | None:
            return self._merge(metric_reader, sdk_collect(metric_reader,
                                                          timeout_millis=timeout_millis))

        hooked._collect = collect
        self._hooked.add(reader)

    def _merge(self, reader: MetricReader, data: MetricsData | None) -> MetricsData | None:
        now = time_ns()
        by_scope: dict[InstrumentationScope, list[Metric]] = {}
        with self._lock:
            histograms = list(self._histograms.items())
        for (scope, _name), histogram in histograms:
            metric = histogram.collect(reader, now)
            if metric is not None:
                by_scope.setdefault(scope, []).append(metric)
        if not by_scope:
            return data
        resource = self._resource
        resource_metrics = list(data.resource_metrics) if data else [
            ResourceMetrics(resource=resource, scope_metrics=[], schema_url=resource.schema_url)]
        first = resource_metrics[0]
        scope_metrics = list(first.scope_metrics)
        for index, existing in enumerate(scope_metrics):
            if existing.scope in by_scope:
                scope_metrics[index] = replace(
                    existing, metrics=[*existing.metrics, *by_scope.pop(existing.scope)])
        scope_metrics += [
            ScopeMetrics(scope=scope, metrics=metrics, schema_url=scope.schema_url or "")
            for scope, metrics in by_scope.items()]
        resource_metrics[0] = replace(first, scope_metrics=scope_metrics)
        return MetricsData(resource_metrics=resource_metrics)


_BY_CONSUMER: weakref.WeakKeyDictionary[Any, _MeterHistograms] = weakref.WeakKeyDictionary()
_BY_CONSUMER_LOCK = threading.Lock()


def pre_aggregated(meter: Any, name: str, unit: str, description: str,
                   bounds: Sequence[float]) -> PreAggregatedHistogram | None:
    """The histogram ``name`` of ``meter``'s scope, aggregated in the process, or None when the
    meter is not the SDK's (a no-op or proxy meter, whose own histogram records nothing) or its
    provider has views or a reader wants histograms aggregated otherwise (exponential buckets),
    which only the SDK's instruments do."""
    if not isinstance(meter, SdkMeter):
        return None
    consumer: Any = meter._measurement_consumer
    if consumer._sdk_config.views or not all(
            isinstance(reader._instrument_class_aggregation[SdkHistogram],
                       (DefaultAggregation, ExplicitBucketHistogramAggregation))
            for reader in consumer._reader_storages):
        return None
    with _BY_CONSUMER_LOCK:
        histograms = _BY_CONSUMER.get(consumer)
        if histograms is None:
            histograms = _BY_CONSUMER[consumer] = _MeterHistograms(consumer)
    return histograms.histogram(meter._instrumentation_scope, name, unit, description, bounds)
