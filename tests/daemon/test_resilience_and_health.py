"""Redis going away mid-run, and the health endpoint that reports it."""

from __future__ import annotations

import re

import httpx

from tests.harness.redis_server import redis_process

from .conftest import eventually


async def _health(url: str, path: str = "/health") -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(url + path)


async def test_health_routes_and_timestamps(running):
    for path in ("/health", "/healthz", "/health/ready"):
        response = await _health(running.health_url, path)
        assert response.status_code == 200
        report = response.json()
        assert report["status"] == "healthy", report
        assert set(report["components"]) >= {"storage", "supabase", "providers", "memory", "disk"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", report["timestamp_utc"])
    assert re.fullmatch(r".*T.*\+1[01]:00", report["timestamp_melbourne"])
    live = await _health(running.health_url, "/health/live")
    assert live.status_code == 200 and live.json()["status"] == "alive"
    assert "sk-test" not in response.text and "test-token" not in response.text


async def test_health_is_503_when_the_daemon_cannot_serve(running):
    await running.daemon.ws.stop()
    response = await _health(running.health_url, "/health/ready")
    assert response.status_code == 503 and response.json()["status"] == "unhealthy"
    assert (await _health(running.health_url, "/health/live")).status_code == 200


async def test_redis_killed_mid_run_then_restarted(start_daemon, tmp_path, capture):
    redis = redis_process(tmp_path / "redis").start()
    daemon = await start_daemon(use_redis=False, REDIS_URL=redis.url)  # type: ignore[attr-defined]
    client = await daemon.client()
    try:
        before = await client.call_tool("chat", {"prompt": "remember me"})
        assert before["ok"]
        redis.kill()
        during = [await client.call_tool("chat", {"prompt": f"while down {i}"}) for i in range(3)]
        assert all(reply["ok"] for reply in during), during
        report = (await _health(daemon.health_url)).json()
        assert report["status"] == "degraded"
        assert report["components"]["storage"]["fallback_active"] is True
        fallback = [p.value for p in capture.metrics()["exai.storage.fallback.active"]]
        assert 1 in fallback

        # a thread started during the outage is continued after Redis returns
        continuation = during[0]["metadata"]["continuation_id"]
        redis.start()
        await eventually(lambda: _healthy(daemon.health_url), timeout=15)
        after = await client.call_tool("chat", {"prompt": "and now?",
                                                "continuation_id": continuation})
        assert after["ok"], after
    finally:
        await client.close()
        redis.stop()


async def _healthy(url: str) -> bool:
    report = (await _health(url)).json()
    return report["components"]["storage"]["status"] == "healthy"
