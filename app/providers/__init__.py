"""LLM providers (Kimi, GLM) behind one OpenAI chat-completions client.

``registry.ProviderRegistry`` is the entry point: it owns the HTTP client, routes a model name to
its provider and exposes each provider's circuit state as a gauge.
"""

from .base import ChatRequest, ChatResult, OnChunk, ProviderError, Usage

__all__ = ["ChatRequest", "ChatResult", "OnChunk", "ProviderError", "Usage"]
