"""Offline checks of every pipeline config with the real tools: promtool, amtool, otelcol validate.

These need no running services and fail fast when a config or rule file is broken.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.collector_config import merged_config
from otel.redaction import SECRET_PATTERNS
from tests.harness.alertmanager import check_config, render_config
from tests.harness.collector import (
    CONFIG_DIR,
    REPO,
    ROLES,
    STANDIN_CONFIG,
    collector_binary,
    validate,
)
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


SLACK_ENV = {"EXAI_ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/secret"}
EMAIL_ENV = {"EXAI_ALERT_EMAIL_TO": "oncall@example.org, lead@example.org",
             "EXAI_ALERT_SMTP_FROM": "alertmanager@example.org",
             "EXAI_ALERT_SMTP_SMARTHOST": "smtp.example.org:587",
             "EXAI_ALERT_SMTP_AUTH_USERNAME": "alertmanager",
             "EXAI_ALERT_SMTP_AUTH_PASSWORD": "smtp-secret"}


@pytest.mark.parametrize(("env", "integrations"), [
    ({}, {"webhook_configs"}),
    (SLACK_ENV, {"webhook_configs", "slack_configs"}),
    (EMAIL_ENV, {"webhook_configs", "email_configs"}),
    ({**SLACK_ENV, **EMAIL_ENV, "EXAI_ALERT_SLACK_CHANNEL": "#exai",
      "EXAI_ALERT_WEBHOOK_URL": "https://hooks.example.org/exai"},
     {"webhook_configs", "slack_configs", "email_configs"}),
], ids=["webhook-only", "with-slack", "with-email", "all"])
def test_amtool_check_config_on_each_choice_of_receivers(
        tmp_path: Path, env: dict[str, str], integrations: set[str]) -> None:
    """The config as render.sh writes it for compose, and the harness's shortened copy."""
    for fast in (False, True):
        rendered = render_config(tmp_path / f"fast-{fast}", env, fast=fast)
        done = check_config(rendered)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "1 templates" in done.stdout
        config = yaml.safe_load(rendered.read_text())
        assert {r["receiver"] for r in config["route"]["routes"]} == {"critical", "default"}
        for receiver in config["receivers"]:
            assert {key for key in receiver if key.endswith("_configs")} == integrations


# What a role needs set beyond the defaults: the gateway tier's shared token (and TLS files).
ROLE_ENV: dict[str, dict[str, str]] = {
    "single": {},
    "gateway": {"EXAI_OTELCOL_GATEWAY_TOKEN": "t0ken-for-validation"},
    "gateway-tls": {"EXAI_OTELCOL_GATEWAY_TOKEN": "t0ken-for-validation",
                    "EXAI_OTELCOL_TLS_CERT_FILE": "/etc/otelcol/tls/tls.crt",
                    "EXAI_OTELCOL_TLS_KEY_FILE": "/etc/otelcol/tls/tls.key"},
    "agent": {"EXAI_OTELCOL_GATEWAY_TOKEN": "t0ken-for-validation"},
}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_collector_validate_with_compose_defaults(role: str) -> None:
    """Each role as compose runs it: only the role's required variables set, defaults apply."""
    done = validate(role, ROLE_ENV[role])
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("role", sorted(ROLES))
@pytest.mark.parametrize("mode", ["drop", "keep"])
def test_collector_validate_content_toggle(role: str, mode: str) -> None:
    done = validate(role, {**ROLE_ENV[role], "EXAI_OTELCOL_GENAI_CONTENT": mode})
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("role", sorted(ROLES))
def test_collector_rejects_unknown_content_mode(role: str) -> None:
    """A typo in the operator toggle fails closed instead of silently keeping content."""
    done = validate(role, {**ROLE_ENV[role], "EXAI_OTELCOL_GENAI_CONTENT": "yes"})
    assert done.returncode != 0
    assert "content_yes" in done.stdout + done.stderr


