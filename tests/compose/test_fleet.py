"""docker-compose.yml's fleet profile, checked without Docker like the default stack.

The fleet shape (docs/scaling.md): daemons, one agent collector beside each, two gateways behind a
shared bearer token. What can go wrong statically, and is checked here: a collector started with
files other than its role's (tests/harness/collector.py ROLES) or with copies of them; a variable
a config needs left unset, or one set that no config reads; two gateways sharing an instance id
(their span-metric series would collide) or a queue volume; an agent naming a gateway that does
not exist, or missing one; a daemon not paired with exactly one agent; two services publishing
the same host port; and the default profile coming to depend on fleet services or variables.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.harness.collector import ROLES

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "collector-config"
MOUNT_DIR = "/etc/otelcol/"
ENV_DEFAULT = re.compile(r"\$\{env:(\w+)(?::-([^}]*))?\}")
COMPOSE_REF = re.compile(r"\$\{(\w+)(:?[-?])?([^}]*)\}")
TOKEN_VAR = "EXAI_OTELCOL_GATEWAY_TOKEN"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in service.get("environment", {}).items()}


def _default(value: str) -> str:
    """The value compose gives with an empty .env: each ``${VAR:-d}`` becomes ``d``."""
    return COMPOSE_REF.sub(lambda m: m.group(3) if m.group(2) in (":-", "-") else "", value)


def _host_port(value: str) -> tuple[str, int]:
    parts = urlsplit(value if "://" in value else f"//{value}")
    assert parts.hostname and parts.port, value
    return parts.hostname, parts.port


def _config_files(service: dict[str, Any]) -> tuple[str, ...]:
    files = []
    for arg in service["command"]:
        assert arg.startswith(f"--config={MOUNT_DIR}"), arg
        files.append(arg.split("=", 1)[1].removeprefix(MOUNT_DIR))
    return tuple(files)


def _role(service: dict[str, Any]) -> str:
    files = _config_files(service)
    roles = [role for role, role_files in ROLES.items() if role_files == files]
    assert len(roles) == 1, f"{files} is no role of tests/harness/collector.py"
    return roles[0]


def _collectors(services: dict[str, Any]) -> dict[str, str]:
    """Collector service name -> its role."""
    return {name: _role(s) for name, s in services.items() if s["image"].startswith("otel/")}


def _by_role(services: dict[str, Any], role: str) -> list[str]:
    return sorted(name for name, r in _collectors(services).items() if r == role)


def _variables(files: tuple[str, ...]) -> dict[str, str | None]:
    """Every ``${env:NAME[:-default]}`` the files read: name -> default (None: required)."""
    found: dict[str, str | None] = {}
    for name in files:
        for match in ENV_DEFAULT.finditer((CONFIG_DIR / name).read_text()):
            var, default = match.group(1), match.group(2)
            if default is None or found.get(var, "") is None:
                found[var] = None
            else:
                found.setdefault(var, default)
    return found


def _value(service: dict[str, Any], var: str) -> str:
    """What the collector reads for ``var``: compose's environment, else the config default."""
    env = _env(service)
    if var in env:
        return _default(env[var])
    default = _variables(_config_files(service))[var]
    assert default is not None, var
    return default


def _grpc_port(service: dict[str, Any]) -> int:
    return _host_port(_value(service, "EXAI_OTELCOL_OTLP_GRPC_ENDPOINT"))[1]


def _profiled(services: dict[str, Any], profile: str) -> set[str]:
    return {name for name, s in services.items() if profile in s.get("profiles", [])}


# --- shape ------------------------------------------------------------------------------------

def test_the_fleet_profile_is_daemons_agents_gateways(services):
    assert _profiled(services, "fleet") == {
        "exai-daemon-2", "exai-daemon-3", "agent-1", "agent-2", "agent-3",
        "gateway-1", "gateway-2", "fleet-init"}
    assert _by_role(services, "single") == ["otel-collector"]
    assert "profiles" not in services["otel-collector"], "the default stack keeps its collector"
    assert _by_role(services, "agent") == ["agent-1", "agent-2", "agent-3"]
    assert _by_role(services, "gateway") == ["gateway-1", "gateway-2"]


