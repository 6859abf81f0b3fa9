"""Local SDK providers backed by in-memory exporters, for component tests.

They are never installed globally: the code under test receives them through
``create_instruments``, so these tests neither depend on nor disturb the daemon tests' globals.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel.instruments import Instruments, create_instruments


@dataclass
class InMemoryTelemetry:
    instruments: Instruments
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader

    def finished(self, name_prefix: str = "") -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name.startswith(name_prefix)]

    def points(self, name: str) -> list[Any]:
        """Every data point of metric ``name`` collected so far."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def labelled_points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, data point) of every point of metric ``name``."""
        return [(dict(point.attributes), point) for point in self.points(name)]

    def total(self, name: str, **attributes: Any) -> float:
        """Sum of counter values (or histogram counts) whose attributes include ``attributes``."""
        total = 0.0
        for point in self.points(name):
            if all(point.attributes.get(k) == v for k, v in attributes.items()):
                total += point.value if hasattr(point, "value") else point.count
        return total


Captured = TypeVar("Captured", bound=InMemoryTelemetry)


@contextmanager
def in_memory_telemetry(kind: type[Captured] = InMemoryTelemetry) -> Iterator[Captured]:  # type: ignore[assignment]
    """Fresh providers and instruments; ``kind`` may be a subclass with helpers of its own."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    instruments = create_instruments("test", tracer_provider, meter_provider)
    try:
        yield kind(instruments, tracer_provider, meter_provider, spans, reader)
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()