def test_agent_rejects_unknown_gateway_resolver() -> None:
    """Gateways come from a static list or DNS; a typo fails closed instead of sending nowhere."""
    done = validate("agent", {**ROLE_ENV["agent"], "EXAI_OTELCOL_GATEWAY_RESOLVER": "k8s"})
    assert done.returncode != 0
    assert "_k8s\" which is not configured" in done.stdout + done.stderr


@pytest.mark.parametrize("resolver", ["static", "dns"])
def test_agent_validates_with_either_resolver(resolver: str) -> None:
    done = validate("agent", {**ROLE_ENV["agent"], "EXAI_OTELCOL_GATEWAY_RESOLVER": resolver})
    assert done.returncode == 0, done.stdout + done.stderr


def test_standin_config_validates() -> None:
    env = {"STANDIN_GRPC_ENDPOINT": "127.0.0.1:1", "STANDIN_HTTP_ENDPOINT": "127.0.0.1:2",
           "STANDIN_OUT_DIR": "/tmp"}
    done = validate(STANDIN_CONFIG, env)
    assert done.returncode == 0, done.stdout + done.stderr


def _component_types(config: dict, section: str) -> set[str]:
    return {name.split("/")[0] for name in config.get(section, {})}


def test_manifest_builds_exactly_the_components_used() -> None:
    """Every component the roles and the stand-in use is built in, and nothing else is built."""
    used: dict[str, set[str]] = {}
    configs = [merged_config(role) for role in ROLES] + [yaml.safe_load(STANDIN_CONFIG.read_text())]
    for config in configs:
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
    """No hard-coded endpoint: each host:port, URL or file is a ${env:VAR:-default} reference."""
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        if path.name == "manifest.yaml":
            continue
        for line in path.read_text().splitlines():
            if re.search(r"^\s*(endpoint|directory|host|port|hostname|hostnames|\w+_file):", line):
                assert "${env:" in line, f"{path.name}: not env-driven: {line.strip()}"


# --- Tempo and Loki: Docker cannot run here, so their configs are checked against key lists ------
#
# Each list below is the set of keys the pinned release reads, for every block our configs use,
# copied from the upstream sources named above it. A nested dict is checked key by key; `None`
# marks a value that is a leaf or a sub-tree passed on as-is (OTLP receiver settings, Prometheus
# remote_write entries); a one-element list means "a list of entries of this shape". A key that
# is not listed fails the test, so a key from an older or newer release (Tempo 2.x's `ingester`,
# a typo) cannot slip through. The lists are deliberately partial: a block's keys that we do not
# use may be missing, never a key the release does not have.