def test_each_collector_mounts_its_roles_files_read_only_and_nothing_else(services):
    for name in _collectors(services):
        service = services[name]
        files = _config_files(service)
        assert files[0] == "common.yaml", name
        mounts = [v for v in service["volumes"] if v.startswith("./collector-config/")]
        assert sorted(mounts) == sorted(
            f"./collector-config/{f}:{MOUNT_DIR}{f}:ro" for f in files), name
        assert all((CONFIG_DIR / f).is_file() for f in files), name


def test_every_variable_a_collector_config_needs_is_set_and_none_is_stray(services):
    for name in _collectors(services):
        service = services[name]
        wanted = _variables(_config_files(service))
        env = _env(service)
        missing = {var for var, default in wanted.items() if default is None and var not in env}
        assert not missing, f"{name} leaves {missing} unset"
        stray = set(env) - set(wanted)
        assert not stray, f"{name} sets {stray}, which none of its files reads"


def test_instance_ids_are_distinct(services):
    ids = {name: _value(services[name], "EXAI_OTELCOL_INSTANCE_ID") for name in
           _collectors(services) if name != "otel-collector"}
    assert len(set(ids.values())) == len(ids), ids
    assert all(ids[name] == name for name in ids), "a collector is named after its service"


# --- gateways ---------------------------------------------------------------------------------

def test_each_gateway_has_its_own_queue_volume_made_writable_first(services):
    storage_dir = _variables(("config.yaml",))["EXAI_OTELCOL_STORAGE_DIR"]
    init = services["fleet-init"]
    volumes = []
    for name in _by_role(services, "gateway"):
        named = [v for v in services[name]["volumes"] if not v.startswith("./")]
        assert len(named) == 1 and named[0].endswith(f":{storage_dir}"), (name, named)
        volume = named[0].split(":")[0]
        volumes.append(volume)
        assert any(v.startswith(f"{volume}:") for v in init["volumes"]), (name, volume)
        assert services[name]["depends_on"]["fleet-init"]["condition"] == \
            "service_completed_successfully"
        assert f"/{name}" in init["command"][0], "fleet-init chowns every gateway volume"
    assert len(set(volumes)) == len(volumes), volumes
    assert "otelcol-storage" not in volumes, "the single collector keeps its own queue"


def test_gateways_write_to_the_same_backends_as_the_single_collector(services):
    single = services["otel-collector"]
    for name in _by_role(services, "gateway"):
        for var in ("EXAI_TEMPO_OTLP_GRPC_ENDPOINT", "EXAI_LOKI_OTLP_ENDPOINT",
                    "EXAI_PROMETHEUS_REMOTE_WRITE_URL"):
            assert _value(services[name], var) == _value(single, var), (name, var)
        assert set(services[name]["depends_on"]) >= {"prometheus", "loki", "tempo"}


# --- agents and daemons -----------------------------------------------------------------------

def test_agents_list_exactly_the_gateways_that_exist(services):
    gateways = {name: _grpc_port(services[name]) for name in _by_role(services, "gateway")}
    for name in _by_role(services, "agent"):
        agent = services[name]
        assert _value(agent, "EXAI_OTELCOL_GATEWAY_RESOLVER") == "static", name
        listed = yaml.safe_load(_value(agent, "EXAI_OTELCOL_GATEWAYS"))
        assert isinstance(listed, list) and len(listed) == len(set(listed)), listed
        assert dict(_host_port(entry) for entry in listed) == gateways, name
        assert set(agent["depends_on"]) == set(gateways), name


