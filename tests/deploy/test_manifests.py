"""The Kubernetes path, checked without a cluster: the OpenTelemetry Operator resources use only
fields of opentelemetry.io/v1beta1 and obey its mode rules, every variable a config needs is set
and none is stray, agents find the gateways through the headless Service that selects them, the
token comes from one Secret, and the daemon pods get the agent injected and send to it.

No CRD schema can be fetched here, so the spec's fields are the ones of the operator's API types
(apis/v1beta1: OpenTelemetryCollectorSpec with its inline OpenTelemetryCommonFields and
StatefulSetCommonFields), as recorded below.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Settings
from deploy import manifests
from deploy.collector_config import variables

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"
# OpenTelemetryCollectorSpec's JSON fields (v1beta1), the subset a manifest here may use.
SPEC_FIELDS = {
    "managementState", "resources", "nodeSelector", "args", "replicas", "podDisruptionBudget",
    "securityContext", "podSecurityContext", "podAnnotations", "serviceAccount", "image",
    "imagePullPolicy", "volumeMounts", "ports", "env", "envFrom", "tolerations", "volumes",
    "affinity", "lifecycle", "terminationGracePeriodSeconds", "topologySpreadConstraints",
    "hostNetwork", "shareProcessNamespace", "priorityClassName", "initContainers",
    "additionalContainers", "podDnsConfig", "ipFamilies", "ipFamilyPolicy",
    "volumeClaimTemplates", "persistentVolumeClaimRetentionPolicy", "autoscaler",
    "targetAllocator", "mode", "upgradeStrategy", "config", "configVersions", "ingress",
    "httpRoute", "networkPolicy", "livenessProbe", "readinessProbe", "startupProbe",
    "observability", "configmaps", "daemonSetUpdateStrategy", "deploymentUpdateStrategy",
    "command",
}
MODES = {"daemonset", "deployment", "sidecar", "statefulset"}
# What the operator refuses in sidecar mode (CEL rules and the webhook), and what only a
# StatefulSet takes.
NOT_IN_SIDECAR = {"tolerations", "priorityClassName", "affinity", "additionalContainers",
                  "replicas", "ingress", "autoscaler"}
STATEFULSET_ONLY = {"volumeClaimTemplates", "persistentVolumeClaimRetentionPolicy"}
CONFIG_SECTIONS = {"receivers", "processors", "exporters", "connectors", "extensions", "service"}


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _cr(name: str) -> dict[str, Any]:
    (cr,) = [d for d in _docs(f"{name}.yaml") if d["kind"] == "OpenTelemetryCollector"]
    return cr


def _env(container_env: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container_env}


def _literal(env: dict[str, dict[str, Any]], name: str, config: Any) -> str:
    """What the collector reads for ``name``: the manifest's value, else the config default."""
    if name in env and "value" in env[name]:
        return str(env[name]["value"])
    default = variables(config)[name]
    assert default is not None and name not in env, name
    return default


def _expand(text: str, env: dict[str, dict[str, Any]], config: Any) -> str:
    return re.sub(r"\$\{env:(\w+)(?::-[^}]*)?\}",
                  lambda m: _literal(env, m.group(1), config), text)


