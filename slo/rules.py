"""Prometheus rules from the SLO file: error ratios per window, multi-window multi-burn-rate
alerts, and the LLM spend budget. Pure: ``rule_groups(config)`` is the whole rules file.

The SLIs read the daemon's own metrics (every call, before any sampling), named through the
telemetry catalogue, so a metric renamed in otel/names.py is renamed here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.errors import CALLER_ERRORS, SESSION_LIMIT_ERRORS
from otel import names
from otel.errors import CANCELLED, CLIENT_DISCONNECTED
from otel.names import label_name, prometheus_name

from . import SLOS_DASHBOARD_UID, BurnWindow, Objective, SloConfig

RULES_FILE = "backends/prometheus/rules/exai-slo.yml"
SLO_LABEL = "slo"
ERROR_RATIO = "slo:sli_error:ratio_rate{window}"
SPEND = "exai:llm_spend_usd:increase{window}"
SPEND_PROJECTED = "exai:llm_spend_usd:projected{window}"
PROVIDER = label_name(names.GEN_AI_PROVIDER_NAME)
ERROR_TYPE = label_name(names.ERROR_TYPE)
STATUS_CODE = label_name(names.RPC_RESPONSE_STATUS_CODE)
Rule = dict[str, Any]


@dataclass(frozen=True)
class Operation:
    """What one kind of call is in Prometheus: its duration histogram, the selector of its
    series, the labels an SLO is kept per, and which of its errors are not the daemon's."""

    histogram: str
    selector: tuple[str, ...]
    by: tuple[str, ...]
    not_ours: tuple[str, ...]  # matchers that leave out failures the caller caused


OPERATIONS = {
    "tool_call": Operation(
        prometheus_name(names.MCP_SERVER_OPERATION_DURATION),
        (f'{label_name(names.MCP_METHOD_NAME)}="tools/call"',), (),
        (f'{ERROR_TYPE}!~"{"|".join(sorted({CLIENT_DISCONNECTED, *SESSION_LIMIT_ERRORS}))}"',
         f'{STATUS_CODE}!~"{"|".join(sorted(CALLER_ERRORS))}"')),
    "provider_call": Operation(
        prometheus_name(names.GEN_AI_CLIENT_OPERATION_DURATION), (), (PROVIDER,),
        (f'{ERROR_TYPE}!="{CANCELLED}"',)),
}


def _selector(*matchers: str) -> str:
    return "{" + ", ".join(matchers) + "}" if matchers else ""


def _sum(op: Operation, series: str, window: str, *matchers: str,
         by: tuple[str, ...] = ()) -> str:
    labels = (*op.by, *by)
    grouping = f" by ({', '.join(labels)})" if labels else ""
    return f"sum{grouping} (rate({series}{_selector(*op.selector, *matchers)}[{window}]))"


def error_ratio(slo: Objective, window: str, by: tuple[str, ...] = ()) -> str:
    """The share of ``slo``'s events over ``window`` that spend its budget; ``by`` keeps more
    labels (``instance``: which daemon spends it; the SLO itself is fleet-wide)."""
    op = OPERATIONS[slo.operation]
    total = _sum(op, f"{op.histogram}_count", window, by=by)
    if slo.sli == "availability":
        bad = _sum(op, f"{op.histogram}_count", window, f'{ERROR_TYPE}!=""', *op.not_ours, by=by)
        return f"({bad} or 0 * {total})\n/\n{total}"
    assert slo.threshold_secs is not None, f"{slo.name}: a latency SLO needs threshold_secs"
    good = _sum(op, f"{op.histogram}_bucket", window, f'le="{slo.threshold_secs:g}"', by=by)
    return f"1 - (\n{good}\n/\n{total}\n)"


def _ratio_series(slo: Objective, window: str) -> str:
    return f'{ERROR_RATIO.format(window=window)}{{{SLO_LABEL}="{slo.name}"}}'


def _burning(slo: Objective, rule: BurnWindow) -> str:
    threshold = f"{rule.factor * slo.budget:.6g}"
    return (f"({_ratio_series(slo, rule.long)} > {threshold}\n"
            f"and\n{_ratio_series(slo, rule.short)} > {threshold})")


def _burn_alert(config: SloConfig, slo: Objective, kind: str) -> Rule:
    rules = getattr(config.burn_rate_alerts, kind)
    severity = "critical" if kind == "page" else "warning"
    alertname = f"{slo.alert_prefix}BurnRate{kind.capitalize()}"
    scope = f" for {{{{ $labels.{PROVIDER} }}}}" if OPERATIONS[slo.operation].by else ""
    windows = " or ".join(f"{r.long}/{r.short} at {r.factor:g}x" for r in rules)
    return {
        "alert": alertname,
        "expr": "\nor\n".join(_burning(slo, rule) for rule in rules),
        "for": "2m" if kind == "page" else "15m",
        "labels": {"severity": severity, SLO_LABEL: slo.name},
        "annotations": {
            "summary": f"SLO {slo.name}{scope}: error budget burning fast enough to "
                       f"{'page' if kind == 'page' else 'open a ticket'}",
            "description": f"{slo.description.strip()} Objective {slo.objective:g} % over "
                           f"{config.period}; the error ratio is above the budget's burn rate "
                           f"({windows}).",
            "runbook_url": config.runbook_url(alertname),
            "dashboard_url": config.dashboard_url(SLOS_DASHBOARD_UID),
        },
    }


