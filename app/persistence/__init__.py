"""Supabase persistence: conversations and messages archived through a durable outbox.

The daemon uses ``build_archive(settings, instruments)`` and the facade's five calls:
``start()``, ``record_turn(...)``, ``load_history(...)``, ``health()``, ``aclose()``.
"""

from __future__ import annotations

from .archive import Archive, DisabledArchive, build_archive
from .errors import ArchiveError, ArchiveUnavailable, RejectedWrite

__all__ = ["Archive", "ArchiveError", "ArchiveUnavailable", "DisabledArchive", "RejectedWrite",
           "build_archive"]
