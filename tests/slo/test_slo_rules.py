"""The SLO rules and their promtool tests are what slo/slos.yaml says; promtool itself runs the
tests with the others (tests/pipeline/test_static_configs.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from slo import load
from slo.__main__ import main as generate
from slo.rules import RULES_FILE
from slo.scenarios import TESTS_FILE

REPO = Path(__file__).resolve().parents[2]


def _alerts() -> dict[str, dict]:
    groups = yaml.safe_load((REPO / RULES_FILE).read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_the_rules_and_their_tests_are_generated_from_the_slo_file() -> None:
    assert generate(["--check"]) == 0, "run: python -m slo"


def test_every_slo_has_a_page_and_a_ticket_at_its_budget_s_burn_rates() -> None:
    config, alerts = load(), _alerts()
    for slo in config.slos:
        for kind in ("page", "ticket"):
            rule = alerts[f"{slo.alert_prefix}BurnRate{kind.capitalize()}"]
            assert rule["labels"] == {"severity": "critical" if kind == "page" else "warning",
                                      "slo": slo.name}
            for window in getattr(config.burn_rate_alerts, kind):
                threshold = f"> {window.factor * slo.budget:.6g}"
                assert f'ratio_rate{window.long}{{slo="{slo.name}"}} {threshold}' in rule["expr"]
                assert f'ratio_rate{window.short}{{slo="{slo.name}"}} {threshold}' in rule["expr"]


def test_every_generated_alert_is_tested_firing_and_quiet() -> None:
    cases = yaml.safe_load((REPO / TESTS_FILE).read_text())["tests"]
    checks = [check for case in cases for check in case["alert_rule_test"]]
    firing = {check["alertname"] for check in checks if check["exp_alerts"]}
    quiet = {check["alertname"] for check in checks if not check["exp_alerts"]}
    assert set(_alerts()) == firing == quiet
