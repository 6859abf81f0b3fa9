"""Counting what a fleet delivered: span-metric totals across a gateway restart, and traces as the
per-gateway Tempo stand-ins hold them.

A gateway's span metrics are cumulative counters kept in its memory, so a restarted gateway starts
its series again from zero under the same labels. Its total is therefore the last value before
the kill plus the last value after it (and likewise at any other drop), not the last sample.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.harness.prometheus import Prometheus

SERVER, CLIENT = 2, 3  # OTLP span kinds, as the stand-ins' JSON writes them
CHAT_SPAN = "tools/call chat"


def series_total(samples: list[tuple[float, float]], breaks: Iterable[float] = ()) -> float:
    """What a cumulative counter counted over its whole life: the sum of its last value in each
    segment, segments ending at a drop (a restart) or at one of ``breaks`` (known kill times)."""
    cuts = sorted(breaks)
    total, previous = 0.0, None
    for ts, value in sorted(samples):
        if previous is not None:
            prev_ts, prev_value = previous
            if value < prev_value or any(prev_ts < cut <= ts for cut in cuts):
                total += prev_value
        previous = (ts, value)
    return total + (previous[1] if previous else 0.0)


def counted_by(prom: Prometheus, selector: str, label: str,
               breaks: dict[str, list[float]] | None = None) -> dict[str, float]:
    """Span-metric calls matching ``selector``, summed over gateways (collector_instance_id) and
    every other label except ``label``; ``breaks`` gives kill times per gateway."""
    matrix = prom.query(f"traces_span_metrics_calls_total{{{selector}}}[1h]")
    totals: dict[str, float] = defaultdict(float)
    for series in matrix:
        gateway = series["metric"].get("collector_instance_id", "")
        samples = [(float(ts), float(value)) for ts, value in series["values"]]
        totals[series["metric"].get(label, "")] += series_total(samples,
                                                                (breaks or {}).get(gateway, []))
    return dict(totals)


@dataclass(frozen=True)
class TraceView:
    """One trace as the stand-ins hold it: its spans (deduplicated) and the gateways that
    delivered them."""

    trace_id: str
    spans: tuple[dict[str, Any], ...]
    gateways: frozenset[str]

    def names(self, service: str, kind: int) -> set[str]:
        return {s["name"] for s in self.spans
                if s["resource"].get("service.name") == service and s["kind"] == kind}

    def orphans(self) -> list[str]:
        """Names of spans whose parent is not in the trace (a lost span leaves a hole)."""
        ids = {s["spanId"] for s in self.spans}
        return [s["name"] for s in self.spans if s.get("parentSpanId") and
                s["parentSpanId"] not in ids]


def traces(spans_by_gateway: dict[str, list[dict[str, Any]]]) -> dict[str, TraceView]:
    """Every trace in the stand-ins, keyed by trace id."""
    spans: dict[str, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    gateways: dict[str, set[str]] = defaultdict(set)
    for gateway, delivered in spans_by_gateway.items():
        for span in delivered:
            spans[span["traceId"]][(span["spanId"], gateway)] = span
            gateways[span["traceId"]].add(gateway)
    return {tid: TraceView(tid, tuple({k[0]: s for k, s in by_id.items()}.values()),
                           frozenset(gateways[tid])) for tid, by_id in spans.items()}


def unique_spans(spans_by_gateway: dict[str, list[dict[str, Any]]]) -> tuple[int, int]:
    """(distinct spans, duplicates) over all stand-ins: a span delivered twice counts once."""
    seen: set[tuple[str, str]] = set()
    duplicates = 0
    for delivered in spans_by_gateway.values():
        for span in delivered:
            key = (span["traceId"], span["spanId"])
            duplicates += key in seen
            seen.add(key)
    return len(seen), duplicates


def missing_parts(view: TraceView | None, daemon_service: str, bridge_service: str | None,
                  model: str) -> list[str]:
    """What a chat call's trace lacks: the daemon's server, GenAI and upstream HTTP spans, the
    bridge's server and client spans when the call came through ``exai mcp``, and no span whose
    parent is missing. Empty when the trace is complete."""
    if view is None:
        return ["the whole trace"]
    lacks = []
    if CHAT_SPAN not in view.names(daemon_service, SERVER):
        lacks.append(f"{daemon_service} SERVER {CHAT_SPAN}")
    client_names = view.names(daemon_service, CLIENT)
    if f"chat {model}" not in client_names:
        lacks.append(f"{daemon_service} CLIENT chat {model}")
    if not any(name.startswith("POST") for name in client_names):
        lacks.append(f"{daemon_service} CLIENT POST (upstream HTTP)")
    if bridge_service is not None:
        for kind, label in ((SERVER, "SERVER"), (CLIENT, "CLIENT")):
            if CHAT_SPAN not in view.names(bridge_service, kind):
                lacks.append(f"{bridge_service} {label} {CHAT_SPAN}")
    lacks += [f"parent of {name}" for name in view.orphans()]
    return lacks
