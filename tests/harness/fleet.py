"""The fleet of issue 15 as real processes on loopback: one Redis, one fake LLM, N daemons, agents
beside them, authenticated gateways, Prometheus and Tempo/Loki stand-ins.

Each gateway writes to its own Tempo stand-in, so a test can tell which gateway delivered every
span (and so check that a trace never straddles two gateways). Daemons are split over the agents
round-robin; every collector runs the very role files compose runs (collector-config/).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .collector import Collector, StandIn, agent_collector, main_collector, standin
from .exai_process import EXAI, FAKE_KEY, TOKEN, daemon_env, spawn_fake_llm
from .fake_upstream import FakeUpstreamControl
from .procs import LOOPBACK, ManagedProcess, free_port, port_open
from .prometheus import Prometheus, prometheus
from .redis_server import redis_process

GATEWAY_TOKEN = "fleet-gateway-token-not-a-secret"  # test-only, loopback only
DAEMON_SERVICE = "exai-daemon"
# Daemon settings for a fleet under test load: exports every 200 ms / 1 s, no provider retries (a
# failed upstream answer is one failed call), a breaker that never opens, generous admission.
DAEMON_LOAD_ENV: dict[str, str] = {
    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_BLRP_SCHEDULE_DELAY": "200",
    "OTEL_METRIC_EXPORT_INTERVAL": "1000",
    "EXAI_PROVIDER_MAX_RETRIES": "0", "EXAI_CIRCUIT_FAILURE_THRESHOLD": "100000",
    "EXAI_RATE_LIMIT_PER_SEC": "10000", "EXAI_RATE_LIMIT_BURST": "10000",
    "EXAI_WS_SESSION_MAX_INFLIGHT": "32", "EXAI_WS_GLOBAL_MAX_INFLIGHT": "64",
}


@dataclass
class Gateway:
    """A gateway collector and the Tempo stand-in only it writes to."""

    instance_id: str
    collector: Collector
    tempo: StandIn

    @property
    def address(self) -> str:
        """host:port of its OTLP/gRPC receiver, as an agent's static list names it."""
        return f"{LOOPBACK}:{self.collector.grpc_port}"


@dataclass
class FleetDaemon:
    """``exai serve`` with its own instance id, exporting to one agent."""

    instance_id: str
    proc: ManagedProcess
    url: str
    agent: Collector


@dataclass
class Fleet:
    redis: ManagedProcess
    fake: FakeUpstreamControl
    loki: StandIn
    prometheus: Prometheus
    gateways: list[Gateway]
    agents: list[Collector]
    daemons: list[FleetDaemon]
    started: list[ManagedProcess] = field(default_factory=list)

    @property
    def redis_url(self) -> str:
        return str(self.redis.url)  # type: ignore[attr-defined]

    def spans_by_gateway(self) -> dict[str, list[dict[str, Any]]]:
        """Every span each gateway delivered to its Tempo stand-in, by gateway instance id."""
        return {g.instance_id: g.tempo.spans() for g in self.gateways}

    def agent_spans_accepted(self) -> float:
        """Spans the agents took in from daemons and bridges: what entered the collector tier."""
        return sum(a.self_metric("otelcol_receiver_accepted_spans") for a in self.agents)


def _start_all(procs: Iterable[ManagedProcess], started: list[ManagedProcess]) -> None:
    """Start independent processes at once (collector start-up dominates the fixture's time);
    each is listed in ``started`` first, so a failed start still stops the others."""
    procs = list(procs)
    started += procs
    with ThreadPoolExecutor(max_workers=max(1, len(procs))) as pool:
        list(pool.map(lambda p: p.start(), procs))


