"""Fixtures every test package shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.procs import ManagedProcess
from tests.harness.redis_server import redis_process


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """One real redis-server for the session, never stopped by a test. Tests keep apart by their
    keys (random thread ids, a fresh outbox prefix per test); a test that stops or restarts Redis
    starts its own with ``redis_process``."""
    proc = redis_process(tmp_path_factory.mktemp("redis")).start()
    yield proc
    proc.stop()