# Tempo 3.0 (compose pins 3.0.x; no Tempo 3.1 release was found). From grafana/tempo:
# - docs/sources/tempo/release-notes/v3-0.md ("Upgrade considerations": ingester,
#   ingester_client, compactor and metrics_generator_client removed; per-module block config of
#   live_store/block_builder removed; OpenCensus receiver removed; legacy overrides refused),
# - docs/sources/tempo/set-up-for-tracing/setup-tempo/migrate-to-3.md ("Migrate a monolithic
#   deployment": remove those blocks and the local-blocks processor),
# - docs/sources/tempo/configuration/_index.md of the 3.0 line (Server, Distributor, Live-store,
#   Metrics-generator, Storage, WAL, Compaction and Overrides blocks),
# - modules/generator/config.go of the 3.0 line (generator.Config: no traces_storage),
# - example/docker-compose/single-binary/tempo.yaml as shipped with the 3.0.0 example compose.
TEMPO_KEYS_RELEASE = "3.0"
_DSKIT_SERVER = dict.fromkeys([
    "http_listen_network", "http_listen_address", "http_listen_port", "grpc_listen_network",
    "grpc_listen_address", "grpc_listen_port", "log_level", "log_format", "http_path_prefix",
    "register_instrumentation", "graceful_shutdown_timeout", "http_server_read_timeout",
    "http_server_write_timeout", "http_server_idle_timeout", "grpc_server_max_recv_msg_size",
    "grpc_server_max_send_msg_size",
])
TEMPO_3_0_KEYS: dict = {
    **dict.fromkeys([
        "target", "auth_enabled", "multitenancy_enabled", "shutdown_delay",
        "stream_over_http_enabled", "http_api_prefix", "enable_go_runtime_metrics",
        "span_profiling", "memory", "internal_server", "querier", "query_frontend", "ingest",
        "block_builder", "live_store_client", "memberlist", "usage_report", "cache",
        "backend_scheduler", "backend_scheduler_client", "backend_worker",
    ]),
    "server": _DSKIT_SERVER,
    "distributor": {
        **dict.fromkeys([
            "ring", "forwarders", "log_received_spans", "log_discarded_spans",
            "metric_received_spans", "retry_after_on_resource_exhausted", "max_attribute_bytes",
            "usage",
        ]),
        "receivers": {"otlp": {"protocols": {"grpc": None, "http": None}},
                      **dict.fromkeys(["jaeger", "zipkin", "kafka"])},
    },
    "live_store": dict.fromkeys([
        "ring", "partition_ring", "metrics", "commit_interval", "flush_check_period",
        "flush_op_timeout", "max_trace_idle", "max_trace_live", "max_live_traces_bytes",
        "max_block_bytes", "max_block_duration", "query_block_concurrency",
        "complete_block_concurrency", "complete_block_timeout", "readiness_target_lag",
        "readiness_max_wait", "fail_on_high_lag", "remove_owner_on_shutdown",
        "shutdown_marker_dir", "wal",
    ]),
    "metrics_generator": {
        **dict.fromkeys([
            "ring", "metrics_ingestion_time_range_slack", "override_ring_key", "ring_mode",
            "codec", "limiter_type", "ingest_concurrency", "instance_id",
        ]),
        "processor": dict.fromkeys(["service_graphs", "span_metrics", "host_info"]),
        "registry": dict.fromkeys([
            "collection_interval", "stale_duration", "external_labels", "inject_tenant_id_as",
            "max_label_name_length", "max_label_value_length",
        ]),
        "storage": dict.fromkeys([
            "path", "wal", "remote_write", "remote_write_flush_deadline",
            "remote_write_add_org_id_header",
        ]),
    },
    "storage": {"trace": {
        **dict.fromkeys([
            "backend", "gcs", "s3", "azure", "block", "search", "pool", "blocklist_poll",
            "blocklist_poll_concurrency", "blocklist_poll_fallback",
            "blocklist_poll_tenant_index_builders", "blocklist_poll_stale_tenant_index",
            "blocklist_poll_jitter_ms", "empty_tenant_deletion_age",
            "empty_tenant_deletion_enabled",
        ]),
        "local": {"path": None},
        "wal": dict.fromkeys(["path", "ingestion_time_range_slack"]),
    }},
    "overrides": {
        **dict.fromkeys([
            "per_tenant_override_config", "per_tenant_override_period",
            "enable_legacy_overrides", "user_configurable_overrides",
        ]),
        "defaults": {
            **dict.fromkeys([
                "ingestion", "read", "forwarders", "global", "storage", "cost_attribution",
            ]),
            "compaction": dict.fromkeys([
                "block_retention", "compaction_window", "compaction_disabled",
            ]),
            "metrics_generator": dict.fromkeys([
                "ring_size", "processors", "max_active_series", "max_active_entities",
                "max_cardinality_per_label", "collection_interval", "disable_collection",
                "trace_id_label_name", "ingestion_time_range_slack", "generate_native_histograms",
                "span_name_sanitization", "remote_write_headers", "forwarder", "processor",
            ]),
        },
    },
}
# overrides.defaults.metrics_generator.processors values Tempo 3.0 accepts (local-blocks is gone).
TEMPO_3_0_PROCESSORS = {"service-graphs", "span-metrics", "host-info"}