def _write_collector_targets(prom: Prometheus, gateways: list[Gateway],
                             agents: list[Collector]) -> None:
    """file_sd targets so Prometheus scrapes every collector's self-metrics, labelled by role."""
    groups = [{"targets": [f"{LOOPBACK}:{c.telemetry_port}"], "labels": {"collector_role": role}}
              for role, c in [("gateway", g.collector) for g in gateways]
              + [("agent", a) for a in agents]]
    (prom.config.parent / "targets" / "otel-collector-fleet.json").write_text(json.dumps(groups))


def _gateway(root: Path, index: int, prom: Prometheus, loki: StandIn,
             env: dict[str, str]) -> Gateway:
    instance_id = f"gateway-{index}"
    tempo = standin(root / f"tempo-{index}")
    collector = main_collector(
        root / instance_id, tempo_grpc=tempo.grpc_endpoint, loki_http=loki.loki_endpoint,
        remote_write_url=prom.remote_write_url, role="gateway",
        extra_env={"EXAI_OTELCOL_GATEWAY_TOKEN": GATEWAY_TOKEN,
                   "EXAI_OTELCOL_INSTANCE_ID": instance_id, **env})
    return Gateway(instance_id, collector, tempo)


def _daemon(root: Path, index: int, upstream_port: int, redis_url: str, agent: Collector,
            env: dict[str, str]) -> FleetDaemon:
    instance_id = f"daemon-{index}"
    workdir = root / instance_id
    workdir.mkdir(parents=True, exist_ok=True)
    ws_port, health_port = free_port(), free_port()
    variables = daemon_env(upstream_port, ws_port, health_port, token=TOKEN, key=FAKE_KEY,
                           REDIS_URL=redis_url, EXAI_INSTANCE_ID=instance_id,
                           OTEL_SERVICE_NAME=DAEMON_SERVICE,
                           OTEL_EXPORTER_OTLP_ENDPOINT=agent.otlp_grpc,
                           **{**DAEMON_LOAD_ENV, **env})
    proc = ManagedProcess(name=f"exai-serve-{instance_id}", argv=[EXAI, "serve"], env=variables,
                          cwd=workdir, log_path=workdir / "serve.log",
                          ready=lambda: port_open(health_port) and port_open(ws_port))
    return FleetDaemon(instance_id, proc, f"ws://{LOOPBACK}:{ws_port}", agent)


@contextmanager
def fleet(root: Path, *, daemons: int = 3, agents: int = 2, gateways: int = 2,
          gateway_env: dict[str, str] | None = None,
          daemon_env_overrides: dict[str, str] | None = None) -> Iterator[Fleet]:
    """Start the whole fleet (tiers in dependency order, each tier's processes in parallel);
    stop it all on exit."""
    root.mkdir(parents=True, exist_ok=True)
    started: list[ManagedProcess] = []
    try:
        redis = redis_process(root / "redis")
        fake_proc, fake_port = spawn_fake_llm(root)
        started.append(fake_proc)
        loki = standin(root / "loki")
        prom = prometheus(root / "prometheus", fast=True)
        tier = [_gateway(root, i + 1, prom, loki, gateway_env or {}) for i in range(gateways)]
        _start_all([redis, loki.proc, prom.proc, *(g.tempo.proc for g in tier)], started)
        _start_all((g.collector.proc for g in tier), started)
        addresses = [g.address for g in tier]
        edge = [agent_collector(root / f"agent-{i + 1}", gateways=addresses, token=GATEWAY_TOKEN)
                for i in range(agents)]
        _start_all((a.proc for a in edge), started)
        _write_collector_targets(prom, tier, edge)
        redis_url = str(redis.url)  # type: ignore[attr-defined]
        fleet_daemons = [_daemon(root, i + 1, fake_port, redis_url, edge[i % agents],
                                 daemon_env_overrides or {}) for i in range(daemons)]
        _start_all((d.proc for d in fleet_daemons), started)
        yield Fleet(redis, FakeUpstreamControl.on_port(fake_port), loki, prom, tier, edge,
                    fleet_daemons, started)
    finally:
        for proc in reversed(started):
            proc.stop(timeout=30)
