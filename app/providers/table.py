"""Every LLM provider the daemon serves, in one table.

Settings (``app.config``), routing and telemetry names (``registry``), the daemon's per-provider
slots, the dashboards' provider list (``grafana/dashgen``) and the fake upstream's dialects
(``app.fake_llm``) all read this table, so adding or renaming a provider is one edit here (plus
its ``Settings`` fields, whose names and defaults come from here). No imports: the config and the
dashboard generator load it too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProviderEntry:
    """One provider: its names, the models it serves, its settings and its wire dialect."""

    key: str  # the daemon's name for it: listmodels, slots, chat metadata
    label: str  # what people read: dashboard panels and variables
    otel_name: str  # gen_ai.provider.name
    model_prefixes: tuple[str, ...]  # lower-case; a model starting with one is served here
    api_key_env: str
    api_url_env: str
    api_url_default: str
    max_inflight_env: str
    max_inflight_default: int
    # Dialect: the usage object rides on the last choice chunk of a stream, asked for or not
    # (Kimi), rather than on a separate chunk when ``stream_options.include_usage`` asks (OpenAI).
    usage_in_last_choice: bool
    # Dialect: cached input tokens as ``usage.cached_tokens`` (Kimi) rather than OpenAI's
    # ``usage.prompt_tokens_details.cached_tokens``.
    cached_tokens_top_level: bool


KIMI = ProviderEntry(
    key="kimi", label="Kimi", otel_name="moonshot_ai", model_prefixes=("kimi-", "moonshot-"),
    api_key_env="KIMI_API_KEY", api_url_env="KIMI_API_URL",
    api_url_default="https://api.moonshot.ai/v1",
    max_inflight_env="EXAI_KIMI_MAX_INFLIGHT", max_inflight_default=6,
    usage_in_last_choice=True, cached_tokens_top_level=True)
GLM = ProviderEntry(
    key="glm", label="GLM", otel_name="z_ai", model_prefixes=("glm-",),
    api_key_env="GLM_API_KEY", api_url_env="GLM_API_URL",
    api_url_default="https://api.z.ai/api/paas/v4",
    max_inflight_env="EXAI_GLM_MAX_INFLIGHT", max_inflight_default=4,
    usage_in_last_choice=False, cached_tokens_top_level=False)

PROVIDERS: tuple[ProviderEntry, ...] = (KIMI, GLM)
# Serves a DEFAULT_MODEL that matches no prefix (the contract's fallback).
FALLBACK = GLM


def entry_for(model: str) -> ProviderEntry | None:
    """The provider serving ``model`` by its name (case-insensitive), or None for no match."""
    lowered = model.strip().lower()
    for entry in PROVIDERS:
        if lowered.startswith(entry.model_prefixes):
            return entry
    return None