# Loki 3.7 (compose pins 3.7.x). From grafana/loki:
# - pkg/loki/loki.go of the 3.x line (loki.Config: the top-level keys),
# - pkg/loki/common/common.go (common.Config, Storage, FilesystemConfig),
# - docs/sources/shared/configuration.md (the generated reference: pattern_ingester, compactor,
#   limits_config, schema_config period_config),
# - docs/sources/release-notes/v3-7.md (3.7.0 adds `loki -health`, which compose's
#   healthcheck uses: the image has had no busybox since 3.6).
LOKI_KEYS_RELEASE = "3.7"
LOKI_3_7_KEYS: dict = {
    **dict.fromkeys([
        "target", "auth_enabled", "ballast_bytes", "internal_server", "distributor", "querier",
        "query_scheduler", "frontend", "query_range", "ruler", "ruler_storage",
        "ingester_client", "ingester", "block_builder", "block_scheduler", "index_gateway",
        "bloom_build", "bloom_gateway", "storage_config", "chunk_store_config",
        "compactor_grpc_client", "frontend_worker", "memberlist", "kafka_config",
        "runtime_config", "operational_config", "tracing", "analytics", "profiling",
        "shutdown_delay",
    ]),
    "server": _DSKIT_SERVER,
    "common": {
        **dict.fromkeys([
            "path_prefix", "persist_tokens", "replication_factor", "instance_interface_names",
            "instance_addr", "compactor_address", "compactor_grpc_address",
        ]),
        "ring": {"kvstore": dict.fromkeys(["store", "prefix", "consul", "etcd", "multi"]),
                 **dict.fromkeys(["heartbeat_period", "heartbeat_timeout", "instance_addr",
                                  "instance_id", "instance_port", "zone_awareness_enabled"])},
        "storage": {"filesystem": dict.fromkeys(["chunks_directory", "rules_directory"]),
                    **dict.fromkeys(["s3", "gcs", "azure", "swift", "hedging"])},
    },
    "schema_config": {"configs": [{
        **dict.fromkeys(["from", "store", "object_store", "schema", "chunks", "row_shards"]),
        "index": dict.fromkeys(["prefix", "period", "tags"]),
    }]},
    "limits_config": dict.fromkeys([
        "ingestion_rate_mb", "ingestion_burst_size_mb", "max_global_streams_per_user",
        "reject_old_samples", "reject_old_samples_max_age", "max_query_lookback",
        "allow_structured_metadata", "max_structured_metadata_size", "volume_enabled",
        "retention_period", "discover_service_name", "discover_log_levels", "otlp_config",
    ]),
    "pattern_ingester": dict.fromkeys([
        "enabled", "lifecycler", "client_config", "concurrent_flushes", "flush_check_period",
        "max_clusters", "max_eviction_ratio", "metric_aggregation",
    ]),
    "compactor": dict.fromkeys([
        "working_directory", "compaction_interval", "apply_retention_interval",
        "retention_enabled", "retention_delete_delay", "retention_delete_worker_count",
        "retention_table_timeout", "delete_request_store", "delete_request_store_key_prefix",
        "delete_request_cancel_period", "delete_max_interval",
    ]),
}


def _keys_not_read(config: object, allowed: object, path: str = "") -> list[str]:
    """Dotted paths in ``config`` that the key list ``allowed`` does not have."""
    if allowed is None:
        return []
    if isinstance(allowed, list):
        assert isinstance(config, list), path
        return [bad for i, item in enumerate(config)
                for bad in _keys_not_read(item, allowed[0], f"{path}[{i}]")]
    assert isinstance(config, dict) and isinstance(allowed, dict), path
    unknown = []
    for key, value in config.items():
        where = f"{path}.{key}" if path else key
        unknown += [where] if key not in allowed else _keys_not_read(value, allowed[key], where)
    return unknown


TEMPO_CONFIG = REPO / "backends" / "tempo" / "tempo.yaml"
LOKI_CONFIG = REPO / "backends" / "loki" / "loki.yaml"


def _backend_config(name: str) -> dict:
    return yaml.safe_load({"tempo": TEMPO_CONFIG, "loki": LOKI_CONFIG}[name].read_text())


def _compose_image_tag(service: str) -> str:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return compose["services"][service]["image"].rpartition(":")[2]


@pytest.mark.parametrize(("service", "release"), [("tempo", TEMPO_KEYS_RELEASE),
                                                   ("loki", LOKI_KEYS_RELEASE)])
