"""Logging: a console line that shows the trace id, and the OTel logs bridge.

Both handlers hang off the root logger, so every module just uses ``logging.getLogger``. The
bridge turns each record into an OTel log record carrying the current trace and span ids.
The SDK's own export failures are kept out of the bridge (exporting them would loop) and are
throttled on the console: a collector that is down gives one warning, not one per batch.

Messages quote text from outside (a client's request id, a library's error), so both handlers
escape control characters and lone surrogates in them: no forged console lines, and no string
that makes the OTLP encoder drop a whole batch of other sessions' records.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, TextIO

from opentelemetry import trace
from opentelemetry._logs import LoggerProvider, LogRecord
from opentelemetry.instrumentation.logging.handler import LoggingHandler

from .redaction import escape_controls, has_lone_surrogate

CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(name)s trace_id=%(trace_id)s %(message)s"
SDK_LOGGER_PREFIX = "opentelemetry"
THROTTLE_WINDOW_SECS = 300.0
# Libraries that log one INFO line per request the daemon already traces (httpx: "HTTP Request:
# POST ... 200 OK" for every provider call, which the httpx span carries). Above DEBUG they are
# held to WARNING: a console line and an exported log record per call saved, failures still shown.
PER_REQUEST_LOGGERS = ("httpx",)


class TraceIdFormatter(logging.Formatter):
    """The console format, with the current trace and span ids (hex, or ``-``).

    The ids go into what is formatted, not onto the record: the record is shared with the OTel
    bridge, which would export them again as attributes (the exported record carries its trace
    context in its own fields, which Loki stores as ``trace_id``)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - the stdlib's name
        context = trace.get_current_span().get_span_context()
        ids = ({"trace_id": format(context.trace_id, "032x"),
                "span_id": format(context.span_id, "016x")} if context.is_valid
               else {"trace_id": "-", "span_id": "-"})
        return self._style._fmt % {**record.__dict__, **ids}


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


class SafeMessage(logging.Filter):
    """Replaces the record's message by its escaped form (newlines, CRs, ANSI escapes and lone
    surrogates as visible escapes), so one record is one console line and one encodable body.
    Tracebacks are formatted after filters run, so they stay intact on the console."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Formatting once here also spares the formatter a second %-format of ``args``.
        record.msg, record.args = escape_controls(record.getMessage()), None
        return True


class SafeLoggingHandler(LoggingHandler):
    """The OTel logs bridge, exporting only attribute values OTLP can carry, in strings UTF-8 can
    encode.

    Besides the body it exports the record's ``extra`` values and the exception's message and
    stack trace as attributes. A library may put an object there: websockets adds its connection
    to every record (``extra={"websocket": connection}``), which the SDK would replace by None
    with an "Invalid type" warning per record; such a value is left out, the rest of the record
    exported. A lone surrogate in the body fails the OTLP encoding of the whole batch; in an
    attribute, the encoder drops the attribute and logs a traceback, so it is escaped.
    ``_translate`` (of the pinned instrumentation, 0.66b2) is where body and attributes meet; a
    clean record passes through it untouched.
    """

    def __init__(self, logger_provider: LoggerProvider) -> None:
        super().__init__(logger_provider=logger_provider)
        self.addFilter(SafeMessage())

    def _translate(self, record: logging.LogRecord) -> LogRecord:
        translated = super()._translate(record)
        if translated.attributes and not _exportable_as_is(translated.attributes):
            translated.attributes = _export_form(translated.attributes)
        return translated


_PRIMITIVES = (str, bool, int, float, bytes)
_OMITTED = object()


def _exportable_as_is(value: Any) -> bool:
    """True when an attribute value (or each key and item in it) is a primitive, a list or a
    string-keyed map of them, with no lone surrogate in any string."""
    if isinstance(value, str):
        return not has_lone_surrogate(value)
    if isinstance(value, _PRIMITIVES):
        return True
    # Loops, not all(...): this runs for every exported record and should not allocate.
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or has_lone_surrogate(key) or \
                    not _exportable_as_is(item):
                return False
        return True
    if isinstance(value, (list, tuple)):
        for item in value:
            if not _exportable_as_is(item):
                return False
        return True
    return False


def _export_form(value: Any) -> Any:
    """``value`` with each lone surrogate written as its escape (``\\udc00``) and every part that
    is no attribute value left out (``_OMITTED`` for the whole); rare, so it may copy."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, Mapping):
        return {_export_form(key): form for key, item in value.items()
                if isinstance(key, str) and (form := _export_form(item)) is not _OMITTED}
    if isinstance(value, (list, tuple)):
        return [form for item in value if (form := _export_form(item)) is not _OMITTED]
    return _OMITTED


def console_handler(stream: TextIO | None = None) -> logging.Handler:
    """One line per record on ``stream`` (stderr), with the trace id, SDK warnings throttled."""
    console = logging.StreamHandler(stream or sys.stderr)
    console.setFormatter(TraceIdFormatter(CONSOLE_FORMAT))
    console.addFilter(SdkWarningThrottle())
    console.addFilter(SafeMessage())
    return console


def bridge_handler(logger_provider: LoggerProvider) -> logging.Handler:
    """The OTel logs bridge, without the SDK's own records."""
    bridge = SafeLoggingHandler(logger_provider)
    bridge.addFilter(NotFromSdk())
    return bridge


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
    handlers = [console_handler()]
    if logger_provider is not None:
        handlers.append(bridge_handler(logger_provider))
    for handler in handlers:
        handler._exai = True  # type: ignore[attr-defined]
        root.addHandler(handler)
