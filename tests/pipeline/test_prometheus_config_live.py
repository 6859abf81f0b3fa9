"""The committed prometheus.yml, unmodified (linked, not copied), loads in a real Prometheus:
rules from rules/*.yml and targets from the file_sd files next to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.harness.procs import wait_until
from tests.harness.prometheus import PROM_DIR, Prometheus, prometheus


@pytest.fixture(scope="module")
def plain_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    prom = prometheus(tmp_path_factory.mktemp("prom-plain"), collector_metrics="127.0.0.1:9",
                      alertmanager="127.0.0.1:10", fast=False)
    prom.proc.start()
    try:
        yield prom
    finally:
        prom.proc.stop()


def test_config_is_the_committed_file(plain_prometheus: Prometheus) -> None:
    assert plain_prometheus.config.is_symlink()
    assert plain_prometheus.config.resolve() == (PROM_DIR / "prometheus.yml").resolve()


def test_rules_load(plain_prometheus: Prometheus) -> None:
    groups = plain_prometheus._get("/api/v1/rules")["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    expected = set()
    for rule_file in Path(PROM_DIR / "rules").glob("*.yml"):
        for group in yaml.safe_load(rule_file.read_text())["groups"]:
            expected |= {r.get("alert") or r.get("record") for r in group["rules"]}
    assert loaded == expected


def test_file_sd_targets_are_picked_up(plain_prometheus: Prometheus) -> None:
    wait_until(lambda: plain_prometheus.target_health("otel-collector"), timeout=30,
               what="the otel-collector target from targets/otel-collector.json")

    def managers() -> list[str]:
        active = plain_prometheus._get("/api/v1/alertmanagers")["activeAlertmanagers"]
        return [m["url"] for m in active]

    wait_until(lambda: managers(), timeout=30, what="Alertmanager from targets/alertmanager.json")
    assert managers() == ["http://127.0.0.1:10/api/v2/alerts"]
