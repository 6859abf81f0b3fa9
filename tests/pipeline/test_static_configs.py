"""Offline checks of every pipeline config with the real tools: promtool, amtool, otelcol validate.

These need no running services and fail fast when a config or rule file is broken.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from otel.redaction import SECRET_PATTERNS
from tests.harness.alertmanager import AM_CONFIG, check_config, render_config
from tests.harness.collector import CONFIG, REPO, STANDIN_CONFIG, collector_binary, validate
from tests.harness.procs import require_binary

PROM_DIR = REPO / "backends" / "prometheus"
MANIFEST = REPO / "collector-config" / "manifest.yaml"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False)


def test_promtool_check_config() -> None:
    done = _run(require_binary("promtool"), "check", "config", str(PROM_DIR / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    # The relative rule glob must resolve to the real rule files.
    assert "rules/exai-alerts.yml" in done.stdout + done.stderr


def test_promtool_check_rules() -> None:
    rules = sorted(str(p) for p in (PROM_DIR / "rules").glob("*.yml"))
    assert len(rules) >= 3
    done = _run(require_binary("promtool"), "check", "rules", *rules)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rule_unit_tests() -> None:
    tests = sorted(str(p) for p in (PROM_DIR / "tests").glob("*.test.yml"))
    done = _run(require_binary("promtool"), "test", "rules", *tests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(tests)


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    alerts = set()
    for rule_file in (PROM_DIR / "rules").glob("*.yml"):
        for group in yaml.safe_load(rule_file.read_text())["groups"]:
            alerts |= {r["alert"] for r in group["rules"] if "alert" in r}
    firing, quiet = set(), set()
    for test_file in (PROM_DIR / "tests").glob("*.test.yml"):
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts, "no alert rules found"
    assert alerts - firing == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown quiet"


def test_supabase_backlog_alerts_use_the_archive_metrics() -> None:
    from app.persistence import names as archive_names
    from otel.names import prometheus_name

    text = (PROM_DIR / "rules" / "exai-alerts.yml").read_text()
    for name in (archive_names.OUTBOX_AGE, archive_names.OUTBOX_DEPTH,
                 archive_names.OUTBOX_DEAD_LETTERS):
        assert prometheus_name(name) in text


def test_amtool_check_config_on_the_file_and_the_test_rendering(tmp_path: Path) -> None:
    done = check_config(AM_CONFIG)
    assert done.returncode == 0, done.stdout + done.stderr
    rendered = tmp_path / "alertmanager.yml"
    rendered.write_text(render_config("http://127.0.0.1:9/alerts"))
    done = check_config(rendered)
    assert done.returncode == 0, done.stdout + done.stderr
    routes = yaml.safe_load(rendered.read_text())["route"]
    assert {r["receiver"] for r in routes["routes"]} == {"critical", "default"}


def test_collector_validate_with_compose_defaults() -> None:
    """The config as compose runs it: no variables set, every default applies."""
    done = validate(CONFIG)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("mode", ["drop", "keep"])
def test_collector_validate_content_toggle(mode: str) -> None:
    done = validate(CONFIG, {"EXAI_OTELCOL_GENAI_CONTENT": mode})
    assert done.returncode == 0, done.stdout + done.stderr


def test_collector_rejects_unknown_content_mode() -> None:
    """A typo in the operator toggle fails closed instead of silently keeping content."""
    done = validate(CONFIG, {"EXAI_OTELCOL_GENAI_CONTENT": "yes"})
    assert done.returncode != 0
    assert "content_yes" in done.stdout + done.stderr


def test_standin_config_validates() -> None:
    env = {"STANDIN_GRPC_ENDPOINT": "127.0.0.1:1", "STANDIN_HTTP_ENDPOINT": "127.0.0.1:2",
           "STANDIN_OUT_DIR": "/tmp"}
    done = validate(STANDIN_CONFIG, env)
    assert done.returncode == 0, done.stdout + done.stderr


def _component_types(config: dict, section: str) -> set[str]:
    return {name.split("/")[0] for name in config.get(section, {})}


def test_manifest_builds_exactly_the_components_used() -> None:
    """Every component the two configs use is built in, and nothing else is built."""
    used: dict[str, set[str]] = {}
    for path in (CONFIG, STANDIN_CONFIG):
        config = yaml.safe_load(path.read_text())
        for section in ("receivers", "processors", "exporters", "connectors", "extensions"):
            used.setdefault(section, set()).update(_component_types(config, section))
    listing = _run(collector_binary(), "components").stdout
    built = yaml.safe_load(listing)
    for section, types in used.items():
        built_types = {c["name"] for c in built.get(section) or []}
        assert types <= built_types, f"{section}: {types - built_types} not in the build"
    # The manifest lists one module per used component type (plus nothing unused).
    manifest = yaml.safe_load(MANIFEST.read_text())
    module_count = sum(len(manifest[s]) for s in used)
    assert module_count == sum(len(t) for t in used.values())


def test_config_reads_every_address_from_the_environment() -> None:
    """No hard-coded endpoint: each host:port or URL is a ${env:VAR:-default} reference."""
    text = CONFIG.read_text()
    for line in text.splitlines():
        if re.search(r"^\s*(endpoint|directory|host|port):", line):
            assert "${env:" in line, f"not env-driven: {line.strip()}"


def test_tempo_config_has_the_keys_tempo_2_8_expects() -> None:
    tempo = yaml.safe_load((REPO / "backends" / "tempo" / "tempo.yaml").read_text())
    otlp = tempo["distributor"]["receivers"]["otlp"]["protocols"]
    assert otlp["grpc"]["endpoint"] == "0.0.0.0:4317"  # 2.7+ defaults to localhost
    assert otlp["http"]["endpoint"] == "0.0.0.0:4318"
    assert tempo["ingester"]["trace_idle_period"] == "5s"
    generator = tempo["metrics_generator"]
    assert generator["storage"]["remote_write"][0]["url"].endswith("/api/v1/write")
    assert generator["storage"]["remote_write"][0]["send_exemplars"] is True
    # The 2.x per-tenant override layout ("defaults:"), not the legacy flat key.
    processors = tempo["overrides"]["defaults"]["metrics_generator"]["processors"]
    assert "service-graphs" in processors
    assert "metrics_generator_processors" not in tempo["overrides"]
    assert tempo["storage"]["trace"]["backend"] == "local"


def test_loki_config_has_the_keys_loki_3_expects() -> None:
    loki = yaml.safe_load((REPO / "backends" / "loki" / "loki.yaml").read_text())
    schema = loki["schema_config"]["configs"][-1]
    assert (schema["store"], schema["schema"]) == ("tsdb", "v13")  # required for OTLP ingestion
    assert loki["limits_config"]["allow_structured_metadata"] is True
    assert loki["server"]["http_listen_port"] == 3100
    assert loki["auth_enabled"] is False
    # Keys removed in Loki 3 must not appear.
    assert "table_manager" not in loki and "shared_store" not in str(loki)


def test_transform_scrubs_with_the_same_patterns_as_redaction() -> None:
    """One list of secret patterns: transform/scrub must not drift from redaction's
    blocked_values."""
    config = yaml.safe_load(CONFIG.read_text())
    processors = config["processors"]
    blocked = [p.replace("$$", "$") for p in processors["redaction/content_drop"]["blocked_values"]]
    assert blocked == processors["redaction/content_keep"]["blocked_values"]
    statements = processors["transform/scrub"]["trace_statements"]
    for field in ("span.name", "span.status.message"):
        used = [re.match(rf'replace_pattern\({re.escape(field)}, "(.*)", "\*\*\*\*"\)$', st)
                for st in statements if st.startswith(f"replace_pattern({field},")]
        assert [m.group(1) for m in used if m] == blocked, field


def test_the_daemon_scrubs_with_the_collector_s_secret_patterns() -> None:
    """otel.redaction (first line of defence) and the collector (second) mask the same secrets.

    The collector's patterns avoid backslashes (they are reused inside OTTL strings), so
    ``[[:space:]]`` stands where Python writes ``\\s``.
    """
    config = yaml.safe_load(CONFIG.read_text())
    blocked = config["processors"]["redaction/content_keep"]["blocked_values"]
    assert list(SECRET_PATTERNS) == [p.replace("[[:space:]]", r"\s") for p in blocked]
