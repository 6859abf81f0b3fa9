"""SLOs: each objective's error budget left, how fast it burns per alert window, the failures
that spent it, and the LLM spend against its budget. Built from slo/slos.yaml, the same file the
alert rules come from, and reading the rules' own recorded series.

The SLOs are fleet-wide (every daemon's calls together); each row also shows its SLI per daemon
instance, the same expression as the recording rule kept ``by (instance)``, to find the daemon
that spends the budget."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otel import names as otel
from otel.names import prometheus_name
from slo import SLOS_DASHBOARD_UID, Objective, SloConfig, load
from slo.rules import (
    ERROR_RATIO,
    OPERATIONS,
    PROVIDER,
    SPEND,
    SPEND_PROJECTED,
    UNPRICED,
    error_ratio,
)

from . import names as n
from .core import RATE, dashboard, dashboard_links, logs, loki, or_zero, prom, row, stat, timeseries

if TYPE_CHECKING:
    from .core import Json, Panel

UID = SLOS_DASHBOARD_UID
BUDGET_STEPS: list[tuple[float | None, str]] = [(None, "red"), (0.25, "orange"), (0.5, "green")]


def _ratio(slo: Objective, window: str) -> str:
    return f'{ERROR_RATIO.format(window=window)}{{slo="{slo.name}"}}'


def _legend(slo: Objective, text: str) -> str:
    return f"{{{{{PROVIDER}}}}} {text}" if OPERATIONS[slo.operation].by else text


INSTANCE_WINDOW = "5m"


def by_instance(slo: Objective) -> str:
    """``slo``'s error ratio over the shortest alert window, per daemon instance."""
    return " ".join(error_ratio(slo, INSTANCE_WINDOW, (n.INSTANCE_LABEL,)).split())


def objective(config: SloConfig, slo: Objective) -> list[Panel]:
    period = config.period
    windows = config.burn_rate_alerts.windows()
    return [
        row(f"{slo.name}: {slo.objective:g} % over {period}"),
        stat("Error budget left", [prom(f"1 - {_ratio(slo, period)} / {slo.budget:g}",
                                        _legend(slo, "budget left"))],
             unit="percentunit", decimals=1, thresholds=BUDGET_STEPS, width=4, height=8,
             description=f"{slo.description.strip()} The share of the {period} error budget "
                         f"({slo.budget:.3%} of events) not yet spent; below 0 the SLO is "
                         "missed."),
        stat(f"Error ratio over {period}", [prom(_ratio(slo, period), _legend(slo, "errors"))],
             unit="percentunit", decimals=3, width=4, height=8,
             thresholds=[(None, "green"), (slo.budget, "red")],
             description=f"Red above the budget, {slo.budget:.3%}."),
        timeseries("Burn rate per alert window", [
            prom(f"{_ratio(slo, window)} / {slo.budget:g}", _legend(slo, window))
            for window in windows], width=8, height=8,
            description="How many times faster than the budget allows it is being spent. The "
                        "page fires over 14.4 (1h and 5m) or 6 (6h and 30m), the ticket over 3 "
                        "(1d and 2h) or 1 (3d and 6h); see slo/slos.yaml."),
        timeseries(f"Error ratio by instance ({INSTANCE_WINDOW})", [prom(
            by_instance(slo), _legend(slo, "{{instance}}"))], unit="percentunit", width=8,
            height=8, description="The SLI of each daemon instance over "
                                  f"{INSTANCE_WINDOW}; the budget is {slo.budget:.3%}. One "
                                  "instance far above the others is the one spending it."),
    ]


def spent_it() -> list[Panel]:
    tool = OPERATIONS["tool_call"]
    calls = f"{tool.histogram}_count{{{', '.join(tool.selector)}, error_type!=\"\"}}"
    return [
        row("What spent it"),
        timeseries("Failed tool calls by code", [prom(
            f"sum by (rpc_response_status_code, error_type) (rate({calls}[{RATE}]))",
            "{{rpc_response_status_code}} ({{error_type}})")], unit="ops", width=12, height=8,
            description="Every failed call; the SLO leaves out what the caller caused (unknown "
                        "tools, bad arguments, cancels, its own rate limit)."),
        logs("Failed calls", loki(n.FAILED_CALL_RECORDS), width=12, height=8,
             description="Their log records: open one for its trace."),
    ]


def spend(config: SloConfig) -> list[Panel]:
    period, budget = config.period, config.spend.budget_usd
    cost = prometheus_name(otel.EXAI_GEN_AI_COST)
    steps: list[tuple[float | None, str]] = [(None, "green"), (budget * 0.8, "orange"),
                                             (budget, "red")]
    return [
        row(f"LLM spend: budget {budget:g} USD over {period}"),
        stat(f"Spent over {period}", [prom(f"sum({SPEND.format(window=period)})", "USD")],
             unit="currencyUSD", decimals=2, thresholds=steps, width=6, height=8),
        stat(f"Projected over {period}", [prom(
            f"sum({SPEND_PROJECTED.format(window=period)})", "USD")],
            unit="currencyUSD", decimals=2, thresholds=steps, width=6, height=8,
            description=f"At the rate of the last {config.spend.projection_window}."),
        timeseries("Spend per hour by provider", [prom(
            f"sum by ({PROVIDER}) (rate({cost}[{RATE}])) * 3600", f"{{{{{PROVIDER}}}}}")],
            unit="currencyUSD", width=6, height=8),
        stat("Unpriced calls in range", [prom(
            or_zero(f"sum(increase({UNPRICED}[$__range]))"), "calls")], decimals=0,
            thresholds=[(None, "green"), (1, "orange")], width=6, height=8,
            description="Calls to models app/prices.toml does not price: their cost is not in "
                        "the figures above."),
    ]


def build() -> Json:
    config = load()
    panels = [panel for slo in config.slos for panel in objective(config, slo)]
    return dashboard(UID, "exai: SLOs",
                     "Error budgets, burn rates and the LLM spend budget, from slo/slos.yaml.",
                     [*panels, *spent_it(), *spend(config)], links=dashboard_links(),
                     time_from="now-6h")
