"""The unit every store shares: one message of a conversation thread."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from app.timestamps import utc_now_iso

Role = Literal["user", "assistant", "system"]


@dataclass(frozen=True)
class Turn:
    """One message of a thread. ``MAX_CONVERSATION_TURNS`` counts these."""

    role: Role
    content: str
    created_at: str = field(default_factory=utc_now_iso)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Turn:
        return cls(role=data["role"], content=data["content"],  # type: ignore[arg-type]
                   created_at=data.get("created_at") or utc_now_iso())

    def as_message(self) -> dict[str, str]:
        """The OpenAI chat-completions form."""
        return {"role": self.role, "content": self.content}
