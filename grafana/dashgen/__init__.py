"""Dashboards as code: each module builds one Grafana dashboard; ``python -m grafana.dashgen``
writes them to grafana/dashboards/*.json (``--check`` fails when the committed JSON is stale)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import collectors, find_request, overview, pipeline, providers, runbooks, slos, storage

BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "overview.json": overview.build,
    "llm-providers.json": providers.build,
    "storage.json": storage.build,
    "pipeline-health.json": pipeline.build,
    "collector-tier.json": collectors.build,
    "find-request.json": find_request.build,
    "slos.json": slos.build,
    "runbooks.json": runbooks.build,
}
