"""deploy/helm/*.values.yaml: the keys are ones the charts read, the Services they create are the
ones the gateways write to (deploy/manifests.py), and they keep the compose backends' settings
where those matter (one tenant, OTLP-ready Loki schema, exemplars, retention).

The charts cannot be downloaded here, so helm does not render them; the keys used are recorded
below from each chart's values.yaml (grafana-community/helm-charts tempo-distributed,
grafana/loki production/helm/loki, grafana/mimir operations/helm/charts/mimir-distributed). A path
ending in "*" passes its subtree through to the backend's own config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from deploy import manifests
from slo import duration_secs, load

REPO = Path(__file__).resolve().parents[2]
HELM = REPO / "deploy" / "helm"
CHART_KEYS: dict[str, set[str]] = {
    "tempo-distributed": {
        "fullnameOverride", "multitenancyEnabled", "traces.otlp.grpc.enabled",
        "metricsGenerator.enabled", "metricsGenerator.config.registry.*",
        "metricsGenerator.config.storage.remote_write", "overrides.defaults.*",
        "storage.trace.backend", "storage.trace.s3.*",
    },
    "loki": {
        "fullnameOverride", "deploymentMode", "loki.auth_enabled", "loki.schemaConfig.*",
        "loki.limits_config.*", "loki.pattern_ingester.enabled", "loki.compactor.*",
        "loki.storage.type", "loki.storage.bucketNames.*", "loki.storage.s3.*",
        "write.replicas", "read.replicas", "backend.replicas", "minio.enabled",
    },
    "mimir-distributed": {"fullnameOverride", "mimir.structuredConfig.*", "minio.enabled"},
}


def _values(chart: str) -> dict[str, Any]:
    return yaml.safe_load((HELM / f"{chart}.values.yaml").read_text())


def _leaves(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        return [leaf for key, value in node.items()
                for leaf in _leaves(value, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]


def _known(path: str, keys: set[str]) -> bool:
    return any(path == key or (key.endswith(".*") and path.startswith(key[:-1]))
               for key in keys)


@pytest.mark.parametrize("chart", sorted(CHART_KEYS))
def test_values_use_only_keys_the_chart_reads(chart):
    unknown = [p for p in _leaves(_values(chart)) if not _known(p, CHART_KEYS[chart])]
    assert not unknown, unknown
    assert set(path.name for path in HELM.glob("*.values.yaml")) == {
        f"{name}.values.yaml" for name in CHART_KEYS}


def test_gateways_write_to_the_services_the_charts_create():
    tempo, loki, mimir = (_values(c) for c in ("tempo-distributed", "loki", "mimir-distributed"))
    host, port = manifests.TEMPO_OTLP_GRPC.rsplit(":", 1)
    assert host == f"{tempo['fullnameOverride']}-distributor" and int(port) == 4317
    assert tempo["traces"]["otlp"]["grpc"]["enabled"] is True
    url = urlsplit(manifests.LOKI_OTLP)
    assert url.hostname == f"{loki['fullnameOverride']}-write" and url.port == 3100
    assert url.path == "/otlp" and loki["deploymentMode"] == "SimpleScalable"
    url = urlsplit(manifests.MIMIR_REMOTE_WRITE)
    assert url.hostname == f"{mimir['fullnameOverride']}-distributor" and url.port == 8080
    assert url.path == "/api/v1/push"
    (remote,) = tempo["metricsGenerator"]["config"]["storage"]["remote_write"]
    assert remote["url"] == manifests.MIMIR_REMOTE_WRITE and remote["send_exemplars"] is True


def test_one_tenant_like_compose_since_the_gateways_send_no_org_id():
    assert _values("tempo-distributed")["multitenancyEnabled"] is False
    assert _values("loki")["loki"]["auth_enabled"] is False
    assert _values("mimir-distributed")["mimir"]["structuredConfig"][
        "multitenancy_enabled"] is False


def test_loki_keeps_the_compose_schema_and_limits():
    compose = yaml.safe_load((REPO / "backends" / "loki" / "loki.yaml").read_text())
    loki = _values("loki")["loki"]
    assert loki["limits_config"] == compose["limits_config"]
    (mine,) = loki["schemaConfig"]["configs"]
    (theirs,) = compose["schema_config"]["configs"]
    for key in ("store", "schema", "index"):
        assert mine[key] == theirs[key], key


def test_tempo_keeps_the_compose_generator_and_retention():
    compose = yaml.safe_load((REPO / "backends" / "tempo" / "tempo.yaml").read_text())
    tempo = _values("tempo-distributed")
    assert tempo["overrides"]["defaults"] == compose["overrides"]["defaults"]
    assert tempo["metricsGenerator"]["config"]["registry"]["external_labels"] == \
        compose["metrics_generator"]["registry"]["external_labels"]


def test_mimir_stores_exemplars_and_keeps_more_than_the_slo_period():
    limits = _values("mimir-distributed")["mimir"]["structuredConfig"]["limits"]
    assert limits["max_global_exemplars_per_user"] > 0
    assert duration_secs(limits["compactor_blocks_retention_period"]) > duration_secs(
        load().period)
