"""Storage: conversation threads in Redis (with the in-memory fallback) and the Supabase archive.

Every daemon falls back to memory on its own, so the thread store is shown per instance; the
outbox is one Redis stream for all of them, so its depth is the largest report, never a sum.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import names as n
from .core import RATE, dashboard, dashboard_links, or_zero, prom, row, stat, timeseries
from .overview import instance_variable

if TYPE_CHECKING:
    from .core import Json, Panel

UID = "exai-storage"


def _quantiles(bucket: str, by: str, legend: str) -> list[Json]:
    return [prom(f"histogram_quantile({q}, sum by (le, {by}) (rate({bucket}[{RATE}])))",
                 f"p{int(q * 100)} {legend}") for q in (0.5, 0.95, 0.99)]


def _selected(metric: str, extra: str = "") -> str:
    """``metric`` of the selected daemon instances."""
    return f"{metric}{{{n.INSTANCE}{', ' + extra if extra else ''}}}"


def redis() -> list[Panel]:
    count = f"{n.DB_DURATION}_count{{{n.REDIS}, {n.INSTANCE}"
    fallback_state = n.by_name_regex(n.STORAGE_FALLBACK, n.INSTANCE)
    fallback = [{"type": "value", "options": {
        "0": {"text": "Redis", "color": "green"},
        "1": {"text": "in-memory fallback", "color": "red"}}}]
    return [
        row("Redis (conversation threads)"),
        stat("Thread store", [prom(f"max by (instance) ({fallback_state})", "{{instance}}")],
             mappings=fallback, thresholds=[(None, "green"), (1, "red")], decimals=0,
             width=6, height=8,
             description="Per daemon instance: while Redis is unreachable a daemon serves "
                         "threads from memory (lost on restart) and writes back when Redis "
                         "returns."),
        timeseries("Redis operations per second", [prom(
            f"sum by (db_operation_name) (rate({count}}}[{RATE}]))", "{{db_operation_name}}")],
            unit="ops", width=6),
        timeseries("Redis latency", _quantiles(f"{n.DB_DURATION}_bucket{{{n.REDIS}, {n.INSTANCE}}}",
                                               "db_system_name", ""), unit="s", width=6),
        timeseries("Redis errors per second", [prom(
            f'sum by (error_type) (rate({count}, error_type!=""}}[{RATE}]))',
            "{{error_type}}")], unit="ops", width=6),
    ]


def supabase() -> list[Panel]:
    count = _selected(f"{n.SUPABASE_DURATION}_count")
    failed = _selected(f"{n.SUPABASE_DURATION}_count", 'error_type!=""')
    return [
        row("Supabase (archive, through the outbox)"),
        timeseries("Supabase operations per second", [prom(
            f"sum by (db_collection_name, db_operation_name) (rate({count}[{RATE}]))",
            "{{db_operation_name}} {{db_collection_name}}")], unit="ops"),
        timeseries("Supabase latency", _quantiles(
            _selected(f"{n.SUPABASE_DURATION}_bucket"), "db_operation_name",
            "{{db_operation_name}}"),
            unit="s"),
        timeseries("Supabase errors per second", [prom(
            f"sum by (db_collection_name, error_type) (rate({failed}[{RATE}]))",
            "{{db_collection_name}} {{error_type}}")], unit="ops",
            description="error.type: SQLSTATE or PostgREST code, HTTP status, or exception."),
        stat("Outbox backlog", [
            prom(f"max({_selected(n.OUTBOX_DEPTH)})", "waiting writes"),
            prom(f"max({_selected(n.OUTBOX_AGE)})", "oldest (s)"),
            prom(f"max({_selected(n.OUTBOX_DEAD_LETTERS)})", "dead letters")],
            width=8, height=8, decimals=0, thresholds=[(None, "green"), (100, "orange")],
            description="Writes not yet in Supabase, the age of the oldest, and writes Supabase "
                        "rejected for good (parked for a person). Every daemon reports the "
                        "shared stream, so these are the largest report, not a sum."),
        timeseries("Outbox delivery failures", [prom(
            f"sum by (error_type, exai_supabase_failure_disposition) "
            f"(rate({_selected(n.OUTBOX_FAILURES)}[{RATE}]))",
            "{{error_type}} ({{exai_supabase_failure_disposition}})")], unit="ops", width=8),
        stat("Writes dropped in range", [prom(
            or_zero(f"sum(increase({_selected(n.OUTBOX_DROPPED)}[$__range]))"), "dropped")],
            width=8, height=8, decimals=0, thresholds=[(None, "green"), (1, "red")],
            description="Lost because the in-memory outbox (no Redis) was full."),
    ]


def build() -> Json:
    return dashboard(UID, "exai: Storage",
                     "Thread store health and the Supabase archive's operations and backlog.",
                     [*redis(), *supabase()], variables=[instance_variable()],
                     links=dashboard_links())
