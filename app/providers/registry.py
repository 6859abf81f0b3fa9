"""The providers of the table, the HTTP client they share, and which model goes where.

Routing (the contract's rule, from ``table.PROVIDERS``): ``kimi-*`` and ``moonshot-*`` go to
Kimi, ``glm-*`` to GLM, matched case-insensitively. ``None``, ``""`` and ``"auto"`` mean
``DEFAULT_MODEL``. Any other name is *not* an error: it is replaced by ``DEFAULT_MODEL`` (old
clients send names this daemon never served), and ``resolve`` returns the model actually used so
the caller can report it.

Tracing of the HTTP calls: with the daemon's own telemetry on, the client's transport makes the
httpx instrumentation's span itself (``instruments.http_client``, see ``otel.http_client``);
otherwise the instrumentation does, when httpx is instrumented (by a zero-code agent, or in tests
by ``HTTPXClientInstrumentor.instrument_client(registry.client, tracer_provider=...)``). Either
way the request span is a child of the GenAI span, because that span is current while the request
runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from app import pricing
from app.config import Settings
from otel import names
from otel.instruments import Instruments

from .circuit import CircuitBreaker
from .openai_compat import Provider, ProviderSpec, Sleep
from .retry import RetryPolicy
from .table import FALLBACK, PROVIDERS, entry_for
from .transport import make_client

AUTO_MODEL = "auto"


def provider_key_for(model: str) -> str | None:
    """Which provider serves ``model`` by its name, or None when the name matches none."""
    entry = entry_for(model)
    return entry.key if entry else None


class ProviderRegistry:
    """Creates and owns the table's providers and their shared ``httpx.AsyncClient``."""

    def __init__(self, settings: Settings, instruments: Instruments, *,
                 client: httpx.AsyncClient | None = None, sleep: Sleep = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._owns_client = client is None
        self.client = client or make_client(settings.provider_timeout_secs,
                                             instruments.http_client)
        policy = RetryPolicy.from_settings(settings)
        specs = [ProviderSpec(entry.key, entry.otel_name, settings.provider(entry).api_url,
                              settings.provider(entry).api_key) for entry in PROVIDERS]
        self.providers: dict[str, Provider] = {
            spec.key: Provider(
                spec, self.client, instruments, timeout_secs=settings.provider_timeout_secs,
                retry_policy=policy, sleep=sleep,
                max_response_bytes=settings.provider_max_response_bytes,
                breaker=CircuitBreaker(settings.circuit_failure_threshold,
                                       settings.circuit_reset_secs, clock=clock))
            for spec in specs
        }
        instruments.observe_gauge(names.EXAI_CIRCUIT_BREAKER_STATE, self._circuit_states)

    def resolve(self, model: str | None) -> tuple[Provider, str]:
        """The provider and the model name to send for a client's ``model`` argument."""
        wanted = (model or "").strip()
        if not wanted or wanted.lower() == AUTO_MODEL:
            wanted = self._settings.default_model
        key = provider_key_for(wanted)
        if key is None:
            wanted = self._settings.default_model
            key = provider_key_for(wanted) or FALLBACK.key
        return self.providers[key], wanted

    def get(self, key: str) -> Provider:
        return self.providers[key]

    def list_models(self) -> dict[str, Any]:
        """Models per provider (from the price table), configured flags, base URLs; no keys."""
        table = pricing.models()
        return {
            "default_model": self._settings.default_model,
            "price_table_version": pricing.version,
            "providers": {
                key: {
                    "provider": p.otel_name,
                    "configured": p.configured,
                    "base_url": p.base_url,
                    "circuit_state": p.circuit_state,
                    "models": [m for m in table if provider_key_for(m) == key],
                }
                for key, p in self.providers.items()
            },
        }

    async def aclose(self) -> None:
        """Close the HTTP client if this registry created it."""
        if self._owns_client:
            await self.client.aclose()

    def _circuit_states(self) -> Iterable[tuple[float, dict[str, str]]]:
        return [(names.CIRCUIT_STATE_VALUES[p.circuit_state],
                 {names.GEN_AI_PROVIDER_NAME: p.otel_name}) for p in self.providers.values()]
