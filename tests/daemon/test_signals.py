"""``exai fake-llm`` stops promptly on SIGTERM (as ``docker compose stop`` sends it) and SIGINT,
even with an answer in flight that would take half a minute (before: it waited for every answer
in flight to finish, up to aiohttp's 60 s). ``exai serve``'s bounds are in test_shutdown.py.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import httpx
import pytest

from tests.harness.exai_process import spawn_fake_llm
from tests.harness.fake_upstream import FakeUpstreamControl
from tests.harness.procs import wait_until

STOP_WITHIN_SECS = 2.0


def _stream_in_flight(port: int) -> threading.Thread:
    """A streamed completion whose first chunk the fake holds back (``--ttft-ms``)."""
    def call() -> None:
        body = {"model": "glm-4.5-flash", "stream": True,
                "messages": [{"role": "user", "content": "hello"}]}
        try:
            with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body,
                              headers={"Authorization": "Bearer k"}, timeout=60) as response:
                for _ in response.iter_bytes():
                    pass
        except httpx.HTTPError:
            pass  # the fake cut it when it stopped: expected

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    control = FakeUpstreamControl.on_port(port)
    wait_until(lambda: control.stats()["streams_started"] == 1, 10, "the stream to start")
    return thread


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("busy", [False, True], ids=["idle", "stream-in-flight"])
def test_fake_llm_stops_within_two_seconds(tmp_path, sig, busy):
    proc, port = spawn_fake_llm(tmp_path, "--ttft-ms", "30000")
    try:
        client = _stream_in_flight(port) if busy else None
        assert proc.process is not None
        started = time.monotonic()
        proc.process.send_signal(sig)  # to the process alone, as Docker does
        try:
            returncode = proc.process.wait(timeout=STOP_WITHIN_SECS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"exai fake-llm still running {STOP_WITHIN_SECS} s after {sig.name}")
        elapsed = time.monotonic() - started
        print(f"\nexai fake-llm ({'busy' if busy else 'idle'}) stopped {elapsed:.2f} s after "
              f"{sig.name}")
        assert returncode == 0
        assert f"fake LLM upstream stopped ({sig.name})" in proc.log_path.read_text()
        if client is not None:
            client.join(timeout=5)
            assert not client.is_alive(), "the answer in flight was cut, not left hanging"
    finally:
        proc.stop()
