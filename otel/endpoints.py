"""Where the OTLP exporters send, from the standard variables, and whether anything listens there.

At shutdown a collector that refuses the connection gets no retries: the exporters would back off
and retry until the flush deadline for nothing, so ``exai serve`` took the whole deadline to stop
whenever no collector ran. One that accepts the connection, however slow, keeps the deadline.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

# The OTLP exporter defaults (OpenTelemetry protocol exporter specification).
DEFAULT_PORTS = {"grpc": 4317, "http/protobuf": 4318}
CONNECT_TIMEOUT_SECS = 0.2


def otlp_endpoint(signal: str, protocol: str) -> tuple[str, int]:
    """(host, port) the exporter of ``signal`` (traces, metrics, logs) sends to."""
    value = (os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
             or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip()
    default_port = DEFAULT_PORTS[protocol]
    if not value:
        return "localhost", default_port
    parts = urlsplit(value if "://" in value else f"http://{value}")
    port = parts.port or (443 if parts.scheme == "https" else default_port)
    return parts.hostname or "localhost", port


def listening(endpoint: tuple[str, int], timeout_secs: float = CONNECT_TIMEOUT_SECS) -> bool:
    """True when a TCP connection to ``endpoint`` is accepted within ``timeout_secs``; a timeout
    counts as listening (a slow network, or a collector under load, still gets the deadline)."""
    try:
        with socket.create_connection(endpoint, timeout=timeout_secs):
            return True
    except TimeoutError:
        return True
    except OSError:
        return False
