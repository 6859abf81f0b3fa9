"""Pipeline health: is telemetry getting through the collector, and what do the processes cost.

The totals are kept per ``collector_role`` (agent, gateway, single): in a fleet an agent and a
gateway each count the same span once, so a sum over roles would count it twice. Each collector
on its own, and the agent and gateway series, are on the Collector tier dashboard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import names as n
from .core import RATE, dashboard, dashboard_links, or_zero, prom, row, stat, timeseries
from .overview import instance_variable

if TYPE_CHECKING:
    from .core import Json, Panel

UID = "exai-pipeline"
ROLE = n.COLLECTOR_ROLE_LABEL


def flow() -> list[Panel]:
    panels: list[Panel] = [row("Through the collector")]
    for signal, label in n.SIGNALS.items():
        def rate(template: str, by: str = ROLE, signal: str = signal) -> str:
            return f"sum by ({by}) (rate({template.format(signal=signal)}[{RATE}]))"

        role = f"{{{{{ROLE}}}}}"
        panels.append(timeseries(f"{label}: accepted, refused, sent, failed", [
            prom(rate(n.RECEIVER_ACCEPTED), f"accepted {role}"),
            prom(rate(n.RECEIVER_REFUSED), f"refused {role}"),
            prom(rate(n.EXPORTER_SENT, f"{ROLE}, exporter"), f"sent {role} {{{{exporter}}}}"),
            prom(or_zero(rate(n.EXPORTER_SEND_FAILED, f"{ROLE}, exporter")),
                 f"failed {role} {{{{exporter}}}}"),
        ], unit="cps", description="Refused: the memory limiter pushed back (the SDK retries). "
                                   "Failed: an exporter gave up after its retries. Per "
                                   "collector role (agent, gateway, single)."))
    return panels


def queues() -> list[Panel]:
    any_signal = n.EXPORTER_ENQUEUE_FAILED.format(signal=f"({'|'.join(n.SIGNALS)})")
    enqueue_failed = f"sum(rate({n.by_name_regex(any_signal)}[{RATE}]))"
    return [
        row("Exporter queues"),
        timeseries("Queue size vs capacity", [
            prom(f"max by (exporter) ({n.QUEUE_SIZE})", "size {{exporter}}"),
            prom(f"max by (exporter) ({n.QUEUE_CAPACITY})", "capacity {{exporter}}")],
            unit="short", width=12,
            description="Batches waiting to be sent (persistent queues for Tempo and Loki)."),
        timeseries("Queue fill", [prom(
            f"max by (exporter) ({n.QUEUE_SIZE} / {n.QUEUE_CAPACITY})", "{{exporter}}")],
            unit="percentunit", width=6),
        stat("Enqueue failures (data lost)", [prom(or_zero(enqueue_failed), "per second")],
             unit="cps", width=6, height=8, thresholds=[(None, "green"), (0.001, "red")],
             description="Data dropped because a queue was full."),
        timeseries("Tail sampling decisions", [prom(
            f"sum by (policy, decision) (rate({n.TAIL_SAMPLING}[{RATE}]))",
            "{{policy}} {{decision}}")], unit="cps", width=24, height=7,
            description="Traces kept for Tempo; the metrics above count 100 % of spans."),
    ]


def processes() -> list[Panel]:
    daemon = n.DAEMON
    return [
        row("Processes"),
        timeseries("CPU", [
            prom(f"sum by (instance) (rate({n.PROCESS_CPU}{{{daemon}}}[{RATE}]))",
                 "daemon {{instance}}"),
            prom(f"sum by (instance) (rate({n.COLLECTOR_CPU}[{RATE}]))",
                 "collector {{instance}}")],
            unit="percentunit", width=8, description="CPU seconds per second (1 = one core)."),
        timeseries("Memory (resident)", [
            prom(f"max by (instance) ({n.PROCESS_MEMORY}{{{daemon}}})", "daemon {{instance}}"),
            prom(f"max by (instance) ({n.COLLECTOR_RSS})", "collector {{instance}}")],
            unit="bytes", width=8),
        timeseries("Daemon threads and open files", [
            prom(f"max by (instance) ({n.PROCESS_THREADS}{{{daemon}}})", "threads {{instance}}"),
            prom(f"max by (instance) ({n.PROCESS_FDS}{{{daemon}}})", "open files {{instance}}")],
            unit="short", width=8),
    ]


def build() -> Json:
    return dashboard(UID, "exai: Pipeline health",
                     "The OpenTelemetry Collector's intake, output and queues, and what the "
                     "daemon and collector processes use.",
                     [*flow(), *queues(), *processes()], variables=[instance_variable()],
                     links=dashboard_links())
