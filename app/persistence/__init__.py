"""Supabase persistence: conversations and messages archived through a durable outbox.

The daemon uses ``build_archive(settings, instruments)`` (also exported as ``create_archive``)
and the facade's calls: ``start()``, ``record_turn(...)``, ``load_history(...)``, ``health()``
(sync, cached), ``check_health()`` (async, fresh), ``aclose()``.
"""

from __future__ import annotations

from .archive import Archive, DisabledArchive, build_archive
from .errors import ArchiveError, ArchiveUnavailable, RejectedWrite

create_archive = build_archive

__all__ = ["Archive", "ArchiveError", "ArchiveUnavailable", "DisabledArchive", "RejectedWrite",
           "build_archive", "create_archive"]
