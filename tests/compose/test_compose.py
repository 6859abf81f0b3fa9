"""docker-compose.yml, Dockerfile and .env.example, checked without Docker.

Docker cannot run on the build machines, so what can be checked statically is: the compose file
against the Compose Specification's schema, every mounted path, and that every service name, port
and environment variable agrees with the config file on the other end (the collector config, the
Prometheus targets, Alertmanager's webhook, Grafana's datasources, the daemon's settings).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from app.config import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
SCHEMA = Path(__file__).resolve().parent / "compose-spec.schema.json"
SCHEMA_SHA256 = "46b7d35f19dd93a05f8fea530291bf84d881c1791ec167ecf0e6fb94e639d496"
# Config files compose mounts, and the tests that run them (so a mount is never an untested copy).
# The collector's files are run by role: deploy/collector_config.py's ROLES, which the harness uses.
MOUNTS_TESTED_BY = {
    "collector-config/common.yaml": "deploy/collector_config.py",
    "collector-config/config.yaml": "deploy/collector_config.py",
    "collector-config/agent.yaml": "deploy/collector_config.py",
    "collector-config/gateway.yaml": "deploy/collector_config.py",
    "backends/prometheus": "tests/harness/prometheus.py",
    "backends/alertmanager": "tests/harness/alertmanager.py",
    "backends/tempo/tempo.yaml": "tests/pipeline/test_static_configs.py",
    "backends/loki/loki.yaml": "tests/pipeline/test_static_configs.py",
    "grafana/provisioning": "tests/dashboards/test_static.py",
    "grafana/dashboards": "tests/dashboards/test_static.py",
}
ENV_REF = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, Any]:
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in service.get("environment", {}).items()}


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts.append((source[2:], target))
    return mounts


def _published(service: dict[str, Any]) -> list[int]:
    return [int(port.rsplit(":", 1)[1]) for port in service.get("ports", [])]


def _host_port(value: str) -> tuple[str, int]:
    parts = urlsplit(value if "://" in value else f"//{value}")
    assert parts.hostname and parts.port, value
    return parts.hostname, parts.port


def _collector_default(name: str, files: tuple[str, ...] = ("common.yaml", "config.yaml")) -> str:
    """The compose-side default of ``${env:NAME:-default}`` in a collector's files (by default
    the single collector's: common.yaml, then config.yaml)."""
    text = "\n".join((REPO / "collector-config" / f).read_text() for f in files)
    match = re.search(r"\$\{env:" + name + r":-([^}]*)\}", text)
    assert match, name
    return match.group(1)


def _compose_value(value: str) -> str:
    """A compose value with each ``${VAR:-default}`` replaced by its default (an empty .env)."""
    return re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", value)


# --- the specification ------------------------------------------------------------------------

def test_vendored_schema_is_the_recorded_one():
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_compose_file_validates_against_the_compose_spec(compose):
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_check_catches_mistakes(compose):
    broken = json.loads(json.dumps(compose))
    broken["services"]["redis"]["healthcheck"]["intervall"] = "5s"
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert list(validator.iter_errors(broken))


# --- mounts, images, volumes ------------------------------------------------------------------

def test_every_mounted_path_exists_and_is_a_tested_config(services):
    for name, service in services.items():
        for source, _target in _bind_mounts(service):
            assert (REPO / source).exists(), (name, source)
            assert source in MOUNTS_TESTED_BY, f"{name} mounts {source}, which no test runs"
            tester = REPO / MOUNTS_TESTED_BY[source]
            assert tester.exists() and Path(source).name in tester.read_text(), (source, tester)


def test_images_are_pinned_and_the_collector_matches_the_test_build(services):
    manifest = yaml.safe_load((REPO / "collector-config" / "manifest.yaml").read_text())
    for name, service in services.items():
        image = service["image"]
        if "build" in service:
            assert image.endswith(":local"), name
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and re.search(r"\d", tag), (name, image)
    collectors = {name: s["image"] for name, s in services.items()
                  if s["image"].startswith("otel/")}
    assert "otel-collector" in collectors and len(collectors) > 1, collectors
    wanted = f"otel/opentelemetry-collector-contrib:{manifest['dist']['version']}"
    assert set(collectors.values()) == {wanted}, collectors


def test_distroless_backends_probe_their_own_ready_endpoint(services):
    """Tempo 3 and Loki 3.6+ images have no shell, wget or busybox: a healthcheck that calls one
    never passes, and the collector and Grafana wait for Loki to be healthy. Each binary's
    ``-health`` flag (Loki 3.7.0, Tempo 3.0) asks its own /ready on the port its config serves."""
    configs = {"tempo": (REPO / "backends" / "tempo" / "tempo.yaml", "/tempo"),
               "loki": (REPO / "backends" / "loki" / "loki.yaml", "/usr/bin/loki")}
    for name, (config, binary) in configs.items():
        port = yaml.safe_load(config.read_text())["server"]["http_listen_port"]
        url = f"http://127.0.0.1:{port}/ready"
        assert services[name]["healthcheck"]["test"] == [
            "CMD", binary, "-health", f"-health.url={url}"], name


