"""Service level objectives, read from ``slo/slos.yaml`` (the one place they are set).

``load()`` validates the file; ``slo.rules`` turns it into Prometheus recording and alerting
rules, and the dashboard generator draws the SLOs dashboard from the same objects.
"""

from __future__ import annotations

import re
import zlib
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

SLO_FILE = Path(__file__).resolve().with_name("slos.yaml")
_DURATION = re.compile(r"\d+[mhd]")
SLOS_DASHBOARD_UID = "exai-slos"
RUNBOOKS_DASHBOARD_UID = "exai-runbooks"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BurnWindow(_Strict):
    long: str
    short: str
    factor: float = Field(gt=0)

    @field_validator("long", "short")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not _DURATION.fullmatch(value):
            raise ValueError(f"{value!r} is not a Prometheus duration like 5m, 1h or 3d")
        return value


class BurnRateAlerts(_Strict):
    page: tuple[BurnWindow, ...]
    ticket: tuple[BurnWindow, ...]

    def windows(self) -> list[str]:
        """Every window a burn-rate alert reads, shortest first."""
        found = {w for rule in (*self.page, *self.ticket) for w in (rule.long, rule.short)}
        return sorted(found, key=duration_secs)


class Objective(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    sli: Literal["availability", "latency"]
    operation: Literal["tool_call", "provider_call"]
    objective: float = Field(gt=0, lt=100)  # percent
    threshold_secs: float | None = None  # latency SLIs: a bucket boundary of the histogram
    description: str

    @property
    def budget(self) -> float:
        """The error budget as a ratio: 1 - objective."""
        return round(1 - self.objective / 100, 10)

    @property
    def alert_prefix(self) -> str:
        """``tool-availability`` -> ``ExaiToolAvailability``."""
        return "Exai" + "".join(part.capitalize() for part in self.name.split("-"))


class Spend(_Strict):
    budget_usd: float = Field(gt=0)
    projection_window: str
    per_provider: dict[str, float] = {}


class SloConfig(_Strict):
    period_days: int = Field(gt=0)
    grafana_url: str = Field(pattern=r"^https?://")
    burn_rate_alerts: BurnRateAlerts
    slos: tuple[Objective, ...]
    spend: Spend

    @property
    def period(self) -> str:
        return f"{self.period_days}d"

    def dashboard_url(self, uid: str) -> str:
        return f"{self.grafana_url.rstrip('/')}/d/{uid}"

    def runbook_url(self, alertname: str) -> str:
        """Where an alert's runbook opens: its panel, alone, on the Runbooks dashboard (the
        panel's text is docs/runbooks/<alertname>.md)."""
        return (f"{self.dashboard_url(RUNBOOKS_DASHBOARD_UID)}"
                f"?viewPanel=panel-{runbook_panel_id(alertname)}")


def runbook_panel_id(alertname: str) -> int:
    """A stable panel id for an alert's runbook, so links survive alerts being added."""
    return 1000 + zlib.crc32(alertname.encode()) % 1_000_000


def duration_secs(duration: str) -> int:
    """Seconds in a Prometheus duration of one unit (5m, 6h, 3d)."""
    return int(duration[:-1]) * {"m": 60, "h": 3600, "d": 86400}[duration[-1]]


@cache
def load(path: Path = SLO_FILE) -> SloConfig:
    return SloConfig.model_validate(yaml.safe_load(path.read_text()))