def _ratio_rules(config: SloConfig) -> list[Rule]:
    windows = [*config.burn_rate_alerts.windows(), config.period]
    return [{"record": ERROR_RATIO.format(window=window), "expr": error_ratio(slo, window),
             "labels": {SLO_LABEL: slo.name}}
            for slo in config.slos for window in windows]


# --- the spend budget --------------------------------------------------------------------------

COST = prometheus_name(names.EXAI_GEN_AI_COST)
UNPRICED = prometheus_name(names.EXAI_GEN_AI_UNPRICED_CALLS)


def _spend_rules(config: SloConfig) -> list[Rule]:
    period, window = config.period, config.spend.projection_window
    scale = config.period_days * 86400
    return [
        {"record": SPEND.format(window=period),
         "expr": f"sum by ({PROVIDER}) (increase({COST}[{period}]))"},
        {"record": SPEND_PROJECTED.format(window=period),
         "expr": f"sum by ({PROVIDER}) (rate({COST}[{window}])) * {scale}"},
    ]


def _budgets(config: SloConfig) -> list[tuple[str, str, float]]:
    """(alert name suffix, the selector of the spend series, budget in USD) per budget."""
    budgets = [("", "", config.spend.budget_usd)]
    budgets += [(f"{''.join(p.capitalize() for p in provider.split('_'))}",
                 f'{PROVIDER}="{provider}"', usd)
                for provider, usd in sorted(config.spend.per_provider.items())]
    return budgets


def _spend_alert(config: SloConfig, suffix: str, matcher: str, usd: float,
                 projected: bool) -> Rule:
    series = (SPEND_PROJECTED if projected else SPEND).format(window=config.period)
    base = f"ExaiLlmSpend{'ProjectedOverBudget' if projected else 'OverBudget'}"
    alertname = base + suffix  # a provider's budget alert shares the overall one's runbook
    whose = "" if not matcher else f" ({matcher.split('=')[1].strip(chr(34))})"
    if projected:
        summary = (f"LLM spend{whose} on course to pass its {usd:g} USD budget over "
                   f"{config.period}")
        description = (f"At the spend rate of the last {config.spend.projection_window}, the "
                       f"rolling {config.period} spend would pass the budget; the SLOs "
                       f"dashboard shows the projection.")
    else:
        summary = f"LLM spend{whose} passed its {usd:g} USD budget over {config.period}"
        description = f"The rolling {config.period} spend on LLM providers passed the budget."
    return {
        "alert": alertname,
        "expr": f"sum({series}{_selector(matcher) if matcher else ''}) > {usd:g}",
        "for": "30m" if projected else "5m",
        "labels": {"severity": "warning" if projected else "critical"},
        "annotations": {"summary": summary, "description": description,
                        "runbook_url": config.runbook_url(base),
                        "dashboard_url": config.dashboard_url(SLOS_DASHBOARD_UID)},
    }


def _unpriced_alert(config: SloConfig) -> Rule:
    alertname = "ExaiLlmUnpricedCalls"
    return {
        "alert": alertname,
        "expr": f"sum by ({PROVIDER}, {label_name(names.GEN_AI_REQUEST_MODEL)}) "
                f"(increase({UNPRICED}[1h])) > 0",
        "for": "0m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Calls to {{ $labels.gen_ai_request_model }} have no price: the spend "
                       "budget does not see them",
            "description": "The price table (app/prices.toml) has no entry for this model, so "
                           "its cost is unknown (never counted as 0) and the spend alerts read "
                           "low.",
            "runbook_url": config.runbook_url(alertname),
            "dashboard_url": config.dashboard_url(SLOS_DASHBOARD_UID),
        },
    }


def rule_groups(config: SloConfig) -> dict[str, Any]:
    """The whole rules file for ``config``."""
    alerts = [_burn_alert(config, slo, kind) for slo in config.slos for kind in ("page", "ticket")]
    spend_alerts = [_spend_alert(config, suffix, matcher, usd, projected)
                    for suffix, matcher, usd in _budgets(config) for projected in (True, False)]
    return {"groups": [
        {"name": "exai-slo-error-ratios", "rules": _ratio_rules(config)},
        {"name": "exai-slo-burn-rate", "rules": alerts},
        {"name": "exai-llm-spend", "rules": [*_spend_rules(config), *spend_alerts,
                                             _unpriced_alert(config)]},
    ]}
