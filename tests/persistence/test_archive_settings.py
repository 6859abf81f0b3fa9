"""The archive's tunables come from the EXAI_SUPABASE_* settings; explicit options win."""

from __future__ import annotations

from app.config import Settings
from app.persistence import Archive, build_archive

BASE = {"SUPABASE_URL": "https://example.invalid", "SUPABASE_SERVICE_ROLE_KEY": "k",
        "REDIS_URL": ""}


def test_build_archive_reads_the_supabase_settings() -> None:
    archive = build_archive(Settings(_env_file=None, **BASE,  # type: ignore[call-arg]
                                     EXAI_SUPABASE_TIMEOUT_SECS=4, EXAI_SUPABASE_RETRY_BASE_SECS=1,
                                     EXAI_SUPABASE_RETRY_MAX_SECS=9,
                                     EXAI_SUPABASE_IDLE_POLL_SECS=2,
                                     EXAI_SUPABASE_OUTBOX_MEMORY_LIMIT=7,
                                     EXAI_SUPABASE_DEAD_LETTER_LIMIT=3,
                                     EXAI_SUPABASE_STALE_BACKLOG_SECS=60))
    assert isinstance(archive, Archive)
    assert archive._request_timeout_secs == 4
    assert archive._worker_options == {"backoff_base_secs": 1, "backoff_max_secs": 9,
                                       "idle_poll_secs": 2}
    assert (archive.outbox.memory_limit, archive.outbox.dead_limit) == (7, 3)
    assert archive.stale_backlog_secs == 60


def test_defaults_and_explicit_options() -> None:
    settings = Settings(_env_file=None, **BASE)  # type: ignore[call-arg]
    archive = build_archive(settings, idle_poll_secs=0.05, memory_limit=5)
    assert isinstance(archive, Archive)
    assert archive._worker_options == {"backoff_base_secs": 0.5, "backoff_max_secs": 30.0,
                                       "idle_poll_secs": 0.05}
    assert (archive.outbox.memory_limit, archive.outbox.dead_limit) == (5, 10_000)
    assert archive._request_timeout_secs == 10.0 and archive.stale_backlog_secs == 300.0
