"""The archive's timing, one value for the archive and its delivery worker."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Settings


@dataclass(frozen=True)
class ArchiveTuning:
    """Timeouts, retry backoff and polling, from the ``EXAI_SUPABASE_*`` settings by default;
    tests shorten them with ``dataclasses.replace``."""

    request_timeout_secs: float
    backoff_base_secs: float
    backoff_max_secs: float
    idle_poll_secs: float
    stale_backlog_secs: float
    stats_interval_secs: float = 1.0  # how often the worker refreshes the outbox gauges
    # A write idle this long in another daemon's hands is taken over
    # (EXAI_SUPABASE_CLAIM_IDLE_SECS); the worker refreshes its own hold every third of it.
    claim_idle_secs: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveTuning:
        return cls(request_timeout_secs=settings.supabase_timeout_secs,
                   backoff_base_secs=settings.supabase_retry_base_secs,
                   backoff_max_secs=settings.supabase_retry_max_secs,
                   idle_poll_secs=settings.supabase_idle_poll_secs,
                   stale_backlog_secs=settings.supabase_stale_backlog_secs,
                   claim_idle_secs=settings.supabase_claim_idle_secs)
