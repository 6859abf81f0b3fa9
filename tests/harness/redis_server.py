"""A real redis-server (Debian's package) on a free loopback port."""

from __future__ import annotations

from pathlib import Path

import redis

from .procs import LOOPBACK, ManagedProcess, free_port, require_binary


def _ping(port: int) -> bool:
    return bool(redis.Redis(host=LOOPBACK, port=port, socket_timeout=0.5).ping())


def redis_process(workdir: Path, port: int | None = None) -> ManagedProcess:
    """A redis-server without persistence, bound to loopback; call ``start()`` on it."""
    port = port or free_port()
    binary = require_binary("redis-server")
    workdir.mkdir(parents=True, exist_ok=True)
    proc = ManagedProcess(
        name="redis",
        argv=[binary, "--bind", LOOPBACK, "--port", str(port), "--save", "", "--appendonly", "no",
              "--dir", str(workdir)],
        log_path=workdir / "redis.log",
        ready=lambda: _ping(port),
    )
    proc.port = port  # type: ignore[attr-defined]
    proc.url = f"redis://{LOOPBACK}:{port}/0"  # type: ignore[attr-defined]
    return proc