def test_key_lists_describe_the_pinned_images(service: str, release: str) -> None:
    """A new minor release gets its keys re-derived before compose may pin it."""
    assert _compose_image_tag(service).startswith(f"{release}."), service


def test_tempo_config_has_only_keys_tempo_3_0_reads() -> None:
    tempo = _backend_config("tempo")
    assert _keys_not_read(tempo, TEMPO_3_0_KEYS) == []
    otlp = tempo["distributor"]["receivers"]["otlp"]["protocols"]
    assert otlp["grpc"]["endpoint"] == "0.0.0.0:4317"  # the receivers default to localhost
    assert otlp["http"]["endpoint"] == "0.0.0.0:4318"
    assert tempo["live_store"]["max_trace_idle"] == "5s"
    generator = tempo["metrics_generator"]
    assert generator["storage"]["remote_write"][0]["url"].endswith("/api/v1/write")
    assert generator["storage"]["remote_write"][0]["send_exemplars"] is True
    # Scoped overrides ("defaults:"): 3.0 refuses to start on the legacy flat layout.
    processors = tempo["overrides"]["defaults"]["metrics_generator"]["processors"]
    assert set(processors) <= TEMPO_3_0_PROCESSORS
    # The service map (grafana/provisioning/datasources: serviceMap) reads service-graph series.
    assert "service-graphs" in processors
    assert tempo["storage"]["trace"]["backend"] == "local"
    # 3.0 reads vParquet4 and later only (the default is vParquet4).
    version = tempo["storage"]["trace"].get("block", {}).get("version", "vParquet4")
    assert version in ("vParquet4", "vParquet5")


def test_loki_config_has_only_keys_loki_3_7_reads() -> None:
    loki = _backend_config("loki")
    assert _keys_not_read(loki, LOKI_3_7_KEYS) == []
    schema = loki["schema_config"]["configs"][-1]
    assert (schema["store"], schema["schema"]) == ("tsdb", "v13")  # required for OTLP ingestion
    assert loki["limits_config"]["allow_structured_metadata"] is True
    assert loki["server"]["http_listen_port"] == 3100
    assert loki["auth_enabled"] is False
    # Retention needs a delete-request store since 3.0.
    assert loki["compactor"]["retention_enabled"] is True
    assert loki["compactor"]["delete_request_store"] == "filesystem"


def test_the_key_check_catches_keys_the_pinned_release_does_not_have() -> None:
    """What the Tempo 2.8 and Loki 2.x configs had, and a typo, are reported with their paths."""
    tempo = _backend_config("tempo")
    tempo["ingester"] = {"trace_idle_period": "5s"}
    tempo["compactor"] = {"compaction": {"block_retention": "168h"}}
    tempo["metrics_generator"]["traces_storage"] = {"path": "/var/tempo/generator/traces"}
    tempo["distributor"]["receivers"]["opencensus"] = None
    tempo["live_store"]["max_trace_idel"] = "5s"
    assert sorted(_keys_not_read(tempo, TEMPO_3_0_KEYS)) == [
        "compactor", "distributor.receivers.opencensus", "ingester", "live_store.max_trace_idel",
        "metrics_generator.traces_storage"]
    loki = _backend_config("loki")
    loki["schema_config"]["configs"][0]["index"]["shared_store"] = "filesystem"
    loki["compactor"]["shared_store"] = "filesystem"
    assert sorted(_keys_not_read(loki, LOKI_3_7_KEYS)) == [
        "compactor.shared_store", "schema_config.configs[0].index.shared_store"]


def test_transform_scrubs_with_the_same_patterns_as_redaction() -> None:
    """One list of secret patterns: transform/scrub must not drift from redaction's
    blocked_values."""
    config = yaml.safe_load((CONFIG_DIR / "common.yaml").read_text())
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
    config = yaml.safe_load((CONFIG_DIR / "common.yaml").read_text())
    blocked = config["processors"]["redaction/content_keep"]["blocked_values"]
    assert list(SECRET_PATTERNS) == [p.replace("[[:space:]]", r"\s") for p in blocked]
