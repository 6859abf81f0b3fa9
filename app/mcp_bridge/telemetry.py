"""The bridge's telemetry: its own service name, a tracer, and the MCP client-side metric.

The bridge exports through the same standard ``OTEL_*`` variables as the daemon
(:func:`otel.setup.configure_telemetry`), under ``service.name`` ``exai-mcp-bridge`` unless the
user names it. It instruments no libraries: its only I/O is stdio and the daemon's WebSocket, and
both are traced here. Console logs go to stderr, because stdout carries the MCP protocol.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from dataclasses import dataclass

from opentelemetry import metrics, trace

from otel import names
from otel.logs import configure_logging
from otel.setup import Telemetry, configure_telemetry

SERVICE_NAME = "exai-mcp-bridge"
# Libraries whose DEBUG lines would echo every frame and every OTLP export (and, through the
# logs bridge, export their own export messages in a loop).
QUIET_LOGGERS = ("websockets", "urllib3", "httpx", "httpcore")
SCOPE = "exai.mcp_bridge"
# The MCP semantic conventions' client-side metric (histogram, seconds).
MCP_CLIENT_OPERATION_DURATION = names.MCP_CLIENT_OPERATION_DURATION


@dataclass
class BridgeInstruments:
    tracer: trace.Tracer
    operation_duration: metrics.Histogram


def default_service_name(environ: MutableMapping[str, str] = os.environ) -> None:
    """Name the service ``exai-mcp-bridge`` unless ``OTEL_SERVICE_NAME`` or a ``service.name``
    in ``OTEL_RESOURCE_ATTRIBUTES`` already does. Set once at start, before the SDK reads it."""
    attributes = environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    named = any(part.split("=", 1)[0].strip() == "service.name" for part in attributes.split(","))
    if not environ.get("OTEL_SERVICE_NAME") and not named:
        environ["OTEL_SERVICE_NAME"] = SERVICE_NAME


def create_bridge_instruments(tracer_provider: trace.TracerProvider,
                              meter_provider: metrics.MeterProvider,
                              version: str) -> BridgeInstruments:
    meter = meter_provider.get_meter(SCOPE, version)
    return BridgeInstruments(
        tracer=tracer_provider.get_tracer(SCOPE, version),
        operation_duration=meter.create_histogram(
            MCP_CLIENT_OPERATION_DURATION, unit="s",
            description="Duration of MCP requests the bridge sent to the daemon.",
            explicit_bucket_boundaries_advisory=list(names.MCP_DURATION_BUCKETS)),
    )


def start_telemetry(version: str, log_level: str) -> tuple[Telemetry, BridgeInstruments]:
    """Configure the SDK (OTLP from ``OTEL_*``) and stderr logging for the bridge process."""
    default_service_name()
    telemetry = configure_telemetry(version, instrument_libraries=False)
    configure_logging(log_level.upper(), telemetry.logger_provider)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return telemetry, create_bridge_instruments(telemetry.tracer_provider,
                                                telemetry.meter_provider, version)