@pytest.fixture(params=["agent", "gateway"])
def role(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_crs_use_only_v1beta1_fields_and_their_modes_rules(role):
    cr = _cr(role)
    assert cr["apiVersion"] == "opentelemetry.io/v1beta1"
    spec = cr["spec"]
    assert set(spec) <= SPEC_FIELDS, set(spec) - SPEC_FIELDS
    assert spec["mode"] in MODES
    if spec["mode"] == "sidecar":
        assert not set(spec) & NOT_IN_SIDECAR, set(spec) & NOT_IN_SIDECAR
    if spec["mode"] != "statefulset":
        assert not set(spec) & STATEFULSET_ONLY
    assert set(spec["config"]) <= CONFIG_SECTIONS
    assert {"receivers", "exporters", "service"} <= set(spec["config"])


def test_the_agent_is_a_sidecar_and_the_gateway_two_stateful_replicas():
    assert _cr("agent")["spec"]["mode"] == "sidecar"
    gateway = _cr("gateway")["spec"]
    assert gateway["mode"] == "statefulset" and gateway["replicas"] == 2


def test_images_are_the_compose_collector(role):
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert _cr(role)["spec"]["image"] == compose["otel-collector"]["image"]


def test_every_variable_is_set_and_none_is_stray(role):
    spec = _cr(role)["spec"]
    wanted = variables(spec["config"])
    env = _env(spec["env"])
    missing = {name for name, default in wanted.items() if default is None and name not in env}
    assert not missing, missing
    assert set(env) <= set(wanted), set(env) - set(wanted)


def test_every_pipeline_component_exists_once_variables_are_expanded(role):
    """Component ids like loadbalancing/by_trace_${env:EXAI_OTELCOL_GATEWAY_RESOLVER} must name
    a defined component with the values this manifest sets (dns for the agent, say)."""
    spec = _cr(role)["spec"]
    config, env = spec["config"], _env(spec["env"])
    connectors = config.get("connectors", {})
    for pipeline, stages in config["service"]["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            section = {**config.get(kind, {}), **(connectors if kind != "processors" else {})}
            for component in stages.get(kind, []):
                name = _expand(component, env, config)
                assert name in section, (pipeline, kind, name)
    for extension in config["service"].get("extensions", []):
        assert _expand(extension, env, config) in config["extensions"], extension


def test_the_telemetry_port_is_a_number_the_operator_reads():
    for role in ("agent", "gateway"):
        (reader,) = _cr(role)["spec"]["config"]["service"]["telemetry"]["metrics"]["readers"]
        assert isinstance(reader["pull"]["exporter"]["prometheus"]["port"], int), role


def test_agents_find_the_gateways_through_the_headless_service():
    agent = _cr("agent")["spec"]
    env, config = _env(agent["env"]), agent["config"]
    assert _literal(env, "EXAI_OTELCOL_GATEWAY_RESOLVER", config) == "dns"
    (service,) = [d for d in _docs("gateway.yaml") if d["kind"] == "Service"]
    assert _literal(env, "EXAI_OTELCOL_GATEWAY_DNS_NAME", config) == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is False
    gateway = _cr("gateway")
    # The operator labels a collector's pods app.kubernetes.io/name=<name>-collector and
    # app.kubernetes.io/component=opentelemetry-collector (internal/manifests/manifestutils).
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/name": f"{gateway['metadata']['name']}-collector",
        "app.kubernetes.io/component": "opentelemetry-collector"}
    grpc = _literal(_env(gateway["spec"]["env"]), "EXAI_OTELCOL_OTLP_GRPC_ENDPOINT",
                    gateway["spec"]["config"])
    (port,) = service["spec"]["ports"]
    assert port["port"] == port["targetPort"] == int(grpc.rsplit(":", 1)[1])
    assert int(_literal(env, "EXAI_OTELCOL_GATEWAY_DNS_PORT", config)) == port["port"]


def test_the_agent_listens_on_loopback_only():
    agent = _cr("agent")["spec"]
    env, config = _env(agent["env"]), agent["config"]
    for name in ("EXAI_OTELCOL_OTLP_GRPC_ENDPOINT", "EXAI_OTELCOL_OTLP_HTTP_ENDPOINT"):
        assert _literal(env, name, config).startswith("127.0.0.1:"), name


def test_one_secret_holds_the_token_and_no_manifest_a_literal_one():
    refs = set()
    for role in ("agent", "gateway"):
        token = _env(_cr(role)["spec"]["env"])["EXAI_OTELCOL_GATEWAY_TOKEN"]
        assert "value" not in token
        ref = token["valueFrom"]["secretKeyRef"]
        refs.add((ref["name"], ref["key"]))
    assert refs == {(manifests.TOKEN_SECRET, manifests.TOKEN_KEY)}
    for path in K8S.glob("*.yaml"):
        assert not any(d.get("kind") == "Secret" for d in _docs(path.name)), path.name


def test_each_gateway_pod_has_its_own_queue_volume_and_instance_id():
    spec = _cr("gateway")["spec"]
    (claim,) = spec["volumeClaimTemplates"]
    (mount,) = spec["volumeMounts"]
    assert mount["name"] == claim["metadata"]["name"]
    assert mount["mountPath"] == variables(spec["config"])["EXAI_OTELCOL_STORAGE_DIR"]
    assert spec["podSecurityContext"]["fsGroup"] == manifests.COLLECTOR_UID
    instance = _env(spec["env"])["EXAI_OTELCOL_INSTANCE_ID"]
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_memory_limiter_stays_under_the_container_limit(role):
    spec = _cr(role)["spec"]
    env, config = _env(spec["env"]), spec["config"]
    limit = int(_literal(env, "EXAI_OTELCOL_MEMORY_LIMIT_MIB", config))
    spike = int(_literal(env, "EXAI_OTELCOL_MEMORY_SPIKE_MIB", config))
    memory = spec["resources"]["limits"]["memory"]
    container_mib = int(memory[:-2]) * (1024 if memory.endswith("Gi") else 1)
    assert memory.endswith(("Mi", "Gi")) and spike < limit <= container_mib * 0.8, (role, memory)


def test_daemon_pods_get_the_agent_and_send_to_it():
    (deployment,) = [d for d in _docs("daemon.yaml") if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"]["sidecar.opentelemetry.io/inject"] == manifests.AGENT
    (container,) = pod["spec"]["containers"]
    env = _env(container["env"])
    aliases = {field.alias for field in Settings.model_fields.values()}
    assert all(name in aliases or name.startswith("OTEL_") for name in env), set(env) - aliases
    assert env["EXAI_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    agent = _cr("agent")["spec"]
    listen = _literal(_env(agent["env"]), "EXAI_OTELCOL_OTLP_GRPC_ENDPOINT", agent["config"])
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == f"http://{listen}"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == "grpc"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["ws"] == int(env["EXAI_WS_PORT"]["value"])
    assert ports["health"] == int(env["HEALTH_CHECK_PORT"]["value"])
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert deployment["spec"]["replicas"] >= 2


def test_kustomize_builds_the_directory_into_one_namespace():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomization is checked by the tests above")
    done = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    built = [d for d in yaml.safe_load_all(done.stdout) if d]
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in built)
    assert kinds == sorted([
        ("Namespace", "exai"), ("Service", manifests.GATEWAY_SERVICE), ("Service", "exai-daemon"),
        ("Deployment", "exai-daemon"), ("OpenTelemetryCollector", manifests.AGENT),
        ("OpenTelemetryCollector", manifests.GATEWAY)])
    assert {d["metadata"].get("namespace") for d in built if d["kind"] != "Namespace"} == {
        manifests.NAMESPACE}
    for cr in (d for d in built if d["kind"] == "OpenTelemetryCollector"):
        assert cr["spec"]["config"] == _cr(cr["metadata"]["labels"]["exai-collector-role"]
                                           )["spec"]["config"], "kustomize keeps configs as is"
