"""The project's collector build (collector-config/) as a real process on loopback ports.

The suite runs the very configs docker compose mounts (collector-config/, one list of files per
role: single, gateway, agent); only environment variables differ: loopback endpoints, a scratch
storage directory and short intervals.
The same binary also runs the test-only Tempo/Loki stand-ins (tests/pipeline/standin-config.yaml),
which write everything they receive to JSON-lines files that tests read back.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from deploy.collector_config import CONFIG_DIR, ROLES

from .procs import LOOPBACK, ManagedProcess, free_port, port_open

REPO = Path(__file__).resolve().parents[2]
CONFIG = CONFIG_DIR / "config.yaml"
BUILD_SCRIPT = REPO / "collector-config" / "build.sh"
STANDIN_CONFIG = REPO / "tests" / "pipeline" / "standin-config.yaml"

# Short intervals so a live test sees data within seconds; production defaults are in config.yaml.
FAST_ENV: dict[str, str] = {
    "EXAI_SPANMETRICS_FLUSH_INTERVAL": "1s",
    "EXAI_OTELCOL_TAIL_DECISION_WAIT": "2s",
    "EXAI_OTELCOL_RETRY_MAX_INTERVAL": "1s",
    "EXAI_OTELCOL_BATCH_TIMEOUT": "200ms",
    "EXAI_OTELCOL_LOG_LEVEL": "info",
}


@functools.cache
def collector_binary() -> str:
    """Path of the built collector: $EXAI_OTELCOL_BIN, else whatever build.sh prints (cached
    build)."""
    explicit = os.environ.get("EXAI_OTELCOL_BIN")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise RuntimeError(f"EXAI_OTELCOL_BIN={explicit} is not an executable file")
        return explicit
    done = subprocess.run(
        [str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=3600, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"collector-config/build.sh failed:\n{done.stderr[-4000:]}")
    return done.stdout.strip().splitlines()[-1]


def config_args(role: str) -> list[str]:
    """The ``--config`` flags of one role (``deploy.collector_config.ROLES``, the one list of
    which files each role loads)."""
    return [f"--config={CONFIG_DIR / name}" for name in ROLES[role]]


def validate(config: Path | str,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``otelcol validate`` on a role (a key of ROLES) or one config file, with extra environment
    variables."""
    flags = config_args(config) if isinstance(config, str) else [f"--config={config}"]
    return subprocess.run(
        [collector_binary(), "validate", *flags],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, **(env or {})},
    )


def _healthy(port: int) -> bool:
    return httpx.get(f"http://{LOOPBACK}:{port}/", timeout=1.0).status_code == 200


@dataclass
class Collector:
    """A collector of one role (single by default) with loopback overrides. ``proc``
    starts/stops it."""

    workdir: Path
    env: dict[str, str]
    grpc_port: int
    http_port: int
    health_port: int
    telemetry_port: int
    role: str = "single"
    proc: ManagedProcess = field(init=False)
    otlp_grpc: str = field(init=False)  # what a daemon's OTLP/gRPC exporter points at
    otlp_http: str = field(init=False)

    def __post_init__(self) -> None:
        self.proc = ManagedProcess(
            name=f"otelcol-{self.role}-{self.workdir.name}",
            argv=[collector_binary(), *config_args(self.role)],
            log_path=self.workdir / "otelcol.log", env=self.env,
            ready=lambda: _healthy(self.health_port), ready_timeout=60,
        )
        self.otlp_grpc = f"http://{LOOPBACK}:{self.grpc_port}"
        self.otlp_http = f"http://{LOOPBACK}:{self.http_port}"

    def self_metrics(self) -> dict[str, float]:
        """The collector's own Prometheus metrics, summed by name (labels dropped)."""
        text = httpx.get(f"http://{LOOPBACK}:{self.telemetry_port}/metrics", timeout=2).text
        return _sum_by_name(text)

    def self_metric(self, name: str, **labels: str) -> float:
        """Sum of one self-metric over the series whose labels include ``labels``."""
        text = httpx.get(f"http://{LOOPBACK}:{self.telemetry_port}/metrics", timeout=2).text
        total = 0.0
        for metric, series_labels, value in _parse_exposition(text):
            if metric == name and all(series_labels.get(k) == v for k, v in labels.items()):
                total += value
        return total


def _listening_on_loopback(workdir: Path, telemetry_port: int | None = None
                           ) -> tuple[list[int], dict[str, str]]:
    """Fresh loopback ports (OTLP gRPC, OTLP HTTP, health, self-metrics) and the variables that
    put a collector of any role on them, with the test intervals."""
    workdir.mkdir(parents=True, exist_ok=True)
    ports = [free_port(), free_port(), free_port(), telemetry_port or free_port()]
    return ports, {
        **FAST_ENV,
        "EXAI_OTELCOL_OTLP_GRPC_ENDPOINT": f"{LOOPBACK}:{ports[0]}",
        "EXAI_OTELCOL_OTLP_HTTP_ENDPOINT": f"{LOOPBACK}:{ports[1]}",
        "EXAI_OTELCOL_HEALTH_ENDPOINT": f"{LOOPBACK}:{ports[2]}",
        "EXAI_OTELCOL_TELEMETRY_HOST": LOOPBACK,
        "EXAI_OTELCOL_TELEMETRY_PORT": str(ports[3]),
    }


