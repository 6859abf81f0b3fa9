"""What the daemon's own log handlers would write and export, for one logger, during a test.

The handlers are built by ``otel.logs`` exactly as ``exai serve`` builds them (the console
handler with its filters and format, the OTel bridge), writing to a string and to an in-memory
exporter behind a local provider, never installed globally.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from otel.logs import bridge_handler, console_handler


@dataclass
class LogOutput:
    console: io.StringIO
    exported: InMemoryLogRecordExporter

    def everything(self) -> str:
        """The console text and every exported record's body and attributes, as one text."""
        records = [{"body": str(r.log_record.body), **dict(r.log_record.attributes or {})}
                   for r in self.exported.get_finished_logs()]
        return self.console.getvalue() + json.dumps(records, default=str)


@contextmanager
def captured_logs(logger_name: str, level: int = logging.INFO) -> Iterator[LogOutput]:
    logger = logging.getLogger(logger_name)
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    stream = io.StringIO()
    handlers = [console_handler(stream), bridge_handler(provider)]
    previous_level = logger.level
    logger.setLevel(level)
    for handler in handlers:
        logger.addHandler(handler)
    try:
        yield LogOutput(stream, exporter)
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.setLevel(previous_level)
        provider.shutdown()