def test_named_volumes_are_declared(compose, services):
    declared = set(compose["volumes"])
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])
            if not v.startswith(("./", "/"))}
    assert used == declared


def test_depends_on_waits_only_for_healthchecks_that_exist(services):
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            target = services[dependency]
            if rule["condition"] == "service_healthy":
                has_check = "healthcheck" in target and not target["healthcheck"].get("disable")
                # The daemon image also has a Dockerfile HEALTHCHECK; compose's one must exist.
                assert has_check, f"{name} waits for {dependency} to be healthy, it has no check"
            if rule["condition"] == "service_completed_successfully":
                assert "restart" not in target, dependency


def test_demo_profile_adds_the_fake_upstream_and_load(services):
    demo = {name for name, s in services.items() if "demo" in s.get("profiles", [])}
    assert demo == {"fake-llm", "loadgen"}
    command = " ".join(services["fake-llm"]["command"])
    assert command.startswith("fake-llm") and "--error-rate" in command
    assert "exai loadgen --url ws://exai-daemon:8079" in services["loadgen"]["command"][0]


def test_demo_load_is_one_the_daemon_rejects_none_of(services):
    """The demo's load, parsed by ``exai loadgen``'s own options: an open loop whose sessions
    each stay under the daemon's per-session rate limit, and whose calls in flight (at the fake's
    delays) fill at most half of the smallest provider's slots, leaving room for its retries."""
    import shlex

    import typer.main

    from app.cli import app, load_plan
    from app.loadgen import DaemonLimits
    from app.providers.table import PROVIDERS

    script = services["loadgen"]["command"][0]
    argv = shlex.split(script.split("exai loadgen", 1)[1].split(";", 1)[0])
    command = typer.main.get_command(app).commands["loadgen"]  # type: ignore[attr-defined]
    options = command.make_context("loadgen", argv).params
    assert options.pop("url") == "ws://exai-daemon:8079" and not options.pop("as_json")
    daemon = {k: v for k, v in _env(services["exai-daemon"]).items() if "${" not in v}
    limits = DaemonLimits.from_settings(Settings(_env_file=None, **daemon))
    plan = load_plan(**options).resolved(limits)
    assert plan.rate is not None and plan.duration_s is not None, "steady whatever the delays"
    assert plan.warnings(limits) == []
    assert plan.rate / (plan.sessions or 1) <= limits.rate_per_sec
    fake = services["fake-llm"]["command"]
    delay_s = sum(float(fake[fake.index(option) + 1]) for option in ("--latency-ms", "--ttft-ms")
                  ) / 1000
    assert plan.rate * delay_s <= min(entry.max_inflight_default for entry in PROVIDERS) / 2
    assert len(set(plan.models)) >= 2 and 0 < plan.stream_share < 1 and plan.continue_share > 0


# --- secrets ----------------------------------------------------------------------------------

def test_no_default_admin_password_or_token():
    text = COMPOSE.read_text()
    assert re.search(r"GF_SECURITY_ADMIN_PASSWORD: \$\{GRAFANA_ADMIN_PASSWORD:\?", text)
    assert re.search(r"EXAI_WS_TOKEN: \$\{EXAI_WS_TOKEN:\?", text)
    example = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert example["GRAFANA_ADMIN_PASSWORD"] == "" and example["EXAI_WS_TOKEN"] == ""
    assert example["SUPABASE_SERVICE_ROLE_KEY"] == ""


def test_every_variable_compose_reads_is_in_env_example():
    documented = {line.split("=", 1)[0] for line in
                  (REPO / ".env.example").read_text().splitlines()
                  if line and not line.startswith("#")}
    referenced = set(ENV_REF.findall(COMPOSE.read_text()))
    assert referenced <= documented, referenced - documented
    assert documented <= referenced, documented - referenced


def test_published_ports_bind_to_the_configurable_address(services):
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("${EXAI_BIND_ADDRESS:-127.0.0.1}:"), (name, port)


# --- consistency with the configs on the other end --------------------------------------------

def test_daemon_settings_and_ports_agree(services):
    daemon = services["exai-daemon"]
    env = _env(daemon)
    aliases = {field.alias for field in Settings.model_fields.values()}
    for key in env:
        assert key in aliases or key.startswith("OTEL_"), f"the daemon does not read {key}"
    assert int(env["EXAI_WS_PORT"]) in _published(daemon)
    assert int(env["HEALTH_CHECK_PORT"]) in _published(daemon)
    assert f":{env['HEALTH_CHECK_PORT']}/health/live" in " ".join(daemon["healthcheck"]["test"])
    host, port = _host_port(_compose_value(env["OTEL_EXPORTER_OTLP_ENDPOINT"]))
    assert host == "otel-collector" and env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert port == _host_port(_collector_default("EXAI_OTELCOL_OTLP_GRPC_ENDPOINT"))[1]
    redis_host, redis_port = _host_port(env["REDIS_URL"])
    assert redis_host == "redis" and redis_port == 6379
    loadgen = " ".join(services["loadgen"]["command"])
    assert f"ws://exai-daemon:{env['EXAI_WS_PORT']}" in loadgen


