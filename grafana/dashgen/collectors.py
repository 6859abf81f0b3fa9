"""Collector tier: each agent and gateway on its own, for a fleet (issue 15).

A dashboard of its own rather than a row of Pipeline health: Pipeline health answers "is
telemetry getting through" with totals that the one-box stack fills, while this one needs its own
variables (role, collector), per-collector series and the agent and gateway series (loadbalancing
exporter, refused tokens) that a single collector never produces. Every series is one collector's
self-metrics, told apart by ``instance`` (its scrape target) and ``collector_role``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import names as n
from .core import (
    RATE,
    dashboard,
    dashboard_links,
    label_variable,
    or_zero,
    prom,
    row,
    stat,
    timeseries,
)

if TYPE_CHECKING:
    from .core import Json, Panel

UID = "exai-collectors"
ROLE = n.COLLECTOR_ROLE_LABEL
# The selected collectors, on every query of this dashboard.
SELECTED = f'{ROLE}=~"$role", instance=~"$collector"'
BY_COLLECTOR = f"{ROLE}, instance"
LEGEND = f"{{{{{ROLE}}}}} {{{{instance}}}}"


def _sel(extra: str = "") -> str:
    """The selected collectors' selector, plus ``extra`` matchers."""
    return "{" + SELECTED + (f", {extra}" if extra else "") + "}"


def _per_signal(template: str, extra: str = "") -> str:
    """All three signals of a per-signal counter, by name regex, on the selected collectors."""
    name = template.format(signal=f"({'|'.join(n.SIGNALS)})")
    return n.by_name_regex(name, SELECTED + (f", {extra}" if extra else ""))


def variables() -> list[Json]:
    """Role, then the collectors of that role: both read from the scrape's own ``up``."""
    up = f"{n.UP}{{{n.COLLECTOR_JOB}}}"
    return [label_variable("role", "Collector role", up, ROLE),
            label_variable("collector", "Collector",
                           f'{n.UP}{{{n.COLLECTOR_JOB}, {ROLE}=~"$role"}}', "instance")]


def collectors() -> list[Panel]:
    up = f"{n.UP}{{{n.COLLECTOR_JOB}, {SELECTED}}}"
    return [
        row("Collectors"),
        stat("Collectors up by role", [prom(f"sum by ({ROLE}) ({up})", f"{{{{{ROLE}}}}}")],
             decimals=0, width=6, height=8, thresholds=[(None, "red"), (1, "green")],
             description="Scrape targets answering, per role (agent, gateway, single)."),
        timeseries("Up by collector", [prom(up, LEGEND)], unit="short", width=6,
                   description="1 = scraped, 0 = not answering (CollectorGatewayDown for a "
                               "gateway, CollectorDown for the others)."),
        timeseries("CPU by collector", [prom(
            f"sum by ({BY_COLLECTOR}) (rate({n.COLLECTOR_CPU}{_sel()}[{RATE}]))", LEGEND)],
            unit="percentunit", width=6, description="CPU seconds per second (1 = one core)."),
        timeseries("Memory by collector", [prom(
            f"max by ({BY_COLLECTOR}) ({n.COLLECTOR_RSS}{_sel()})", LEGEND)], unit="bytes",
            width=6, description="Resident memory; the memory limiter refuses data near its "
                                 "limit."),
    ]


def intake() -> list[Panel]:
    accepted = n.RECEIVER_ACCEPTED.format(signal="spans")
    refused = n.RECEIVER_REFUSED.format(signal="spans")
    unauthenticated = (
        f"sum by ({BY_COLLECTOR}) (rate({n.HTTP_SERVER_DURATION_COUNT}"
        f"{_sel(n.UNAUTHENTICATED_HTTP)}[{RATE}])) or sum by ({BY_COLLECTOR}) "
        f"(rate({n.GRPC_SERVER_DURATION_COUNT}{_sel(n.UNAUTHENTICATED_GRPC)}[{RATE}]))")
    return [
        row("Intake and refusals"),
        timeseries("Accepted spans by collector", [prom(
            f"sum by ({BY_COLLECTOR}) (rate({accepted}{_sel()}[{RATE}]))", LEGEND)],
            unit="cps", width=6,
            description="An agent accepts its daemon's spans, a gateway the agents' spans: "
                        "the two tiers count the same spans once each."),
        timeseries("Refused spans by collector", [prom(
            f"sum by ({BY_COLLECTOR}, receiver) (rate({refused}{_sel()}[{RATE}]))",
            f"{LEGEND} {{{{receiver}}}}")], unit="cps", width=6,
            description="Refused by a receiver (the sender retries): the memory limiter "
                        "pushing back, or a pipeline error."),
        timeseries("Memory limiter refusals", [prom(or_zero(
            f"sum by ({BY_COLLECTOR}) (rate({_per_signal(n.MEMORY_LIMITER_REFUSED)}[{RATE}]))"),
            LEGEND)], unit="cps", width=6,
            description="Spans, metric points and log records the memory limiter refused "
                        "because the collector was near its memory limit."),
        timeseries("Unauthenticated requests refused", [prom(or_zero(unauthenticated), LEGEND)],
                   unit="reqps", width=6,
                   description="OTLP requests a gateway refused for a missing or wrong bearer "
                               "token: HTTP 401 and gRPC UNAUTHENTICATED, from the receivers' "
                               "own server metrics (telemetry level detailed)."),
    ]


