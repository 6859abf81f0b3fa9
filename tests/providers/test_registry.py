"""Routing model names to providers, the models listing and the circuit gauge."""

from __future__ import annotations

import httpx
import pytest

from app.providers.registry import ProviderRegistry, provider_key_for
from otel import names

from .conftest import API_KEY, Telemetry, settings_for


@pytest.mark.parametrize("model, key, sent", [
    (None, "glm", "glm-4.5-flash"),
    ("", "glm", "glm-4.5-flash"),
    ("auto", "glm", "glm-4.5-flash"),
    ("AUTO", "glm", "glm-4.5-flash"),
    ("kimi-k2-0905-preview", "kimi", "kimi-k2-0905-preview"),
    ("moonshot-v1-8k", "kimi", "moonshot-v1-8k"),
    ("Kimi-Latest", "kimi", "Kimi-Latest"),
    ("glm-4.6", "glm", "glm-4.6"),
    ("gpt-4o", "glm", "glm-4.5-flash"),  # unknown names fall back to DEFAULT_MODEL
    ("kimi", "glm", "glm-4.5-flash"),  # no dash: not a Kimi model name
])
async def test_resolve(make_registry, model: str | None, key: str, sent: str) -> None:
    registry = make_registry(settings_for(None))
    provider, resolved = registry.resolve(model)
    assert (provider.key, resolved) == (key, sent)


async def test_default_model_can_route_to_kimi(make_registry) -> None:
    registry = make_registry(settings_for(None, DEFAULT_MODEL="kimi-k2-turbo-preview"))
    provider, model = registry.resolve("something-else")
    assert (provider.key, provider.otel_name, model) == ("kimi", "moonshot_ai",
                                                         "kimi-k2-turbo-preview")


def test_provider_key_for() -> None:
    assert provider_key_for(" GLM-4.5 ") == "glm"
    assert provider_key_for("mistral-large") is None


async def test_list_models_shows_configuration_but_no_secrets(make_registry) -> None:
    registry = make_registry(settings_for(
        None, GLM_API_KEY="", KIMI_API_URL="https://user:hunter2@kimi.example/v1?token=abc"))
    listing = registry.list_models()
    kimi, glm = listing["providers"]["kimi"], listing["providers"]["glm"]
    assert (kimi["configured"], glm["configured"]) == (True, False)
    assert kimi["provider"] == "moonshot_ai" and glm["provider"] == "z_ai"
    assert kimi["base_url"] == "https://kimi.example/v1"
    assert "kimi-k2-0905-preview" in kimi["models"] and "moonshot-v1-128k" in kimi["models"]
    assert "glm-4.5-flash" in glm["models"] and not set(kimi["models"]) & set(glm["models"])
    assert listing["default_model"] == "glm-4.5-flash"
    text = str(listing)
    assert API_KEY not in text and "hunter2" not in text and "abc" not in text


async def test_circuit_gauge_reports_both_providers(make_registry, telemetry: Telemetry) -> None:
    make_registry(settings_for(None))
    points = telemetry.labelled_points(names.EXAI_CIRCUIT_BREAKER_STATE)
    assert sorted((a[names.GEN_AI_PROVIDER_NAME], p.value) for a, p in points) == [
        ("moonshot_ai", 0), ("z_ai", 0)]


async def test_aclose_closes_only_an_owned_client(telemetry: Telemetry) -> None:
    owned = ProviderRegistry(settings_for(None), telemetry.instruments)
    await owned.aclose()
    assert owned.client.is_closed
    async with httpx.AsyncClient() as shared:
        borrowed = ProviderRegistry(settings_for(None), telemetry.instruments, client=shared)
        await borrowed.aclose()
        assert not shared.is_closed