def test_demo_urls_in_env_example_reach_the_fake_upstream(services):
    example = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    fake_port = int(services["fake-llm"]["command"][services["fake-llm"]["command"]
                                                    .index("--port") + 1])
    for key in ("KIMI_API_URL", "GLM_API_URL"):
        assert _host_port(example[key]) == ("fake-llm", fake_port), key


def test_collector_exports_to_the_compose_backends(services):
    tempo = yaml.safe_load((REPO / "backends" / "tempo" / "tempo.yaml").read_text())
    loki = yaml.safe_load((REPO / "backends" / "loki" / "loki.yaml").read_text())
    tempo_grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]

    host, port = _host_port(_collector_default("EXAI_TEMPO_OTLP_GRPC_ENDPOINT"))
    assert host == "tempo" and host in services and port == _host_port(tempo_grpc)[1]
    host, port = _host_port(_collector_default("EXAI_LOKI_OTLP_ENDPOINT"))
    assert host == "loki" and port == loki["server"]["http_listen_port"]
    host, port = _host_port(_collector_default("EXAI_PROMETHEUS_REMOTE_WRITE_URL"))
    assert host == "prometheus" and port in _published(services["prometheus"])
    assert "--web.enable-remote-write-receiver" in services["prometheus"]["command"]
    assert "--enable-feature=exemplar-storage" in services["prometheus"]["command"]
    assert _collector_default("EXAI_OTELCOL_STORAGE_DIR") in " ".join(
        services["otel-collector"]["volumes"])
    assert f"{tempo['server']['http_listen_port']}" in " ".join(services["tempo"]["ports"])
    assert f":{loki['server']['http_listen_port']}/ready" in " ".join(
        services["loki"]["healthcheck"]["test"])


def test_prometheus_targets_and_alertmanager_webhook_name_compose_services(services):
    targets = REPO / "backends" / "prometheus" / "targets"
    for path in targets.glob("*.json"):
        for group in json.loads(path.read_text()):
            for target in group["targets"]:
                host, port = _host_port(target)
                assert host in services, (path.name, target)
                if host == "otel-collector":
                    assert port == int(_collector_default("EXAI_OTELCOL_TELEMETRY_PORT"))
                else:
                    assert port in _published(services[host]), target
    alertmanager = yaml.safe_load(
        (REPO / "backends" / "alertmanager" / "alertmanager.yml").read_text())
    for receiver in alertmanager["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            host, port = _host_port(hook["url"])
            assert host in services and f'"0.0.0.0", {port}' in services[host]["command"][0]


def test_grafana_datasources_and_dashboards_match_the_mounts(services):
    grafana = services["grafana"]
    datasources = yaml.safe_load((REPO / "grafana" / "provisioning" / "datasources"
                                  / "datasources.yaml").read_text())["datasources"]
    for source in datasources:
        host, port = _host_port(source["url"])
        assert host in services, source["name"]
        assert port in _published(services[host]), source["name"]
    providers = yaml.safe_load((REPO / "grafana" / "provisioning" / "dashboards"
                                / "dashboards.yaml").read_text())["providers"]
    targets = {target for _source, target in _bind_mounts(grafana)}
    assert all(p["options"]["path"] in targets for p in providers)
    home = _env(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(providers[0]["options"]["path"] + "/")
    assert (REPO / "grafana" / "dashboards" / Path(home).name).exists()
    assert _env(grafana)["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_dockerfile_copies_what_exists_and_runs_unprivileged():
    text = (REPO / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases and all(re.search(r":\d+\.\d+\.\d+", base) for base in bases), bases
    assert re.search(r"^USER (?!root)", text, re.M)
    included = {line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.startswith("!")}
    copied = {s.rstrip("/") for line in text.splitlines()
              if line.startswith("COPY") and "--from" not in line
              for s in line.split()[1:-1]}
    assert copied <= included, copied - included


def test_prometheus_keeps_more_than_the_slo_period(services):
    """The 30-day error budgets and spend read 30 days of samples: retention must cover them."""
    from slo import duration_secs, load

    flags = [f for f in services["prometheus"]["command"] if "retention.time" in f]
    assert len(flags) == 1, flags
    retention = flags[0].split("=", 1)[1].split("#")[0].strip()
    assert duration_secs(retention) > duration_secs(load().period), retention
