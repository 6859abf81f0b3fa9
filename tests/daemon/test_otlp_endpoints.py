"""Where the exporters send, as the standard OTEL_EXPORTER_OTLP_* variables say."""

from __future__ import annotations

import socket

import pytest

from otel.endpoints import listening, otlp_endpoint


@pytest.mark.parametrize(("env", "protocol", "expected"), [
    ({}, "grpc", ("localhost", 4317)),
    ({}, "http/protobuf", ("localhost", 4318)),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, "grpc", ("collector", 4317)),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:9999"}, "grpc", ("collector", 9999)),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel.example"}, "http/protobuf",
     ("otel.example", 443)),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1",
      "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:2/v1/traces"}, "http/protobuf", ("b", 2)),
])
def test_the_endpoint_follows_the_standard_variables(monkeypatch, env, protocol, expected):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert otlp_endpoint("traces", protocol) == expected


def test_listening_tells_a_refused_port_from_an_open_one():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert listening(("127.0.0.1", port))
    assert not listening(("127.0.0.1", port))
