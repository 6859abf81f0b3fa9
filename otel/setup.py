"""Configure the OpenTelemetry SDK from the standard ``OTEL_*`` variables.

Nothing here is daemon-specific configuration: endpoints, protocol, headers, sampler, batch sizes
and export intervals are whatever the standard variables say, read by the SDK and the exporters
themselves. The one choice made here is which exporter class to use, because the Python SDK does
not pick one from ``OTEL_EXPORTER_OTLP_PROTOCOL`` on its own.

Export never blocks the event loop: spans and logs go through bounded batch queues (a full queue
drops, it does not grow), metrics are read on their own thread, and a collector that is down costs
one warning (see :mod:`otel.logs`).

Stopping never waits longer than it is given: the three providers are flushed at once against one
deadline, whatever the collector does, and what could not be delivered by then is counted and
dropped (:class:`FlushOutcome`). The SDK's own exit handlers are off, so nothing waits again at
interpreter exit.

Under an agent (``opentelemetry-instrument``) the agent owns the SDK. Listing ``exai`` in the
standard ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` turns the daemon's own telemetry off (no
providers of its own, no library instrumentation, no-op instruments) while leaving whatever the
agent configured untouched; the benchmark's zero-code peer runs that way.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, cast

from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from . import http_client, names, otlp_encoding
from .endpoints import listening, otlp_endpoint
from .instruments import Instruments, create_instruments

_log = logging.getLogger(__name__)

GRPC = "grpc"
# The daemon's own instrumentation, by the name OTEL_PYTHON_DISABLED_INSTRUMENTATIONS knows it.
OWN_INSTRUMENTATION = "exai"
HTTP_PROTOBUF = "http/protobuf"
# A caller that gives no deadline gets the daemon's default one (Settings.shutdown_timeout_secs).
DEFAULT_SHUTDOWN_SECS = 8.0
# With no collector listening, the exporters get this long to give up, not the deadline.
UNREACHABLE_SHUTDOWN_SECS = 0.5


def sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def own_telemetry_disabled() -> bool:
    """True when ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` lists ``exai`` (comma-separated)."""
    listed = os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return OWN_INSTRUMENTATION in {item.strip().lower() for item in listed.split(",")}


def otlp_protocol(signal: str) -> str:
    """The OTLP protocol for one signal: the per-signal variable, then the general one."""
    value = (os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
             or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or HTTP_PROTOBUF).strip().lower()
    if value not in (GRPC, HTTP_PROTOBUF):
        raise ValueError(
            f"unsupported OTLP protocol {value!r} for {signal}: use grpc or http/protobuf")
    return value


class HashedOnceResource(Resource):
    """A resource that computes its hash once.

    The OTLP encoders group every exported span, metric point and log record by resource, and
    ``Resource.__hash__`` serialises all the attributes to JSON each time: about a third of the
    cost of encoding a small span (bench/instructions.py). A resource never changes after it is
    created, so neither does its hash.
    """

    _hash: int | None = None

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = super().__hash__()
        return self._hash


def build_resource(version: str, instance_id: str | None = None) -> Resource:
    """Our defaults, overridden by ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME``.
    ``instance_id``: the daemon's (``app.config.instance_id``), else a fresh uuid."""
    defaults = Resource.create({
        "service.name": names.SERVICE_NAME,
        "service.version": version,
        "service.instance.id": instance_id or str(uuid.uuid4()),
    })
    merged = defaults.merge(OTELResourceDetector().detect())
    return HashedOnceResource(merged.attributes, merged.schema_url)


def _span_exporter():
    if otlp_protocol("traces") == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()


def _metric_exporter():
    if otlp_protocol("metrics") == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    return OTLPMetricExporter()


def _log_exporter():
    if otlp_protocol("logs") == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    return OTLPLogExporter()


class ExportTally:
    """Items an exporter is sending right now, and items it failed to deliver.

    The batch processors drop a failed batch with a log line and no count, and cannot say what is
    in flight; a shutdown that gives up at its deadline needs both to say what it lost.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.failed = 0

    def begin(self, items: int) -> None:
        with self._lock:
            self.in_flight += items

    def end(self, items: int, delivered: bool) -> None:
        with self._lock:
            self.in_flight -= items
            if not delivered:
                self.failed += items

    def lost_since(self, failed_before: int) -> int:
        """Failed since ``failed_before`` was read, plus what is still unconfirmed."""
        with self._lock:
            return self.failed - failed_before + self.in_flight


class CountingExporter:
    """A span or log exporter that keeps an :class:`ExportTally`; export is unchanged."""

    def __init__(self, exporter: SpanExporter | LogRecordExporter,
                 results: type[SpanExportResult] | type[LogRecordExportResult]) -> None:
        self.exporter = exporter
        self._results = results
        self.tally = ExportTally()

    def export(self, batch: Sequence[Any]) -> Enum:
        self.tally.begin(len(batch))
        delivered = False
        try:
            result = self.exporter.export(batch)
            delivered = result is self._results.SUCCESS
            return result
        finally:
            self.tally.end(len(batch), delivered)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.exporter.shutdown()


class CountingMetricExporter(MetricExporter):
    """A metric exporter that keeps an :class:`ExportTally` of collections (not points)."""

    def __init__(self, exporter: MetricExporter) -> None:
        super().__init__(preferred_temporality=exporter._preferred_temporality,
                         preferred_aggregation=exporter._preferred_aggregation)
        self.exporter = exporter
        self.tally = ExportTally()

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        self.tally.begin(1)
        delivered = False
        try:
            result = self.exporter.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
            delivered = result is MetricExportResult.SUCCESS
            return result
        finally:
            self.tally.end(1, delivered)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.exporter.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.exporter.shutdown(timeout_millis=timeout_millis, **kwargs)


@dataclass(frozen=True)
class Batching:
    """A batch processor the daemon created, with the tally of the exporter behind it."""

    processor: BatchSpanProcessor | BatchLogRecordProcessor
    tally: ExportTally

    def queued(self) -> int:
        """Items still waiting in the queue. The SDK has no public accessor: this is the bounded
        deque of the pinned SDK (1.45.2); tests/daemon/test_shutdown.py fails if it moves."""
        return len(self.processor._batch_processor._queue)

    def shutdown_by(self, deadline: float) -> None:
        """The SDK's own bounded shutdown, given the time left: export what fits, start nothing
        after the deadline, then shut the exporter (which ends its retries; gRPC also cancels
        the call in flight). ``BatchSpanProcessor.shutdown()`` itself would allow 30 s."""
        self.processor._batch_processor.shutdown(timeout_millis=_millis_left(deadline))


@dataclass(frozen=True)
class FlushOutcome:
    """What a bounded flush delivered, for the console's last line about telemetry."""

    seconds: float
    dropped_spans: int
    dropped_log_records: int
    metrics_flushed: bool
    timed_out: bool  # exports were still waiting for the collector when the deadline came
    unreachable: bool = False  # no collector accepted a connection: nothing was waited for

    @property
    def complete(self) -> bool:
        return (not self.timed_out and self.metrics_flushed
                and self.dropped_spans == 0 and self.dropped_log_records == 0)

    def summary(self) -> str:
        if self.complete:
            return f"telemetry: flushed in {self.seconds:.1f} s"
        metrics = "metrics flushed" if self.metrics_flushed else "metrics not flushed"
        if self.unreachable:
            reason = "no collector accepted a connection"
        elif self.timed_out:
            reason = f"collector did not answer within {self.seconds:.1f} s"
        else:
            reason = f"export failed after {self.seconds:.1f} s"
        return (f"telemetry: dropped {self.dropped_spans} spans, {self.dropped_log_records} "
                f"log records, {metrics}: {reason}")


NOTHING_TO_FLUSH = FlushOutcome(0.0, 0, 0, metrics_flushed=True, timed_out=False)


def _dropped(batching: Batching | None, lost: dict[ExportTally, int]) -> int:
    """What one batch processor never delivered: still queued, failed or unconfirmed."""
    return 0 if batching is None else batching.queued() + lost[batching.tally]


def _shut(provider: object, **options: int) -> None:
    """Shut an SDK provider down (the API's no-op providers have nothing to shut)."""
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is not None:
        shutdown(**options)


def _millis_left(deadline: float) -> int:
    return int(max(0.0, (deadline - time.monotonic()) * 1000))


def run_until(deadline: float, jobs: dict[str, Callable[[], object]]) -> set[str]:
    """Run ``jobs`` at once on daemon threads; the names of those not done by ``deadline``
    (``time.monotonic()``), a job that raised included.

    Plain daemon threads, not an executor: ``concurrent.futures`` joins its workers at
    interpreter exit, which would wait for the very exports the deadline gave up on.
    """
    done: set[str] = set()

    def run(name: str, job: Callable[[], object]) -> None:
        try:
            job()
            done.add(name)
        except Exception as error:  # noqa: BLE001 - reported, and the rest still stop
            _log.warning("telemetry: stopping %s failed: %r", name, error)

    threads = [threading.Thread(target=run, args=item, name=f"otel-stop-{item[0]}", daemon=True)
               for item in jobs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return set(jobs) - done


@dataclass
class Telemetry:
    """The providers the daemon owns, and its instruments. ``enabled`` is False under
    ``OTEL_SDK_DISABLED=true``, where every provider is the API's no-op."""

    instruments: Instruments
    enabled: bool
    tracer_provider: trace.TracerProvider
    meter_provider: metrics.MeterProvider
    logger_provider: _logs.LoggerProvider | None
    _instrumentors: list = field(default_factory=list)
    _span_batching: Batching | None = None
    _log_batching: Batching | None = None
    _metric_tally: ExportTally | None = None
    _endpoints: frozenset[tuple[str, int]] = frozenset()  # where the OTLP exporters send
    _outcome: FlushOutcome | None = None

    def force_flush(self, timeout_secs: float = 5.0) -> bool:
        """Export what is queued, all three providers at once; False if that took longer than
        ``timeout_secs`` (the exports left running are not waited for)."""
        providers = {"traces": self.tracer_provider, "metrics": self.meter_provider,
                     "logs": self.logger_provider}
        jobs = {name: flush for name, provider in providers.items()
                if (flush := getattr(provider, "force_flush", None)) is not None}
        return not run_until(time.monotonic() + timeout_secs, jobs)

    def uninstrument(self) -> None:
        """Undo the library instrumentation (httpx, redis, process metrics)."""
        for instrumentor in self._instrumentors:
            instrumentor.uninstrument()
        self._instrumentors = []

    def shutdown(self, timeout_secs: float = DEFAULT_SHUTDOWN_SECS) -> FlushOutcome:
        """Flush what is queued and stop exporting, all within ``timeout_secs``; what the
        collector has not taken by then is dropped, counted in the outcome, and not waited for.
        A second call returns the first one's outcome."""
        if self._outcome is not None:
            return self._outcome
        self.uninstrument()
        if not self.enabled:
            self._outcome = NOTHING_TO_FLUSH
            return self._outcome
        started = time.monotonic()
        unreachable = bool(self._endpoints) and not any(map(listening, self._endpoints))
        if unreachable:  # nothing listens: what is queued cannot be delivered, only waited on
            timeout_secs = min(timeout_secs, UNREACHABLE_SHUTDOWN_SECS)
        deadline = started + timeout_secs
        failed_before = {tally: tally.failed for tally in self._tallies()}
        unfinished = run_until(deadline, self._shutdown_jobs(deadline))
        lost = {tally: tally.lost_since(before) for tally, before in failed_before.items()}
        seconds = time.monotonic() - started
        # An export cut off by its own timeout (derived from the deadline) fails a moment before
        # the deadline: the collector did not answer in time all the same.
        used_the_deadline = seconds >= timeout_secs * 0.95 and any(lost.values())
        self._outcome = FlushOutcome(
            seconds=seconds,
            dropped_spans=_dropped(self._span_batching, lost),
            dropped_log_records=_dropped(self._log_batching, lost),
            metrics_flushed="metrics" not in unfinished
            and (self._metric_tally is None or lost.get(self._metric_tally, 0) == 0),
            timed_out=bool(unfinished) or used_the_deadline
            or any(tally.in_flight for tally in lost),
            unreachable=unreachable,
        )
        return self._outcome

    def _tallies(self) -> list[ExportTally]:
        batchings = [b for b in (self._span_batching, self._log_batching) if b is not None]
        return [b.tally for b in batchings] + ([self._metric_tally] if self._metric_tally else [])

    def _shutdown_jobs(self, deadline: float) -> dict[str, Callable[[], object]]:
        """One job per provider; the batch processors the daemon made stop by the deadline."""
        def traces() -> None:
            if self._span_batching is not None:
                self._span_batching.shutdown_by(deadline)
            _shut(self.tracer_provider)

        def logs() -> None:
            if self._log_batching is not None:
                self._log_batching.shutdown_by(deadline)
            _shut(self.logger_provider)

        def metrics_() -> None:
            _shut(self.meter_provider, timeout_millis=_millis_left(deadline))

        return {"traces": traces, "metrics": metrics_, "logs": logs}


def _batching(processor_class: type[BatchSpanProcessor] | type[BatchLogRecordProcessor],
              exporter: SpanExporter | LogRecordExporter,
              results: type[SpanExportResult] | type[LogRecordExportResult]) -> Batching:
    counting = CountingExporter(exporter, results)
    return Batching(processor_class(counting), counting.tally)  # type: ignore[arg-type]


def configure_telemetry(
    version: str,
    *,
    span_processors: Sequence[SpanProcessor] | None = None,
    metric_readers: Sequence[MetricReader] | None = None,
    log_processors: Sequence[BatchLogRecordProcessor] | None = None,
    log_exporter: LogRecordExporter | None = None,
    instrument_libraries: bool = True,
    instance_id: str | None = None,
) -> Telemetry:
    """Set the global providers and instrument httpx, redis, logging and the process.

    Tests pass their own processors and readers (in-memory exporters); production passes
    nothing and gets OTLP exporters chosen by ``OTEL_EXPORTER_OTLP_*_PROTOCOL``.

    Under ``OTEL_SDK_DISABLED=true``, or with ``exai`` in ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``
    (an agent owns the SDK), nothing is configured or instrumented and the instruments are no-ops.
    """
    if sdk_disabled() or own_telemetry_disabled():
        return Telemetry(
            instruments=create_instruments(version, trace.NoOpTracerProvider(),
                                           metrics.NoOpMeterProvider()),
            enabled=False, tracer_provider=trace.NoOpTracerProvider(),
            meter_provider=metrics.NoOpMeterProvider(), logger_provider=None,
        )

    resource = build_resource(version, instance_id)
    otlp_encoding.install()  # OTLP/HTTP: the same bytes for a fraction of the instructions
    span_batching: Batching | None = None
    log_batching: Batching | None = None
    metric_tally: ExportTally | None = None
    endpoints: set[tuple[str, int]] = set()
    if span_processors is None:
        endpoints.add(otlp_endpoint("traces", otlp_protocol("traces")))
        span_batching = _batching(BatchSpanProcessor, _span_exporter(), SpanExportResult)
        span_processors = [cast(BatchSpanProcessor, span_batching.processor)]
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    for processor in span_processors:
        tracer_provider.add_span_processor(processor)

    if metric_readers is None:
        endpoints.add(otlp_endpoint("metrics", otlp_protocol("metrics")))
        metric_exporter = CountingMetricExporter(_metric_exporter())
        metric_tally = metric_exporter.tally
        metric_readers = [PeriodicExportingMetricReader(metric_exporter)]
    meter_provider = MeterProvider(resource=resource, metric_readers=list(metric_readers),
                                   shutdown_on_exit=False)

    if log_processors is None:
        if log_exporter is None:
            endpoints.add(otlp_endpoint("logs", otlp_protocol("logs")))
        log_batching = _batching(BatchLogRecordProcessor, log_exporter or _log_exporter(),
                                 LogRecordExportResult)
        log_processors = [cast(BatchLogRecordProcessor, log_batching.processor)]
    logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    for log_processor in log_processors:
        logger_provider.add_log_record_processor(log_processor)

    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    _logs.set_logger_provider(logger_provider)

    telemetry = Telemetry(
        instruments=create_instruments(version, tracer_provider, meter_provider),
        enabled=True, tracer_provider=tracer_provider, meter_provider=meter_provider,
        logger_provider=logger_provider, _span_batching=span_batching,
        _log_batching=log_batching, _metric_tally=metric_tally, _endpoints=frozenset(endpoints),
    )
    if instrument_libraries:
        telemetry._instrumentors = _instrument_libraries(tracer_provider, meter_provider)
        if not http_client.instrumentation_only_settings():
            telemetry.instruments.http_client = http_client.HttpClientSpans(tracer_provider)
    return telemetry


def _instrument_libraries(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> list:
    """httpx (provider and Supabase calls), redis (thread store and outbox, see
    :class:`RedisInstrumentation`) and the process's resources.

    httpx records no headers, so API keys in ``Authorization`` never reach a span. Its duration
    histogram is left out: the collector derives the same RED metrics from the HTTP spans
    (span_metrics), and recording it cost an SDK measurement on every request.
    """
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

    instrumentors: list[Any] = []
    httpx_instrumentor = HTTPXClientInstrumentor()
    httpx_instrumentor.instrument(tracer_provider=tracer_provider,
                                  meter_provider=metrics.NoOpMeterProvider())
    instrumentors.append(httpx_instrumentor)

    instrumentors.append(RedisInstrumentation().instrument(tracer_provider))

    process_metrics = SystemMetricsInstrumentor(config={
        "process.cpu.utilization": None,
        "process.cpu.time": ["user", "system"],
        "process.memory.usage": None,
        "process.memory.virtual": None,
        "process.open_file_descriptor.count": None,
        "process.thread.count": None,
        "cpython.gc.collections": None,
    })
    process_metrics.instrument(meter_provider=meter_provider)
    instrumentors.append(process_metrics)
    return instrumentors


# The pipeline classes whose ``execute`` the Redis instrumentation wraps (async and sync), and
# the instrumentation scope of its spans (its module's name).
_REDIS_PIPELINES = ("redis.asyncio.client.Pipeline", "redis.client.Pipeline")
_REDIS_SCOPE = "opentelemetry.instrumentation.redis"


class RedisInstrumentation:
    """``opentelemetry-instrumentation-redis``, completed where it departs from the Redis
    conventions (semantic conventions, db/redis.md).

    The instrumentation (0.66b2) names a pipeline's span after its commands (``RPUSH LTRIM
    PEXPIRE LRANGE``) and sets neither ``db.operation.name`` nor ``db.namespace`` on any span.
    By the conventions a transaction is ``MULTI`` and a plain pipeline ``PIPELINE`` (``MULTI
    RPUSH`` when every command is the same), in the span name and ``db.operation.name`` alike,
    with ``db.operation.batch.size`` for two or more commands; ``db.namespace`` is the database
    index the client connects with, as a string. Its other attributes follow
    ``OTEL_SEMCONV_STABILITY_OPT_IN`` (``database``: ``db.system.name``, ``db.query.text``,
    ``server.*``; by default the older ``db.system``, ``db.statement``, ``net.peer.*``).

    Commands are completed by the instrumentation's request hook. Pipelines cannot be: it
    calls no request hook for them, and its response hook only after a pipeline succeeded, so a
    failed MULTI (what a Redis outage produces) would keep the commands' name. They are named by a
    wrapper *inside* the instrumentation's, which runs while the pipeline's span is current,
    before any I/O, whatever the outcome.

    When Redis is instrumented already (an agent's doing), that instrumentation is left alone.
    """

    def __init__(self) -> None:
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        self._instrumentor = RedisInstrumentor()
        self._owned = False

    @property
    def owned(self) -> bool:
        """True while this instance's instrumentation is in place (not someone else's)."""
        return self._owned

    def instrument(self, tracer_provider: trace.TracerProvider) -> RedisInstrumentation:
        from wrapt import wrap_function_wrapper

        if self._owned or self._instrumentor.is_instrumented_by_opentelemetry:
            return self
        for pipeline in _REDIS_PIPELINES:  # first, so that the instrumentation's span is outside
            module, cls = pipeline.rsplit(".", 1)
            wrap_function_wrapper(module, f"{cls}.execute", _name_redis_pipeline_span)
        self._instrumentor.instrument(tracer_provider=tracer_provider,
                                      request_hook=_complete_redis_command_span)
        self._owned = True
        return self

    def uninstrument(self) -> None:
        from opentelemetry.instrumentation.utils import unwrap

        if not self._owned:
            return
        self._instrumentor.uninstrument()  # its wrappers, outside ours
        for pipeline in _REDIS_PIPELINES:
            unwrap(pipeline, "execute")
        self._owned = False


def _redis_pipeline_operation(commands: Sequence[str], transaction: bool) -> str:
    """``db.operation.name`` (and span name) of a pipeline: ``MULTI`` or ``PIPELINE``, followed
    by the command when every command is the same one."""
    kind = "MULTI" if transaction else "PIPELINE"
    distinct = set(commands)
    return f"{kind} {commands[0]}" if len(distinct) == 1 else kind


def _set_redis_namespace(span: trace.Span, client: Any) -> None:
    """``db.namespace``: the database index the connection was established with (a later
    ``SELECT`` is not followed: the daemon never sends one)."""
    index = client.connection_pool.connection_kwargs.get("db")
    span.set_attribute(names.DB_NAMESPACE, str(index or 0))


def _complete_redis_command_span(span: trace.Span, client: Any, args: Sequence[Any],
                                 _kwargs: dict[str, Any]) -> None:
    """The instrumentation's request hook (single commands): the command and the namespace."""
    if span is None or not span.is_recording():
        return
    try:
        if args:
            span.set_attribute(names.DB_OPERATION_NAME, str(args[0]))
        _set_redis_namespace(span, client)
    except (AttributeError, TypeError):  # a client of another shape: the span stays as it is
        pass


def _name_redis_pipeline_span(wrapped: Callable[..., Any], pipeline: Any, args: tuple[Any, ...],
                              kwargs: dict[str, Any]) -> Any:
    """Runs inside the instrumentation's ``Pipeline.execute`` wrapper: names its span."""
    span = trace.get_current_span()
    scope = getattr(span, "instrumentation_scope", None)
    if span.is_recording() and scope is not None and scope.name == _REDIS_SCOPE:
        try:
            commands = [str(command[0][0]) for command in pipeline.command_stack]
            # asyncio's flag is is_transaction; the sync one's is transaction (on asyncio's, a
            # method: the pipeline has every client method)
            transaction = (pipeline.is_transaction if hasattr(pipeline, "is_transaction")
                           else pipeline.transaction) is True or pipeline.explicit_transaction
            operation = _redis_pipeline_operation(commands, transaction)
            span.update_name(operation)
            span.set_attribute(names.DB_OPERATION_NAME, operation)
            if len(commands) != 1:  # one command is a single operation, not a batch
                span.set_attribute(names.DB_OPERATION_BATCH_SIZE, len(commands))
            _set_redis_namespace(span, pipeline)
        except (AttributeError, IndexError, TypeError):  # another shape: the span stays as it is
            pass
    return wrapped(*args, **kwargs)
