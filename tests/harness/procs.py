"""Start and stop real service processes on free loopback ports.

Every service the suite needs is started here, by the suite; nothing is assumed to be running.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import httpx

LOOPBACK = "127.0.0.1"


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT = 10000
_handed_out: set[int] = set()


@functools.cache
def _below_ephemeral_range() -> range:
    """Ports the kernel never picks for an outgoing connection or a bind to port 0.

    A port taken from the ephemeral range and released is up for grabs again: one CI run lost a
    stand-in to ``bind: address already in use`` because a connection got its port as the local
    end between ``free_port`` and the service's own bind.
    """
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    return range(_LOWEST_PORT, max(low, _LOWEST_PORT + 1000))


def free_port() -> int:
    """A TCP port on loopback that nothing listens on, below the ephemeral range, and not handed
    out before by this process (a service started later may not have bound the last one yet)."""
    candidates = _below_ephemeral_range()
    for _ in range(1000):
        port = random.choice(candidates)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {candidates}")


def port_open(port: int, host: str = LOOPBACK) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``check`` until it is true; fail with ``what`` when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - a check that raises simply is not ready yet
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def require_binary(name: str, *candidates: str) -> str:
    """The path of a program the suite needs, or an error naming the script that installs it."""
    for candidate in (name, *candidates):
        found = shutil.which(candidate) or (candidate if os.path.isfile(candidate) else None)
        if found:
            return found
    raise RuntimeError(f"{name} not found: run scripts/test.sh, which installs it")


@dataclass
class ManagedProcess:
    """A service subprocess with its log file; ``stop`` and ``start`` may be called repeatedly."""

    name: str
    argv: Sequence[str]
    log_path: Path
    ready: Callable[[], bool]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    ready_timeout: float = 30.0
    process: subprocess.Popen | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        env = {**os.environ, **(self.env or {})}
        self.process = subprocess.Popen(
            list(self.argv), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        try:
            wait_until(self._ready_or_dead, self.ready_timeout, f"{self.name} to become ready")
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{self.name} did not start; log tail:\n{self.log_tail()}") from None
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
        return self

    def _ready_or_dead(self) -> bool:
        assert self.process is not None
        return self.process.poll() is not None or self.ready()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@dataclass
class ConfiguredServer:
    """A server run with one config file on a loopback port, ready when ``GET /-/ready`` answers
    200 (Prometheus and Alertmanager alike); ``proc`` starts and stops it."""

    name: ClassVar[str]
    ready_timeout: ClassVar[float] = 30.0

    workdir: Path
    port: int
    config: Path
    proc: ManagedProcess = field(init=False)

    def __post_init__(self) -> None:
        self.proc = ManagedProcess(
            name=self.name, argv=self.argv(), log_path=self.workdir / f"{self.name}.log",
            ready=self._ready, ready_timeout=self.ready_timeout)

    def argv(self) -> list[str]:
        raise NotImplementedError

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def _ready(self) -> bool:
        return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
