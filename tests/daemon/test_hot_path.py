"""Guards for the request hot path that a benchmark found and a test can keep found."""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder


class _ImportRecorder(MetaPathFinder):
    """Sees every import that is not already in sys.modules (a search of sys.path)."""

    def __init__(self) -> None:
        self.searched: list[str] = []

    def find_spec(self, fullname, path, target=None):  # noqa: ANN001 - importlib protocol
        self.searched.append(fullname)
        return None


async def test_a_chat_call_searches_for_no_module(client):
    for _ in range(2):  # warm up: first calls may import lazily, once
        assert (await client.call_tool("chat", {"prompt": "warm up", "stream": True}))["ok"]
    recorder = _ImportRecorder()
    sys.meta_path.insert(0, recorder)
    try:
        for stream in (False, True):
            assert (await client.call_tool("chat", {"prompt": "hot path", "stream": stream}))["ok"]
    finally:
        sys.meta_path.remove(recorder)
    # a failed import (httpcore's optional sniffio, say) is retried, and searched for, every time
    assert recorder.searched == []
