"""The ``chat`` tool: one turn of a conversation thread, answered by Kimi or GLM.

The client gets the whole answer (already bounded by the provider's response cap); the thread
keeps it cut (``Conversations``).
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field, field_validator

from otel import names

from ..errors import OVER_CAPACITY, ErrorCode, ToolError
from ..limits import CapacityExceeded, Slots
from ..providers.base import ChatRequest, ProviderError
from ..providers.registry import ProviderRegistry
from .base import CallContext, ToolResult
from .conversations import Conversations

# Arguments older clients send; accepted and reported as ignored, never an error.
LEGACY_ARGUMENTS = ("use_websearch", "thinking_mode", "files", "images")


class ChatArguments(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1, max_length=100_000, description="The user's message.")
    model: str | None = Field(None, max_length=200,
                              description='Model name; "auto" or absent means DEFAULT_MODEL.')
    continuation_id: str | None = Field(None, description="Thread to continue (a UUID).")
    system_prompt: str | None = Field(None, max_length=100_000)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    stream: bool = Field(False, description="Send the answer as stream_chunk frames too.")

    @field_validator("continuation_id")
    @classmethod
    def _uuid(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError("continuation_id must be a UUID") from None

    def ignored_arguments(self) -> list[str]:
        return sorted((self.model_extra or {}).keys())


class ChatTool:
    name: ClassVar[str] = "chat"
    description: ClassVar[str] = ("Chat with Kimi or GLM. Continue a conversation by passing the "
                                  "continuation_id from an earlier reply.")
    arguments: ClassVar[type[BaseModel]] = ChatArguments

    def __init__(self, providers: ProviderRegistry, provider_slots: dict[str, Slots],
                 conversations: Conversations) -> None:
        self._providers = providers
        self._provider_slots = provider_slots
        self._conversations = conversations

    async def run(self, args: ChatArguments, ctx: CallContext) -> ToolResult:
        provider, model = self._providers.resolve(args.model)
        continuation_id = args.continuation_id or str(uuid.uuid4())
        span = trace.get_current_span()
        span.set_attributes({names.GEN_AI_PROVIDER_NAME: provider.otel_name,
                             names.GEN_AI_REQUEST_MODEL: model,
                             names.GEN_AI_CONVERSATION_ID: continuation_id})
        history = await self._conversations.history(args.continuation_id)

        messages = [{"role": "system", "content": args.system_prompt}] if args.system_prompt else []
        messages += [turn.as_message() for turn in history]
        messages.append({"role": "user", "content": args.prompt})
        request = ChatRequest(model=model, messages=messages, temperature=args.temperature,
                              max_tokens=args.max_tokens, stream=args.stream,
                              conversation_id=continuation_id)

        await ctx.progress(f"calling {provider.key} model {model}")
        try:
            async with self._provider_slots[provider.key].hold():
                result = await provider.chat(request, ctx.stream_chunk if args.stream else None)
        except CapacityExceeded as exc:
            raise ToolError(ErrorCode.OVER_CAPACITY, f"{provider.key} is at its concurrency limit",
                            details={"retry_after": exc.retry_after, "scope": "provider"},
                            error_type=OVER_CAPACITY) from None
        except ProviderError as exc:
            details: dict[str, Any] = {"provider": provider.key, "error_type": exc.error_type}
            if exc.retry_after is not None:
                details["retry_after"] = exc.retry_after
            raise ToolError(exc.code, str(exc), details=details,
                            error_type=exc.error_type) from None

        await self._conversations.record(continuation_id, ctx.session_id, args.prompt,
                                         result.text, {"provider": provider.key,
                                                       "model": result.model,
                                                       "trace_id": ctx.trace_id})

        metadata: dict[str, Any] = {
            "continuation_id": continuation_id,
            "provider": provider.key,
            "model": result.model,
            "usage": None if result.usage is None else {
                "input_tokens": result.usage.input_tokens,
                "output_tokens": result.usage.output_tokens,
                "cached_input_tokens": result.usage.cached_input_tokens,
                # part of output_tokens; null when the provider reported none
                "reasoning_tokens": result.usage.reasoning_output_tokens},
            "cost_usd": result.cost_usd,
            "finish_reason": result.finish_reason,
            "latency_ms": round(result.latency_s * 1000, 1),
        }
        if result.usage is None:
            metadata["usage_note"] = "the provider reported no token usage"
        if result.cost_usd is None:
            metadata["cost_note"] = "cost unknown: unpriced model or no usage reported"
        if ignored := args.ignored_arguments():
            metadata["ignored_arguments"] = ignored
            span.set_attribute(names.EXAI_IGNORED_ARGUMENTS, ignored)
        return ToolResult(text=result.text, metadata=metadata)
