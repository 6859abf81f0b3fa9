"""Logging: a console line that shows the trace id, and the OTel logs bridge.

Both handlers hang off the root logger, so every module just uses ``logging.getLogger``. The
bridge turns each record into an OTel log record carrying the current trace and span ids.
The SDK's own export failures are kept out of the bridge (exporting them would loop) and are
throttled on the console: a collector that is down gives one warning, not one per batch.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

from opentelemetry import trace
from opentelemetry._logs import LoggerProvider

CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(name)s trace_id=%(trace_id)s %(message)s"
SDK_LOGGER_PREFIX = "opentelemetry"
THROTTLE_WINDOW_SECS = 300.0
# Libraries that log one INFO line per request the daemon already traces (httpx: "HTTP Request:
# POST ... 200 OK" for every provider call, which the httpx span carries). Above DEBUG they are
# held to WARNING: a console line and an exported log record per call saved, failures still shown.
PER_REQUEST_LOGGERS = ("httpx",)


class TraceIdFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex, or ``-``) to every record for the console format."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        else:
            record.trace_id = record.span_id = "-"
        return True


class SdkWarningThrottle(logging.Filter):
    """Lets one SDK warning per logger through each window; counts and reports the rest."""

    def __init__(self, window_secs: float = THROTTLE_WINDOW_SECS, clock=time.monotonic) -> None:
        super().__init__()
        self._window = window_secs
        self._clock = clock
        self._lock = threading.Lock()
        self._last_shown: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(SDK_LOGGER_PREFIX) or record.levelno < logging.WARNING:
            return True
        now = self._clock()
        with self._lock:
            last = self._last_shown.get(record.name)
            if last is not None and now - last < self._window:
                self._suppressed[record.name] = self._suppressed.get(record.name, 0) + 1
                return False
            self._last_shown[record.name] = now
            hidden = self._suppressed.pop(record.name, 0)
        note = f" ({hidden} similar messages hidden)" if hidden else \
            f" (similar messages are hidden for {int(self._window)}s)"
        record.msg = f"{record.getMessage()}{note}"
        record.args = None
        return True


class NotFromSdk(logging.Filter):
    """Keeps the SDK's own records out of the OTel bridge, which would export them in a loop."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(SDK_LOGGER_PREFIX)


def configure_logging(level: str | int = "INFO",
                      logger_provider: LoggerProvider | None = None) -> None:
    """Install the console handler and, when telemetry is on, the OTel logs bridge."""
    root = logging.getLogger()
    root.setLevel(level)
    for name in PER_REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(
            logging.NOTSET if root.getEffectiveLevel() <= logging.DEBUG else logging.WARNING)
    for handler in list(root.handlers):
        if getattr(handler, "_exai", False):
            root.removeHandler(handler)

    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    console.addFilter(TraceIdFilter())
    console.addFilter(SdkWarningThrottle())
    console._exai = True  # type: ignore[attr-defined]
    root.addHandler(console)

    if logger_provider is not None:
        from opentelemetry.instrumentation.logging.handler import LoggingHandler

        bridge = LoggingHandler(logger_provider=logger_provider)
        bridge.addFilter(NotFromSdk())
        bridge._exai = True  # type: ignore[attr-defined]
        root.addHandler(bridge)
