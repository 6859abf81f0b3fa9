"""The installed ``exai`` commands as real processes: the fake upstream and the daemon.

One place for how a process test starts them, so each test states only what it changes.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .procs import LOOPBACK, ManagedProcess, free_port, port_open

EXAI = shutil.which("exai") or str(Path(sys.executable).with_name("exai"))
TOKEN = "test-token-not-a-secret"
FAKE_KEY = "sk-test-fake-provider-key-0123456789"


def spawn_fake_llm(log_dir: Path, *options: str) -> tuple[ManagedProcess, int]:
    """``exai fake-llm`` on a free loopback port, with extra command-line ``options``."""
    port = free_port()
    proc = ManagedProcess(
        name="fake-llm", argv=[EXAI, "fake-llm", "--host", "127.0.0.1", "--port", str(port),
                               *options],
        log_path=log_dir / "fake.log", ready=lambda: port_open(port))
    proc.start()
    return proc, port


def daemon_env(upstream_port: int, ws_port: int, health_port: int, *, token: str = TOKEN,
               key: str = FAKE_KEY, host: str = LOOPBACK, **overrides: str) -> dict[str, str]:
    """The environment of ``exai serve`` against the fake upstream on ``upstream_port``: its
    ports, ``token``, both providers' ``key`` and URLs, threads in memory, no Supabase;
    ``overrides`` add or replace variables (``REDIS_URL``, ``OTEL_*``, limits...)."""
    upstream = f"http://{host}:{upstream_port}"
    return {
        "EXAI_WS_HOST": host, "EXAI_WS_PORT": str(ws_port), "HEALTH_CHECK_PORT": str(health_port),
        "EXAI_WS_TOKEN": token, "REDIS_URL": "", "SUPABASE_URL": "",
        "KIMI_API_KEY": key, "KIMI_API_URL": f"{upstream}/v1",
        "GLM_API_KEY": key, "GLM_API_URL": f"{upstream}/api/paas/v4",
        **overrides,
    }


def spawn_daemon(workdir: Path, upstream_port: int, **env: str) -> tuple[ManagedProcess, str]:
    """``exai serve`` in ``workdir`` (its log: ``workdir/serve.log``) with ``daemon_env``;
    ``env`` adds or overrides variables. Returns the process and the daemon's WebSocket URL."""
    ws_port, health_port = free_port(), free_port()
    proc = ManagedProcess(name="exai-serve", argv=[EXAI, "serve"],
                          env=daemon_env(upstream_port, ws_port, health_port, **env),
                          cwd=workdir, log_path=workdir / "serve.log",
                          ready=lambda: port_open(health_port))
    proc.start()
    return proc, f"ws://127.0.0.1:{ws_port}"