def main_collector(
    workdir: Path, *, tempo_grpc: str, loki_http: str, remote_write_url: str,
    extra_env: dict[str, str] | None = None, telemetry_port: int | None = None,
    role: str = "single",
) -> Collector:
    """A collector of ``role`` (single: collector-config/config.yaml) on fresh loopback ports;
    call ``proc.start()``.

    ``telemetry_port`` lets a caller that must name the self-metrics target first (Prometheus's
    file_sd targets) choose it.
    """
    ports, env = _listening_on_loopback(workdir, telemetry_port)
    env = {
        **env,
        "EXAI_OTELCOL_STORAGE_DIR": str(workdir / "storage"),
        "EXAI_TEMPO_OTLP_GRPC_ENDPOINT": tempo_grpc,
        "EXAI_LOKI_OTLP_ENDPOINT": loki_http,
        "EXAI_PROMETHEUS_REMOTE_WRITE_URL": remote_write_url,
        **(extra_env or {}),
    }
    return Collector(workdir, env, *ports, role=role)


def agent_collector(workdir: Path, *, gateways: list[str], token: str,
                    extra_env: dict[str, str] | None = None) -> Collector:
    """An agent (collector-config/agent.yaml) on fresh loopback ports, routing to ``gateways``
    (host:port of their OTLP/gRPC receivers) with the static resolver; call ``proc.start()``."""
    ports, env = _listening_on_loopback(workdir)
    env = {
        **env,
        "EXAI_OTELCOL_GATEWAYS": "[" + ",".join(gateways) + "]",
        "EXAI_OTELCOL_GATEWAY_TOKEN": token,
        "EXAI_OTELCOL_INSTANCE_ID": f"agent-{workdir.name}",
        **(extra_env or {}),
    }
    return Collector(workdir, env, *ports, role="agent")


@dataclass
class StandIn:
    """Tempo/Loki stand-in: the built collector receiving OTLP and writing it to JSON-lines
    files."""

    workdir: Path
    grpc_port: int
    http_port: int
    proc: ManagedProcess = field(init=False)
    grpc_endpoint: str = field(init=False)  # what the main collector's Tempo exporter names
    loki_endpoint: str = field(init=False)  # its Loki exporter's (Loki serves OTLP under /otlp)

    def __post_init__(self) -> None:
        env = {
            "STANDIN_GRPC_ENDPOINT": f"{LOOPBACK}:{self.grpc_port}",
            "STANDIN_HTTP_ENDPOINT": f"{LOOPBACK}:{self.http_port}",
            "STANDIN_OUT_DIR": str(self.workdir),
        }
        self.proc = ManagedProcess(
            name=f"standin-{self.workdir.name}",
            argv=[collector_binary(), f"--config={STANDIN_CONFIG}"],
            log_path=self.workdir / "standin.log", env=env,
            ready=lambda: port_open(self.grpc_port) and port_open(self.http_port), ready_timeout=60,
        )
        self.grpc_endpoint = f"{LOOPBACK}:{self.grpc_port}"
        self.loki_endpoint = f"http://{LOOPBACK}:{self.http_port}/otlp"

    def spans(self) -> list[dict[str, Any]]:
        return list(iter_spans(self.workdir / "traces.jsonl"))  # standin-config.yaml's paths

    def log_records(self) -> list[dict[str, Any]]:
        return list(iter_log_records(self.workdir / "logs.jsonl"))


def standin(workdir: Path) -> StandIn:
    """A stand-in on fresh loopback ports; call ``proc.start()``."""
    workdir.mkdir(parents=True, exist_ok=True)
    return StandIn(workdir, free_port(), free_port())


# --- reading what the stand-ins wrote (OTLP/JSON, one export request per line) -------------------

def attr_value(value: dict[str, Any]) -> Any:
    """An OTLP/JSON AnyValue as a Python value."""
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [attr_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return attrs(value["kvlistValue"].get("values", []))
    return None


def attrs(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: attr_value(item.get("value", {})) for item in items}


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:  # a line still being written
                continue


def _resource_items(path: Path, kind: str, scope: str,
                    items: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(decoded resource attributes, item) for every item of every export request in ``path``."""
    for request in _lines(path):
        for group in request.get(kind, []):
            resource = attrs(group.get("resource", {}).get("attributes", []))
            for scoped in group.get(scope, []):
                for item in scoped.get(items, []):
                    yield resource, item


def iter_spans(path: Path) -> Iterator[dict[str, Any]]:
    """Spans with ``resource`` and decoded ``attrs`` added."""
    for resource, span in _resource_items(path, "resourceSpans", "scopeSpans", "spans"):
        yield {**span, "resource": resource, "attrs": attrs(span.get("attributes", []))}


def iter_log_records(path: Path) -> Iterator[dict[str, Any]]:
    """Log records with ``resource``, decoded ``attrs`` and decoded ``body_value`` added."""
    for resource, rec in _resource_items(path, "resourceLogs", "scopeLogs", "logRecords"):
        yield {**rec, "resource": resource, "attrs": attrs(rec.get("attributes", [])),
               "body_value": attr_value(rec.get("body", {}))}


# --- Prometheus text exposition (the collector's self-metrics) ---------------------------------

def _parse_exposition(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, labels = head, {}
        if "{" in head:
            name, _, rest = head.partition("{")
            for part in _split_labels(rest.rstrip("}")):
                key, _, raw = part.partition("=")
                labels[key] = raw.strip('"')
        try:
            yield name, labels, float(value)
        except ValueError:
            continue


def _split_labels(body: str) -> list[str]:
    parts, current, quoted = [], "", False
    for ch in body:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current:
        parts.append(current)
    return parts


def _sum_by_name(text: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for name, _labels, value in _parse_exposition(text):
        totals[name] = totals.get(name, 0.0) + value
    return totals
