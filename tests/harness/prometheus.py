"""Debian's Prometheus (2.42) with the project's backends/prometheus config, on loopback.

Prometheus does not expand environment variables, so backends/prometheus/prometheus.yml finds the
collector and Alertmanager through file_sd target files (targets/*.json, relative to the config
file). The harness runs the real file from a scratch directory holding a link to it (or, with
``fast=True``, a copy whose global scrape/evaluation intervals are 1s: the one documented test-only
override), a link to rules/, and targets files naming loopback ports.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from .procs import ConfiguredServer, free_port, require_binary

REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "backends" / "prometheus"
FAST_INTERVALS = {"scrape_interval": "1s", "evaluation_interval": "1s"}


def _write_targets(confdir: Path, collector_metrics: str | None, alertmanager: str | None) -> None:
    targets = confdir / "targets"
    targets.mkdir(exist_ok=True)
    collector = [{"targets": [collector_metrics]}] if collector_metrics else []
    managers = [{"targets": [alertmanager]}] if alertmanager else []
    (targets / "otel-collector.json").write_text(json.dumps(collector))
    (targets / "alertmanager.json").write_text(json.dumps(managers))


def prepare_config(confdir: Path, *, collector_metrics: str | None, alertmanager: str | None,
                   fast: bool) -> Path:
    """Lay out the real config, rules and loopback targets in ``confdir``; return the config
    path."""
    confdir.mkdir(parents=True, exist_ok=True)
    config = confdir / "prometheus.yml"
    if fast:
        data = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
        data.setdefault("global", {}).update(FAST_INTERVALS)
        config.write_text(yaml.safe_dump(data, sort_keys=False))
    else:
        config.symlink_to(PROM_DIR / "prometheus.yml")
    (confdir / "rules").symlink_to(PROM_DIR / "rules", target_is_directory=True)
    _write_targets(confdir, collector_metrics, alertmanager)
    return config


class Prometheus(ConfiguredServer):
    """A running Prometheus plus a small HTTP API client."""

    name = "prometheus"
    ready_timeout = 60.0

    def argv(self) -> list[str]:
        return [require_binary("prometheus"), f"--config.file={self.config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address={self.address}",
                "--web.enable-remote-write-receiver", "--enable-feature=exemplar-storage",
                "--storage.tsdb.retention.time=2h", "--log.level=warn"]

    @property
    def remote_write_url(self) -> str:
        return f"{self.url}/api/v1/write"

    def _get(self, path: str, **params: Any) -> Any:
        reply = httpx.get(f"{self.url}{path}", params=params, timeout=10).json()
        if reply.get("status") != "success":
            raise RuntimeError(f"Prometheus {path} {params}: {reply}")
        return reply["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (``metric`` labels, ``value`` [ts, "str"])."""
        return self._get("/api/v1/query", query=expr)["result"]

    def scalar(self, expr: str) -> float | None:
        """Value of a query expected to return at most one series; None if empty."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise AssertionError(f"{expr} returned {len(result)} series")
        return float(result[0]["value"][1])

    def series_names(self, matcher: str) -> list[str]:
        """Metric names of the series matching ``matcher`` (e.g. '{service_name="x"}')."""
        data = self._get("/api/v1/series", **{"match[]": matcher})
        return sorted({s["__name__"] for s in data})

    def exemplars(self, expr: str, window_s: float = 3600) -> list[dict[str, Any]]:
        """query_exemplars over the last ``window_s`` seconds."""
        now = time.time()
        return self._get("/api/v1/query_exemplars", query=expr, start=now - window_s, end=now + 60)

    def alerts(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/alerts")["alerts"]

    def target_health(self, job: str) -> list[str]:
        active = self._get("/api/v1/targets")["activeTargets"]
        return [t["health"] for t in active if t["labels"].get("job") == job]


def prometheus(workdir: Path, *, collector_metrics: str | None = None,
               alertmanager: str | None = None, fast: bool = True) -> Prometheus:
    """A Prometheus on a free loopback port (call ``proc.start()``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = prepare_config(workdir / "config", collector_metrics=collector_metrics,
                            alertmanager=alertmanager, fast=fast)
    return Prometheus(workdir, free_port(), config)
