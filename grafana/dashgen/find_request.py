"""Find a request: paste a trace_id (from a reply, a log line or the CLI) or a legacy
correlation_id and see the whole request, its spans and its log lines, on one page."""

from __future__ import annotations

from otel import names

from . import names as n
from .core import (
    Json,
    dashboard,
    dashboard_links,
    logs,
    loki,
    table,
    tempo,
    text,
    text_variable,
    traces,
)

UID = "exai-find-request"

HELP = """
**Paste an id above and press Enter.**

- `trace_id`: the 32-hex id every reply carries (`call_tool_res.trace_id`), that `exai chat` prints
  and that every log line shows as `trace_id=...`. The trace opens below with its log lines.
- `correlation_id`: the legacy id older clients send; the table lists the matching requests.
  Click a trace id in it to open the trace.
- `request_id`: the id the client chose for one call (`jsonrpc.request.id` on the span and on
  the call's log record, which exists for every call, sampled into Tempo or not).

In Explore (Tempo) the same searches are TraceQL:
`{ span.exai.correlation_id = "<id>" }` or `{ span.jsonrpc.request.id = "<id>" }`.
Only sampled traces are in Tempo: every failed or slow request, and a share of the rest.
"""


def build() -> Json:
    panels = [
        text("How to use", HELP, width=24, height=7),
        traces("Trace", tempo("${trace_id}"),
               description="The request with this trace_id: every span, with links to its logs."),
        logs("Log lines of this trace", loki(f'{n.LOG_STREAM} | trace_id = "${{trace_id}}"'),
             height=8),
        logs("Calls with this request_id", loki(
            f'{n.CALL_RECORDS} | {n.label_name(names.JSONRPC_REQUEST_ID)} = "${{request_id}}"'),
             height=6, description="The per-call log records: every call is here, sampled "
                                   "into Tempo or not; their trace_id opens the trace."),
        table("Requests with this correlation_id", [tempo(
            '{ span.exai.correlation_id = "${correlation_id}" }')], width=12),
        table("Requests with this request_id", [tempo(
            '{ span.jsonrpc.request.id = "${request_id}" }')], width=12),
    ]
    variables = [
        text_variable("trace_id", "trace_id", "32 hex characters, from a reply or a log line"),
        text_variable("correlation_id", "correlation_id", "a legacy client's correlation id"),
        text_variable("request_id", "request_id", "the client's request_id"),
    ]
    return dashboard(UID, "exai: Find a request", __doc__ or "", panels, variables=variables,
                     links=dashboard_links(), time_from="now-24h")