def loadbalancing() -> list[Panel]:
    outcome = f"{n.LB_BACKEND_OUTCOME}{_sel()}"
    agent_failed = _per_signal(n.EXPORTER_SEND_FAILED, f'{ROLE}="agent"')
    latency = (f"histogram_quantile(0.95, sum by (le, instance, endpoint) "
               f"(rate({n.LB_BACKEND_LATENCY_BUCKET}{_sel()}[{RATE}])))")
    return [
        row("Agents to gateways (loadbalancing exporter)"),
        timeseries("Gateways each agent routes to", [prom(
            f"max by (instance, resolver) ({n.LB_BACKENDS}{_sel()})",
            "{{instance}} ({{resolver}})")], unit="short", width=6,
            description="Backends in the agent's hash ring. A static list keeps a dead gateway "
                        "in it; DNS drops it once it stops resolving."),
        timeseries("Backend outcomes per agent", [prom(
            f"sum by (instance, endpoint, success) (rate({outcome}[{RATE}]))",
            "{{instance}} to {{endpoint}} success={{success}}")], unit="ops", width=6,
            description="Each hand-over of a batch to a gateway (endpoint); success=false: the "
                        "agent's queue for it is full, or the gateway refused the batch."),
        timeseries("Backend latency p95 by gateway", [prom(
            latency, "{{instance}} to {{endpoint}}")], unit="ms", width=6),
        timeseries("Agent send failures", [prom(or_zero(
            f"sum by (instance, exporter) (rate({agent_failed}[{RATE}]))"),
            "{{instance}} {{exporter}}")], unit="cps", width=6,
            description="Data an agent gave up on after its retries: lost."),
    ]


def queues_and_sampling() -> list[Panel]:
    any_enqueue_failed = _per_signal(n.EXPORTER_ENQUEUE_FAILED)
    return [
        row("Queues and tail sampling"),
        timeseries("Queue size vs capacity by collector", [
            prom(f"max by (instance, exporter) ({n.QUEUE_SIZE}{_sel()})",
                 "size {{instance}} {{exporter}}"),
            prom(f"max by (instance, exporter) ({n.QUEUE_CAPACITY}{_sel()})",
                 "capacity {{instance}} {{exporter}}")], unit="short", width=8),
        timeseries("Enqueue failures by collector", [prom(or_zero(
            f"sum by (instance, exporter) (rate({any_enqueue_failed}[{RATE}]))"),
            "{{instance}} {{exporter}}")], unit="cps", width=4,
            description="Dropped because a queue was full."),
        timeseries("Tail sampling decisions by gateway", [prom(
            f"sum by (instance, decision) (rate({n.TAIL_SAMPLING}{_sel()}[{RATE}]))",
            "{{instance}} {{decision}}")], unit="cps", width=6,
            description="Needs every span of a trace on one gateway: the agents route by "
                        "trace id."),
        timeseries("Traces dropped before a decision", [prom(or_zero(
            f"sum by (instance) (rate({n.TAIL_SAMPLING_DROPPED_TOO_EARLY}{_sel()}[{RATE}]))"),
            "{{instance}}")], unit="cps", width=6,
            description="More traces waiting than the processor's num_traces holds."),
        timeseries("Tool calls counted per gateway", [prom(
            f"sum by ({n.COLLECTOR_INSTANCE_LABEL}) (rate({n.SPAN_CALLS}"
            f'{{span_kind="SPAN_KIND_SERVER", mcp_method_name="tools/call"}}[{RATE}]))',
            f"{{{{{n.COLLECTOR_INSTANCE_LABEL}}}}}")], unit="reqps", width=24, height=7,
            description="Span metrics by the gateway that computed them: their sum is every "
                        "tool call (the other dashboards sum collector_instance_id away)."),
    ]


def build() -> Json:
    return dashboard(UID, "exai: Collector tier",
                     "Each agent and gateway: intake, refusals (memory, tokens), routing to the "
                     "gateways, queues and tail sampling.",
                     [*collectors(), *intake(), *loadbalancing(), *queues_and_sampling()],
                     variables=variables(), links=dashboard_links())
