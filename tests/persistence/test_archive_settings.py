"""The archive's tunables come from the EXAI_SUPABASE_* settings; explicit options win."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import Settings
from app.persistence import Archive, build_archive
from app.persistence.tuning import ArchiveTuning

BASE = {"SUPABASE_URL": "https://example.invalid", "SUPABASE_SERVICE_ROLE_KEY": "k",
        "REDIS_URL": ""}
SET = {"EXAI_SUPABASE_TIMEOUT_SECS": 4, "EXAI_SUPABASE_RETRY_BASE_SECS": 1,
       "EXAI_SUPABASE_RETRY_MAX_SECS": 9, "EXAI_SUPABASE_IDLE_POLL_SECS": 2,
       "EXAI_SUPABASE_OUTBOX_MEMORY_LIMIT": 7, "EXAI_SUPABASE_DEAD_LETTER_LIMIT": 3,
       "EXAI_SUPABASE_STALE_BACKLOG_SECS": 60}


@pytest.mark.parametrize(("env", "options", "tuning", "limits"), [
    pytest.param(SET, {}, ArchiveTuning(4, 1, 9, 2, 60), (7, 3), id="settings"),
    pytest.param({}, {"idle_poll_secs": 0.05, "memory_limit": 5},
                 ArchiveTuning(10.0, 0.5, 30.0, 0.05, 300.0), (5, 10_000),
                 id="defaults-and-options"),
])
def test_build_archive_reads_the_supabase_settings_and_options_win(
        env: dict[str, Any], options: dict[str, Any], tuning: ArchiveTuning,
        limits: tuple[int, int]) -> None:
    settings = Settings(_env_file=None, **BASE, **env)  # type: ignore[call-arg]
    archive = build_archive(settings, **options)
    assert isinstance(archive, Archive)
    assert archive.tuning == tuning
    assert (archive.outbox.memory_limit, archive.outbox.dead_limit) == limits


def test_an_unknown_option_is_an_error() -> None:
    settings = Settings(_env_file=None, **BASE)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="idle_poll_sec"):
        build_archive(settings, idle_poll_sec=1)
