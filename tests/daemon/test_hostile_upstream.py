"""A hostile upstream against the installed daemon, both as separate processes (``exai fake-llm``
and ``exai serve``): huge answers are refused and cost the daemon little memory, raw line
separators in a stream arrive intact, and an error code that echoes the API key goes nowhere.

Run with ``pytest -s`` to see the measured memory figures.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from app.client import DaemonClient
from app.fake_llm import answer_for, content_pieces
from tests.harness.exai_process import spawn_daemon, spawn_fake_llm
from tests.harness.fake_upstream import FakeUpstreamControl
from tests.harness.procs import ManagedProcess, free_port

TOKEN = "hostile-upstream-test-token"
KEY = "sk-hostile-0123456789abcdefECHOCANARY"  # looks real, so a leak shows in a substring search
MIB = 1024 * 1024
ANSWER_BYTES = 100 * MIB
CALLS = 6
RSS_GROWTH_BOUND = 64 * MIB  # the cap is 8 MiB: a few answers' worth of buffers, not 6 x 100 MB


class Fake(FakeUpstreamControl):
    def __init__(self, port: int) -> None:
        super().__init__(f"http://127.0.0.1:{port}")
        self.port = port


@dataclass
class Daemon:
    process: ManagedProcess
    url: str
    log_path: Path

    @property
    def rss(self) -> int:
        assert self.process.process is not None
        return psutil.Process(self.process.process.pid).memory_info().rss


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fake]:
    proc, port = spawn_fake_llm(tmp_path_factory.mktemp("fake"))
    yield Fake(port)
    proc.stop()


@pytest.fixture
def daemon(tmp_path: Path, fake: Fake) -> Iterator[Daemon]:
    fake.reset()
    fake.config(answer_bytes=0, raw_separator_text=False)
    dead_collector = free_port()
    proc, url = spawn_daemon(
        tmp_path, fake.port, EXAI_WS_TOKEN=TOKEN, EXAI_RATE_LIMIT_PER_SEC="10000",
        KIMI_API_KEY=KEY, GLM_API_KEY=KEY,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{dead_collector}",
        OTEL_BSP_SCHEDULE_DELAY="200", OTEL_BLRP_SCHEDULE_DELAY="200",
        OTEL_METRIC_EXPORT_INTERVAL="500", OTEL_EXPORTER_OTLP_TIMEOUT="1")
    yield Daemon(proc, url, tmp_path / "serve.log")
    proc.stop()


async def _chat(client: DaemonClient, prompt: str, stream: bool) -> dict[str, Any]:
    return await client.call_tool("chat", {"prompt": prompt, "model": "glm-4.5",
                                           "stream": stream}, timeout=60)


class PeakSampler:
    """Samples a process's RSS in a thread, for the peak between two readings."""

    def __init__(self, read: Any) -> None:
        self._read = read
        self.peak = read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._read())


async def test_huge_answers_are_refused_and_cost_little_memory(daemon: Daemon, fake: Fake) -> None:
    async with await DaemonClient.connect(daemon.url, TOKEN) as client:
        for i in range(20):  # warm up both paths, so the first reading is a settled one
            assert (await _chat(client, f"warm-up {i}", stream=i % 2 == 1))["ok"]
        fake.config(answer_bytes=ANSWER_BYTES)
        before = daemon.rss
        with PeakSampler(lambda: daemon.rss) as sampler:
            replies = [await _chat(client, f"tell me everything {i}", stream=i % 2 == 1)
                       for i in range(CALLS)]
        after = daemon.rss
        print(f"\ndaemon RSS for {CALLS} x {ANSWER_BYTES // MIB} MiB answers: "
              f"before {before / MIB:.1f} MiB, after {after / MIB:.1f} MiB "
              f"(growth {(after - before) / MIB:+.1f} MiB), peak {sampler.peak / MIB:.1f} MiB "
              f"(+{(sampler.peak - before) / MIB:.1f} MiB)")
        for reply in replies:
            assert reply["ok"] is False, reply.get("outputs")
            error = reply["error"]
            assert error["code"] == "PROVIDER_ERROR"
            assert error["details"]["error_type"] == "response_too_large"
            assert error["message"] == f"glm: the answer exceeded {8 * MIB} bytes"
            streamed = sum(len(f["chunk"].encode()) for f in reply["_frames"]
                           if f["op"] == "stream_chunk")
            assert streamed <= 8 * MIB
        assert after - before < RSS_GROWTH_BOUND, (before, after)

        stats = fake.stats()
        # each answer was abandoned after the cap, not read on; nothing was retried
        assert (stats["streams_aborted"], stats["received"]) == (CALLS, 20 + CALLS), stats
        fake.config(answer_bytes=0)
        assert (await _chat(client, "still there?", stream=False))["ok"]  # circuit still closed
    assert "Traceback" not in daemon.log_path.read_text()


@pytest.mark.parametrize("stream", [True, False])
async def test_raw_line_separators_arrive_intact(daemon: Daemon, fake: Fake, stream: bool) -> None:
    fake.config(raw_separator_text=True)
    prompt = "a story with odd characters"
    async with await DaemonClient.connect(daemon.url, TOKEN) as client:
        reply = await _chat(client, prompt, stream)
    assert reply["ok"], reply
    words, _ = answer_for([{"role": "user", "content": prompt}], None)
    expected = "".join(content_pieces(words, raw_separators=True))
    assert "\u2028" in expected and "\u2029" in expected and "\u0085" in expected
    assert reply["outputs"][0]["text"] == expected
    if stream:
        assert "".join(f["chunk"] for f in reply["_frames"]
                       if f["op"] == "stream_chunk") == expected


async def test_an_error_code_echoing_the_key_reaches_neither_client_nor_log(
        daemon: Daemon, fake: Fake) -> None:
    fake.faults(status=401, count=1, echo_key=True)
    async with await DaemonClient.connect(daemon.url, TOKEN) as client:
        reply = await _chat(client, "hello", stream=False)
    assert reply["ok"] is False and reply["error"]["code"] == "PROVIDER_ERROR"
    assert reply["error"]["message"] == "glm: HTTP 401 (server_error)"
    assert KEY not in json.dumps(reply)
    daemon.process.stop()  # flush and close the log before reading it
    log = daemon.log_path.read_text()
    assert "PROVIDER_ERROR" in log and KEY not in log  # the failure was logged, without the key
