"""Overview: the page people open first. Replaces the old HTML status page and its event log.

With several daemons the ``instance`` variable (service.instance.id) narrows every daemon and
span-metric query, and the "Instances" row shows which daemon is busy, failing or full.
"""

from __future__ import annotations

from . import names as n
from .core import (
    RATE,
    Json,
    Panel,
    alert_list,
    dashboard,
    dashboard_links,
    label_variable,
    logs,
    loki,
    or_zero,
    prom,
    row,
    stat,
    timeseries,
    unit_override,
)

UID = "exai-overview"


def instance_variable() -> Json:
    """The daemons that pushed telemetry: target_info carries every daemon's instance."""
    return label_variable("instance", "Daemon instance", f"{n.TARGET_INFO}{{{n.DAEMON_JOB}}}",
                          n.INSTANCE_LABEL)


def tool_variable() -> Json:
    return label_variable("tool", "Tool", f'{n.SPAN_CALLS}{{mcp_method_name="tools/call", '
                          f'{n.INSTANCE}}}', "gen_ai_tool_name")


def provider_variable() -> Json:
    return label_variable("provider", "Provider", f"{n.GENAI_DURATION}_count{{{n.INSTANCE}}}",
                          "gen_ai_provider_name")


def model_variable() -> Json:
    selector = f'gen_ai_provider_name=~"$provider", {n.INSTANCE}'
    return label_variable("model", "Model", f"{n.GENAI_DURATION}_count{{{selector}}}",
                          "gen_ai_request_model")


def _tool_rate(extra: str = "", by: str = "") -> str:
    """Tool calls per second from span metrics, summed over the gateways that counted them."""
    selector = n.TOOL_CALLS + (f", {extra}" if extra else "")
    return f"sum{f' by ({by})' if by else ''} (rate({n.SPAN_CALLS}{{{selector}}}[{RATE}]))"


def _error_ratio(by: str = "") -> str:
    """Failed over all tool calls; 0 (not "no data") for the series without a failure. (Not
    ``or vector(0)``: ``/`` binds tighter than ``or``.)"""
    total = _tool_rate(by=by)
    return f"({_tool_rate(n.ERROR, by)} or 0 * {total}) / {total}"


def _daemon(metric: str, extra: str = "") -> str:
    """``metric`` of the selected daemon instances."""
    return f"{metric}{{{n.DAEMON}{', ' + extra if extra else ''}}}"


def health() -> list[Panel]:
    return [
        row("Health"),
        stat("Daemon instances reporting",
             [prom(f"count(max_over_time({_daemon(n.TARGET_INFO)}[2m]))", "instances")],
             description="Daemon processes whose telemetry reached Prometheus in the last 2 "
                         "minutes (they push; nothing is scraped). 0 means down or cut off.",
             thresholds=[(None, "red"), (1, "green")], decimals=0),
        stat("Active sessions", [prom(f"sum({_daemon(n.SESSIONS_ACTIVE)})", "sessions")],
             decimals=0, description="WebSocket sessions open after hello."),
        stat("Calls in flight", [prom(f"sum({_daemon(n.CALLS_IN_FLIGHT)})", "calls")],
             decimals=0),
        stat("Request rate", [prom(_tool_rate(), "calls/s")], unit="reqps",
             description="tools/call requests per second (selected tools), from 100 % of spans."),
        stat("Error ratio", [prom(_error_ratio(), "errors")], unit="percentunit",
             thresholds=[(None, "green"), (0.05, "orange"), (0.1, "red")],
             description="Share of tools/call requests that ended in error."),
        stat("Alerts firing",
             [prom(or_zero('count(ALERTS{alertstate="firing"})'), "firing")], decimals=0,
             thresholds=[(None, "green"), (1, "red")],
             description="Prometheus alert rules (backends/prometheus/rules) currently firing."),
    ]


def requests() -> list[Panel]:
    bucket = f"{n.SPAN_DURATION_BUCKET}{{{n.TOOL_CALLS}}}"
    quantiles = [
        prom(f"histogram_quantile({q}, sum by (le, gen_ai_tool_name) (rate({bucket}[{RATE}])))",
             f"p{int(q * 100)} {{{{gen_ai_tool_name}}}}", exemplar=True)
        for q in (0.5, 0.95, 0.99)
    ]
    return [
        row("Requests"),
        timeseries("Tool calls per second", [prom(
            f"sum by (gen_ai_tool_name) (rate({n.SPAN_CALLS}{{{n.TOOL_CALLS}}}[{RATE}]))",
            "{{gen_ai_tool_name}}")], unit="reqps"),
        timeseries("Errors per second by tool and type", [prom(
            f"sum by (gen_ai_tool_name, error_type) "
            f"(rate({n.SPAN_CALLS}{{{n.TOOL_CALLS}, {n.ERROR}}}[{RATE}]))",
            "{{gen_ai_tool_name}} {{error_type}}")], unit="reqps",
            description="error.type is the reply's error code or the upstream's HTTP status."),
        timeseries("Latency per tool (p50, p95, p99)", quantiles, unit="s",
                   description="From span metrics; exemplar dots open the trace in Tempo."),
        timeseries("Rejected requests", [prom(
            f"sum by (exai_rejection_reason, exai_rejection_scope) "
            f"(rate({_daemon(n.REJECTIONS)}[{RATE}]))",
            "{{exai_rejection_reason}} ({{exai_rejection_scope}})")], unit="reqps",
            width=12, description="Refused by a rate limit or a concurrency limit."),
        timeseries("WebSocket traffic", [prom(
            f"sum by (network_io_direction) (rate({_daemon(n.WEBSOCKET_IO)}[{RATE}]))",
            "{{network_io_direction}}")], unit="Bps", width=12),
    ]


