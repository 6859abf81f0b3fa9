"""The daemon's tracer and metric instruments, created once and passed to whoever records.

Instruments are built from explicit providers rather than the globals, so a test can hand in
providers backed by in-memory exporters and the code under test stays unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from . import names
from .histograms import PreAggregatedHistogram, pre_aggregated
from .http_client import HttpClientSpans

GaugeCallback = Callable[[], Iterable[tuple[float, dict[str, str]]]]
Histogram = metrics.Histogram | PreAggregatedHistogram


class PreAggregatedSum:
    """A counter (or up-down counter) that sums in the process and reports at collection time.

    ``add`` has the synchronous instrument's signature but costs one dict update instead of an
    SDK measurement (attribute copy, hashing, aggregation, exemplar offer: ~15-25 us); the reader
    exports the same cumulative Sum, monotonic for a counter, through an observable instrument.
    Used for every counter recorded per frame or per call (bytes, calls in flight, cost, finish
    reasons, cached and reasoning tokens). Histograms have their own, with exemplars
    (:class:`otel.histograms.PreAggregatedHistogram`).
    """

    def __init__(self, meter: metrics.Meter, name: str) -> None:
        metric = names.METRICS[name]
        self._monotonic = metric.kind == "counter"
        self._totals: dict[frozenset, float] = {}
        self._attributes: dict[frozenset, dict[str, str]] = {}
        create = meter.create_observable_counter if self._monotonic else \
            meter.create_observable_up_down_counter
        create(metric.name, callbacks=[self._observe], unit=metric.unit,
               description=metric.description)

    def add(self, amount: float, attributes: dict[str, str] | None = None) -> None:
        if self._monotonic and amount < 0:
            return  # as the SDK's Counter: a negative add is dropped
        key = frozenset(attributes.items()) if attributes else frozenset()
        total = self._totals.get(key)
        if total is None:
            self._attributes[key] = dict(attributes or {})
            total = 0
        self._totals[key] = total + amount

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        # list() copies under the GIL: the event loop may add a key while the reader iterates.
        return [Observation(total, self._attributes[key])
                for key, total in list(self._totals.items())]


@dataclass
class Instruments:
    """Everything the daemon records, grouped by the component that records it."""

    tracer: trace.Tracer
    meter: metrics.Meter
    # MCP server side
    operation_duration: Histogram
    session_duration: Histogram
    sessions_active: PreAggregatedSum
    calls_in_flight: PreAggregatedSum
    rejections: metrics.Counter
    websocket_io: PreAggregatedSum
    # GenAI client side
    genai_duration: Histogram
    genai_tokens: Histogram
    genai_ttfc: Histogram
    genai_time_per_chunk: Histogram
    genai_cost: PreAggregatedSum
    genai_unpriced: PreAggregatedSum
    genai_cached_tokens: PreAggregatedSum
    genai_reasoning_tokens: PreAggregatedSum
    genai_finish_reasons: PreAggregatedSum
    # storage
    db_duration: Histogram

    # the providers' HTTP client spans, when the daemon's telemetry instruments httpx
    http_client: HttpClientSpans | None = None

    _gauge_readers: dict[str, GaugeCallback] = field(default_factory=dict)

    def observe_gauge(self, name: str, read: GaugeCallback) -> None:
        """Register the catalogued gauge ``name``, whose values ``read`` returns at each export.

        Registering the same name again replaces the reader: the newest owner (say, a daemon
        restarted in the same process) reports, never a stopped one.
        """
        if name not in self._gauge_readers:
            def callback(_options: CallbackOptions) -> Iterable[Observation]:
                return [Observation(value, attributes)
                        for value, attributes in self._gauge_readers[name]()]

            metric = names.METRICS[name]
            self.meter.create_observable_gauge(name, callbacks=[callback], unit=metric.unit,
                                               description=metric.description)
        self._gauge_readers[name] = read


def histogram(meter: metrics.Meter, name: str) -> Histogram:
    """The histogram of the catalogue entry ``name``: aggregated in the process on an SDK meter
    (:mod:`otel.histograms`, a fifth of an SDK measurement's cost), the meter's own otherwise."""
    metric = names.METRICS[name]
    if metric.buckets:
        found = pre_aggregated(meter, metric.name, metric.unit, metric.description,
                               metric.buckets)
        if found is not None:
            return found
    return meter.create_histogram(
        metric.name, unit=metric.unit, description=metric.description,
        explicit_bucket_boundaries_advisory=list(metric.buckets) if metric.buckets else None)


def counter(meter: metrics.Meter, name: str) -> metrics.Counter:
    """A synchronous counter built from the catalogue entry ``name``."""
    metric = names.METRICS[name]
    return meter.create_counter(metric.name, unit=metric.unit, description=metric.description)


def create_instruments(
    version: str,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Instruments:
    """Create the daemon's instruments on the given providers (the globals by default)."""
    tracer = trace.get_tracer(names.INSTRUMENTATION_SCOPE, version, tracer_provider)
    meter = metrics.get_meter(names.INSTRUMENTATION_SCOPE, version, meter_provider)
    return Instruments(
        tracer=tracer,
        meter=meter,
        operation_duration=histogram(meter, names.MCP_SERVER_OPERATION_DURATION),
        session_duration=histogram(meter, names.MCP_SERVER_SESSION_DURATION),
        sessions_active=PreAggregatedSum(meter, names.EXAI_SESSIONS_ACTIVE),
        calls_in_flight=PreAggregatedSum(meter, names.EXAI_CALLS_IN_FLIGHT),
        rejections=counter(meter, names.EXAI_REJECTIONS),
        websocket_io=PreAggregatedSum(meter, names.EXAI_WEBSOCKET_IO),
        genai_duration=histogram(meter, names.GEN_AI_CLIENT_OPERATION_DURATION),
        genai_tokens=histogram(meter, names.GEN_AI_CLIENT_TOKEN_USAGE),
        genai_ttfc=histogram(meter, names.GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK),
        genai_time_per_chunk=histogram(meter, names.GEN_AI_CLIENT_TIME_PER_OUTPUT_CHUNK),
        genai_cost=PreAggregatedSum(meter, names.EXAI_GEN_AI_COST),
        genai_unpriced=PreAggregatedSum(meter, names.EXAI_GEN_AI_UNPRICED_CALLS),
        genai_cached_tokens=PreAggregatedSum(meter, names.EXAI_GEN_AI_CACHED_INPUT_TOKENS),
        genai_reasoning_tokens=PreAggregatedSum(meter,
                                                names.EXAI_GEN_AI_REASONING_OUTPUT_TOKENS),
        genai_finish_reasons=PreAggregatedSum(meter, names.EXAI_GEN_AI_FINISH_REASONS),
        db_duration=histogram(meter, names.DB_CLIENT_OPERATION_DURATION),
    )
