"""``exai`` in OTEL_PYTHON_DISABLED_INSTRUMENTATIONS: the daemon's own telemetry is off and an
agent's SDK (``opentelemetry-instrument``) is left alone. The benchmark's zero-code peer runs so."""

from __future__ import annotations

import pytest
from opentelemetry import _logs, metrics, trace

from app import __version__
from otel.setup import configure_telemetry, own_telemetry_disabled

VAR = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"


@pytest.mark.parametrize("value, disabled", [
    ("exai", True), ("redis, EXAI ,httpx", True), ("redis,httpx", False), ("", False),
    ("exai-daemon", False),
])
def test_the_standard_list_names_the_daemon_as_exai(monkeypatch, value, disabled):
    monkeypatch.setenv(VAR, value)
    assert own_telemetry_disabled() is disabled


def test_own_telemetry_off_leaves_the_global_providers_and_libraries_alone(monkeypatch):
    monkeypatch.setenv(VAR, "exai")
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    before = (trace.get_tracer_provider(), metrics.get_meter_provider(),
              _logs.get_logger_provider())

    telemetry = configure_telemetry(__version__)

    assert telemetry.enabled is False
    assert telemetry.logger_provider is None and telemetry._instrumentors == []
    assert (trace.get_tracer_provider(), metrics.get_meter_provider(),
            _logs.get_logger_provider()) == before
    span = telemetry.instruments.tracer.start_span("tools/call chat")
    assert not span.is_recording()
    span.end()
    telemetry.instruments.operation_duration.record(0.1)  # a no-op, never an error
    telemetry.shutdown()


def test_a_fresh_trace_is_sampled_so_an_agents_library_spans_are_kept():
    from opentelemetry import context as otel_context

    from otel.propagation import with_fresh_trace

    span_context = trace.get_current_span(
        with_fresh_trace(otel_context.Context())).get_span_context()
    assert span_context.is_valid and span_context.trace_flags.sampled
