"""The provider table is what settings, routing, slots and the fake upstream read."""

from __future__ import annotations

from app.config import Settings
from app.fake_llm import usage_for
from app.providers.registry import ProviderRegistry
from app.providers.table import PROVIDERS, entry_for

from .conftest import Telemetry


def test_every_provider_reads_its_own_variables_with_their_defaults() -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    for entry in PROVIDERS:
        assert defaults.provider(entry).api_url == entry.api_url_default
        assert defaults.provider(entry).max_inflight == entry.max_inflight_default
        configured = Settings(_env_file=None, **{  # type: ignore[call-arg]
            entry.api_key_env: f"key-{entry.key}", entry.api_url_env: f"http://{entry.key}.test",
            entry.max_inflight_env: 2})
        assert configured.provider(entry).api_key.get_secret_value() == f"key-{entry.key}"
        assert configured.provider(entry).api_url == f"http://{entry.key}.test"
        assert configured.provider(entry).max_inflight == 2
        others = [e for e in PROVIDERS if e is not entry]
        assert all(configured.provider(e).api_url == e.api_url_default for e in others)


async def test_the_registry_serves_each_provider_under_its_names(telemetry: Telemetry) -> None:
    registry = ProviderRegistry(Settings(_env_file=None), telemetry.instruments)  # type: ignore[call-arg]
    try:
        assert list(registry.providers) == [entry.key for entry in PROVIDERS]
        for entry in PROVIDERS:
            assert registry.get(entry.key).otel_name == entry.otel_name
            provider, _ = registry.resolve(entry.model_prefixes[0] + "x")
            assert provider.key == entry.key
    finally:
        await registry.aclose()


def test_the_fake_upstream_speaks_the_dialect_of_the_routed_provider() -> None:
    for entry in PROVIDERS:
        usage = usage_for(entry.model_prefixes[0] + "x", [{"content": "hello"}], 3)
        assert ("cached_tokens" in usage) is entry.cached_tokens_top_level
        assert entry_for(entry.model_prefixes[0].upper() + "X") is entry
