"""Configure the OpenTelemetry SDK from the standard ``OTEL_*`` variables.

Nothing here is daemon-specific configuration: endpoints, protocol, headers, sampler, batch sizes
and export intervals are whatever the standard variables say, read by the SDK and the exporters
themselves. The one choice made here is which exporter class to use, because the Python SDK does
not pick one from ``OTEL_EXPORTER_OTLP_PROTOCOL`` on its own.

Export never blocks the event loop: spans and logs go through bounded batch queues (a full queue
drops, it does not grow), metrics are read on their own thread, and a collector that is down costs
one warning (see :mod:`otel.logs`).

Under an agent (``opentelemetry-instrument``) the agent owns the SDK. Listing ``exai`` in the
standard ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` turns the daemon's own telemetry off (no
providers of its own, no library instrumentation, no-op instruments) while leaving whatever the
agent configured untouched; the benchmark's zero-code peer runs that way.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from . import names
from .instruments import Instruments, create_instruments

_log = logging.getLogger(__name__)

GRPC = "grpc"
# The daemon's own instrumentation, by the name OTEL_PYTHON_DISABLED_INSTRUMENTATIONS knows it.
OWN_INSTRUMENTATION = "exai"
HTTP_PROTOBUF = "http/protobuf"


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
        raise ValueError(f"unsupported OTLP protocol {value!r} for {signal}: use grpc or http/protobuf")
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


def build_resource(version: str) -> Resource:
    """Our defaults, overridden by ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME``."""
    defaults = Resource.create({
        "service.name": names.SERVICE_NAME,
        "service.version": version,
        "service.instance.id": str(uuid.uuid4()),
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

    def force_flush(self, timeout_millis: int = 5000) -> None:
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                flush(timeout_millis)

    def uninstrument(self) -> None:
        """Undo the library instrumentation (httpx, redis, process metrics)."""
        for instrumentor in self._instrumentors:
            instrumentor.uninstrument()
        self._instrumentors = []

    def shutdown(self) -> None:
        """Flush what is queued and stop exporting; bounded by the exporters' own timeouts."""
        self.uninstrument()
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            stop = getattr(provider, "shutdown", None)
            if stop is not None:
                stop()


def configure_telemetry(
    version: str,
    *,
    span_processors: Sequence[SpanProcessor] | None = None,
    metric_readers: Sequence[MetricReader] | None = None,
    log_processors: Sequence[BatchLogRecordProcessor] | None = None,
    log_exporter: LogRecordExporter | None = None,
    instrument_libraries: bool = True,
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

    resource = build_resource(version)
    tracer_provider = TracerProvider(resource=resource)
    for processor in span_processors if span_processors is not None else [
            BatchSpanProcessor(_span_exporter())]:
        tracer_provider.add_span_processor(processor)

    readers = list(metric_readers) if metric_readers is not None else [
        PeriodicExportingMetricReader(_metric_exporter())]
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)

    logger_provider = LoggerProvider(resource=resource)
    if log_processors is not None:
        for processor in log_processors:
            logger_provider.add_log_record_processor(processor)
    else:
        logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(log_exporter or _log_exporter()))

    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    _logs.set_logger_provider(logger_provider)

    telemetry = Telemetry(
        instruments=create_instruments(version, tracer_provider, meter_provider),
        enabled=True, tracer_provider=tracer_provider, meter_provider=meter_provider,
        logger_provider=logger_provider,
    )
    if instrument_libraries:
        telemetry._instrumentors = _instrument_libraries(tracer_provider, meter_provider)
    return telemetry


def _instrument_libraries(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> list:
    """httpx (provider and Supabase calls), redis (thread store) and the process's resources.

    httpx records no headers, so API keys in ``Authorization`` never reach a span. Its duration
    histogram is left out: the collector derives the same RED metrics from the HTTP spans
    (span_metrics), and recording it cost an SDK measurement on every request.
    """
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

    instrumentors = []
    httpx_instrumentor = HTTPXClientInstrumentor()
    httpx_instrumentor.instrument(tracer_provider=tracer_provider,
                                  meter_provider=metrics.NoOpMeterProvider())
    instrumentors.append(httpx_instrumentor)

    redis_instrumentor = RedisInstrumentor()
    redis_instrumentor.instrument(tracer_provider=tracer_provider)
    instrumentors.append(redis_instrumentor)

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
