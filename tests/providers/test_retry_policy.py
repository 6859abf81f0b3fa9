"""Retry decisions and backoff, computed without sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from app.providers.retry import (
    RetryPolicy,
    backoff_delay,
    is_retryable_status,
    parse_retry_after,
    retry_delay,
)

POLICY = RetryPolicy(max_retries=3, base_secs=0.5, max_secs=4.0)


@pytest.mark.parametrize("status, retry", [(429, True), (500, True), (502, True), (503, True),
                                           (599, True), (400, False), (401, False), (404, False),
                                           (200, False)])
def test_retryable_statuses(status: int, retry: bool) -> None:
    assert is_retryable_status(status) is retry


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 11, 29, 7, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=7), usegmt=True), now) == 7.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=7), usegmt=True), now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-1", "nan", "inf"])
def test_unreadable_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_full_jitter_backoff_is_bounded_by_exponential_ceiling_and_cap() -> None:
    assert backoff_delay(0, POLICY, rand=lambda: 1.0) == 0.5
    assert backoff_delay(1, POLICY, rand=lambda: 1.0) == 1.0
    assert backoff_delay(2, POLICY, rand=lambda: 1.0) == 2.0
    assert backoff_delay(10, POLICY, rand=lambda: 1.0) == 4.0  # capped
    assert backoff_delay(2, POLICY, rand=lambda: 0.0) == 0.0
    assert backoff_delay(2, POLICY, rand=lambda: 0.25) == 0.5


def test_retry_delay_honours_retry_after_and_stops_when_exhausted() -> None:
    assert retry_delay(0, POLICY, retry_after=2.5) == 2.5
    assert retry_delay(0, POLICY, retry_after=None, rand=lambda: 0.5) == 0.25
    assert retry_delay(3, POLICY, retry_after=None) is None  # max_retries used up
    assert retry_delay(0, RetryPolicy(max_retries=0), retry_after=None) is None


def test_retry_after_longer_than_the_cap_means_give_up_now() -> None:
    assert retry_delay(0, POLICY, retry_after=POLICY.max_secs + 1) is None
    assert retry_delay(0, POLICY, retry_after=POLICY.max_secs) == POLICY.max_secs