def _card(title: str, calls: str, errors: str, latency_bucket: str, extra: tuple[str, str, str],
          width: int) -> Panel:
    """One component: calls/s, errors/s, p95 latency and one volume figure, with its own unit."""
    extra_title, extra_expr, extra_unit = extra
    p95 = f"histogram_quantile(0.95, sum by (le) (rate({latency_bucket}[{RATE}])))"
    return stat(title, [
        prom(calls, "calls/s"), prom(or_zero(errors), "errors/s"), prom(p95, "p95"),
        prom(extra_expr, extra_title)],
        width=width, height=5, unit="reqps",
        overrides=[unit_override("C", "s"), unit_override("D", extra_unit)])


def components() -> list[Panel]:
    mcp = f'{n.MCP_DURATION}_count{{mcp_method_name="tools/call", {n.INSTANCE}'
    redis = f"{n.DB_DURATION}_count{{{n.REDIS}, {n.INSTANCE}"
    supabase = f"{n.SUPABASE_DURATION}_count{{{n.INSTANCE}, "
    cards = [
        _card("WebSocket", f"sum(rate({mcp}}}[{RATE}]))",
              f'sum(rate({mcp}, error_type!=""}}[{RATE}]))',
              f'{n.MCP_DURATION}_bucket{{mcp_method_name="tools/call", {n.INSTANCE}}}',
              ("bytes/s", f"sum(rate({_daemon(n.WEBSOCKET_IO)}[{RATE}]))", "Bps"), 5),
        _card("Redis", f"sum(rate({redis}}}[{RATE}]))",
              f'sum(rate({redis}, error_type!=""}}[{RATE}]))',
              f"{n.DB_DURATION}_bucket{{{n.REDIS}, {n.INSTANCE}}}",
              ("fallback", f"max({n.by_name_regex(n.STORAGE_FALLBACK, n.INSTANCE)})",
               "bool_on_off"), 5),
        # The outbox is one Redis stream for every daemon: each reports the same depth, so the
        # backlog is the largest report, not their sum.
        _card("Supabase", f"sum(rate({n.SUPABASE_DURATION}_count{{{n.INSTANCE}}}[{RATE}]))",
              f'sum(rate({supabase}error_type!=""}}[{RATE}]))',
              f"{n.SUPABASE_DURATION}_bucket{{{n.INSTANCE}}}",
              ("backlog", f"max({n.OUTBOX_DEPTH}{{{n.INSTANCE}}})", "none"), 5),
    ]
    for i, (label, provider) in enumerate(n.PROVIDERS.items()):
        selector = f'gen_ai_provider_name="{provider}", {n.INSTANCE}'
        cards.append(_card(
            label, f"sum(rate({n.GENAI_DURATION}_count{{{selector}}}[{RATE}]))",
            f'sum(rate({n.GENAI_DURATION}_count{{{selector}, error_type!=""}}[{RATE}]))',
            f"{n.GENAI_DURATION}_bucket{{{selector}}}",
            ("tokens/s", f"sum(rate({n.GENAI_TOKENS}_sum{{{selector}}}[{RATE}]))", "short"),
            5 if i == 0 else 4))
    return [row("Components"), *cards]


def instances() -> list[Panel]:
    """One series per daemon: where the load goes, which daemon fails, which is full."""
    by = n.INSTANCE_LABEL
    legend = f"{{{{{by}}}}}"
    return [
        row("Instances"),
        timeseries("Tool calls per second by instance", [prom(_tool_rate(by=by), legend)],
                   unit="reqps", width=6,
                   description="Span metrics summed over the gateways that computed them; the "
                               "instance is the daemon's service.instance.id."),
        timeseries("Error ratio by instance", [prom(_error_ratio(by), legend)], unit="percentunit",
                   width=6, description="One daemon far above the others points at that daemon "
                                        "(its keys, its network, its Redis), not at a provider."),
        timeseries("Active sessions by instance", [prom(
            f"sum by ({by}) ({_daemon(n.SESSIONS_ACTIVE)})", legend)], unit="short", width=6,
            description="How a load balancer spreads the clients over the daemons."),
        timeseries("Calls in flight by instance", [prom(
            f"sum by ({by}) ({_daemon(n.CALLS_IN_FLIGHT)})", legend)], unit="short", width=6),
    ]


def alerts_and_logs() -> list[Panel]:
    return [
        row("Alerts and events"),
        alert_list("Firing and pending alerts", width=24, height=6,
                   description="From the Prometheus alert rules; Alertmanager routes them."),
        logs("Calls", loki(n.instance_logs(n.CALL_RECORDS)), width=12, height=12,
             description="One record per finished tool call: tool, provider, model, outcome, "
                         "duration and tokens (never content). Open a line: its trace_id links "
                         "to the whole request in Tempo."),
        logs("Failed calls", loki(n.instance_logs(n.FAILED_CALL_RECORDS)), width=12,
             height=12,
             description="The calls above that did not end ok; exai_call_outcome is the error "
                         "code the client got."),
        logs("Recent events", loki(n.instance_logs(n.LOG_STREAM)), height=10,
             description="Every log record of the daemon: sessions, storage, providers, calls."),
    ]


def build() -> Json:
    return dashboard(
        UID, "exai: Overview",
        "Is the daemon up, how busy is it, what fails, and how fast each component answers.",
        [*health(), *requests(), *instances(), *components(), *alerts_and_logs()],
        variables=[instance_variable(), tool_variable(), provider_variable(), model_variable()],
        links=dashboard_links())
