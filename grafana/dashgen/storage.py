"""Storage: conversation threads in Redis (with the in-memory fallback) and the Supabase archive."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import names as n
from .core import RATE, dashboard, dashboard_links, or_zero, prom, row, stat, timeseries

if TYPE_CHECKING:
    from .core import Json, Panel

UID = "exai-storage"


def _quantiles(bucket: str, by: str, legend: str) -> list[Json]:
    return [prom(f"histogram_quantile({q}, sum by (le, {by}) (rate({bucket}[{RATE}])))",
                 f"p{int(q * 100)} {legend}") for q in (0.5, 0.95, 0.99)]


def redis() -> list[Panel]:
    count = f"{n.DB_DURATION}_count{{{n.REDIS}"
    fallback = [{"type": "value", "options": {
        "0": {"text": "Redis", "color": "green"},
        "1": {"text": "in-memory fallback", "color": "red"}}}]
    return [
        row("Redis (conversation threads)"),
        stat("Thread store", [prom(f"max({n.by_name_regex(n.STORAGE_FALLBACK)})", "store")],
             mappings=fallback, thresholds=[(None, "green"), (1, "red")], decimals=0,
             width=6, height=8,
             description="While Redis is unreachable the daemon serves threads from memory "
                         "(lost on restart) and writes back when Redis returns."),
        timeseries("Redis operations per second", [prom(
            f"sum by (db_operation_name) (rate({count}}}[{RATE}]))", "{{db_operation_name}}")],
            unit="ops", width=6),
        timeseries("Redis latency", _quantiles(f"{n.DB_DURATION}_bucket{{{n.REDIS}}}",
                                               "db_system_name", ""), unit="s", width=6),
        timeseries("Redis errors per second", [prom(
            f'sum by (error_type) (rate({count}, error_type!=""}}[{RATE}]))',
            "{{error_type}}")], unit="ops", width=6),
    ]


def supabase() -> list[Panel]:
    count = f"{n.SUPABASE_DURATION}_count"
    return [
        row("Supabase (archive, through the outbox)"),
        timeseries("Supabase operations per second", [prom(
            f"sum by (db_collection_name, db_operation_name) (rate({count}[{RATE}]))",
            "{{db_operation_name}} {{db_collection_name}}")], unit="ops"),
        timeseries("Supabase latency", _quantiles(
            f"{n.SUPABASE_DURATION}_bucket", "db_operation_name", "{{db_operation_name}}"),
            unit="s"),
        timeseries("Supabase errors per second", [prom(
            f'sum by (db_collection_name, error_type) (rate({count}{{error_type!=""}}[{RATE}]))',
            "{{db_collection_name}} {{error_type}}")], unit="ops",
            description="error.type: SQLSTATE or PostgREST code, HTTP status, or exception."),
        stat("Outbox backlog", [
            prom(f"sum({n.OUTBOX_DEPTH})", "waiting writes"),
            prom(f"max({n.OUTBOX_AGE})", "oldest (s)"),
            prom(f"sum({n.OUTBOX_DEAD_LETTERS})", "dead letters")],
            width=8, height=8, decimals=0, thresholds=[(None, "green"), (100, "orange")],
            description="Writes not yet in Supabase, the age of the oldest, and writes Supabase "
                        "rejected for good (parked for a person)."),
        timeseries("Outbox delivery failures", [prom(
            f"sum by (error_type, exai_supabase_failure_disposition) "
            f"(rate({n.OUTBOX_FAILURES}[{RATE}]))",
            "{{error_type}} ({{exai_supabase_failure_disposition}})")], unit="ops", width=8),
        stat("Writes dropped in range", [prom(
            or_zero(f"sum(increase({n.OUTBOX_DROPPED}[$__range]))"), "dropped")],
            width=8, height=8, decimals=0, thresholds=[(None, "green"), (1, "red")],
            description="Lost because the in-memory outbox (no Redis) was full."),
    ]


def build() -> Json:
    return dashboard(UID, "exai: Storage",
                     "Thread store health and the Supabase archive's operations and backlog.",
                     [*redis(), *supabase()], links=dashboard_links())