def test_each_daemon_sends_to_its_own_agent(services):
    """With EXAI_DAEMON_OTLP_ENDPOINT as .env.example says for the fleet, the daemons and the
    agents pair one to one; with it empty, exai-daemon keeps the single collector."""
    example = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert example["EXAI_DAEMON_OTLP_ENDPOINT"] == ""
    fleet_endpoint = re.search(r"EXAI_DAEMON_OTLP_ENDPOINT=(http://[\w-]+:\d+)",
                               (REPO / "docker-compose.yml").read_text())
    assert fleet_endpoint, "docker-compose.yml's header says what to set for the fleet"
    assert f"set {fleet_endpoint.group(1)}" in (REPO / ".env.example").read_text()
    daemons = {name: s for name, s in services.items() if s.get("command") == ["serve"]}
    assert set(daemons) == {"exai-daemon", "exai-daemon-2", "exai-daemon-3"}
    endpoint = _env(daemons["exai-daemon"])["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert _host_port(_default(endpoint))[0] == "otel-collector"
    assert endpoint.startswith("${EXAI_DAEMON_OTLP_ENDPOINT:-")
    paired = {}
    for name, daemon in daemons.items():
        value = _env(daemon)["OTEL_EXPORTER_OTLP_ENDPOINT"]
        url = fleet_endpoint.group(1) if name == "exai-daemon" else value
        paired[name] = _host_port(url)
    agents = _by_role(services, "agent")
    assert sorted(host for host, _port in paired.values()) == agents
    for host, port in paired.values():
        assert port == _grpc_port(services[host]), host
    ids = [_env(d)["EXAI_INSTANCE_ID"] for d in daemons.values()]
    assert len(set(ids)) == len(ids) == len(daemons), ids
    assert services["exai-daemon"]["depends_on"]["agent-1"]["required"] is False


# --- the token and the default profile --------------------------------------------------------

def test_one_shared_token_from_env_never_a_literal(services):
    readers = _by_role(services, "agent") + _by_role(services, "gateway")
    for name in readers:
        assert _env(services[name])[TOKEN_VAR] == f"${{{TOKEN_VAR}:-}}", name
    assert _env(services["fleet-init"])["TOKEN"] == f"${{{TOKEN_VAR}:-}}"
    check = services["fleet-init"]["command"][0]
    assert '"$${#TOKEN}" -lt 32' in check and "exit 1" in check


def test_the_default_profile_needs_nothing_from_the_fleet(services):
    """Compose interpolates every service whatever the profile (docker/compose#11977), so a
    ``${VAR:?}`` only a fleet service needs would stop the default stack; and a default service
    may wait for a fleet one only with ``required: false``."""
    fleet = _profiled(services, "fleet")
    text = (REPO / "docker-compose.yml").read_text()
    default_required = set()
    for name, service in services.items():
        if not service.get("profiles"):
            default_required |= {m.group(1) for v in _env(service).values()
                                 for m in COMPOSE_REF.finditer(v) if m.group(2) == ":?"}
            for dependency, rule in service.get("depends_on", {}).items():
                if dependency in fleet:
                    assert rule.get("required") is False, (name, dependency)
    required_anywhere = {m.group(1) for m in COMPOSE_REF.finditer(text) if m.group(2) == ":?"}
    assert required_anywhere == default_required, required_anywhere - default_required


def test_no_two_services_publish_the_same_host_port(services):
    seen: dict[int, str] = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            host_port = int(port.rsplit(":", 2)[1])
            assert host_port not in seen, (name, seen.get(host_port), host_port)
            seen[host_port] = name


# --- Prometheus finds the fleet's collectors --------------------------------------------------

def test_prometheus_scrapes_every_fleet_collector_with_its_role(services):
    config = yaml.safe_load((REPO / "backends" / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "otel-collector")
    (dns,) = job["dns_sd_configs"]
    fleet = {name: role for name, role in _collectors(services).items() if role != "single"}
    assert sorted(dns["names"]) == sorted(fleet) and dns["type"] == "A"
    for name in fleet:
        assert dns["port"] == int(_value(services[name], "EXAI_OTELCOL_TELEMETRY_PORT")), name
    role_rules = [r for r in job["relabel_configs"] if r.get("target_label") == "collector_role"]
    for name, role in fleet.items():
        labels = [match.expand(r["replacement"].replace("$1", r"\1")) for r in role_rules
                  if r["source_labels"] == ["__meta_dns_name"]
                  and (match := re.fullmatch(r["regex"], name))]
        assert labels == [role], name
    (fallback,) = [r for r in role_rules if r["regex"] == ";"]
    assert fallback["source_labels"] == ["__meta_dns_name", "collector_role"]
    assert fallback["replacement"] == "single", "file targets without a role are the single one"
