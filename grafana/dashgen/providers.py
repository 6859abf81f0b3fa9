"""LLM providers: tokens, cost, latency, time to first chunk, outcomes and circuit breakers.

Each daemon has its own circuit breakers and (without shared limits) its own provider slots, so
the "Instances" row shows calls, concurrency and breaker state per daemon instance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import names as n
from .core import RATE, dashboard, dashboard_links, or_zero, prom, row, stat, timeseries

if TYPE_CHECKING:
    from .core import Json, Panel
from .overview import instance_variable, model_variable, provider_variable

UID = "exai-llm-providers"
BY_MODEL = "gen_ai_provider_name, gen_ai_request_model"
MODEL_LEGEND = "{{gen_ai_provider_name}} {{gen_ai_request_model}}"


def _genai(metric: str, extra: str = "") -> str:
    return f"{metric}{{{n.PROVIDER_FILTER}{', ' + extra if extra else ''}}}"


def usage() -> list[Panel]:
    def tokens(token_type: str) -> Json:
        series = _genai(n.GENAI_TOKENS + "_sum", f'gen_ai_token_type="{token_type}"')
        return prom(f"sum by ({BY_MODEL}) (rate({series}[{RATE}]))", MODEL_LEGEND)

    return [
        row("Tokens and cost"),
        timeseries("Input tokens per second", [tokens("input")], unit="short"),
        timeseries("Output tokens per second", [tokens("output")], unit="short"),
        timeseries("Cached input tokens per second", [prom(
            f"sum by ({BY_MODEL}) (rate({_genai(n.GENAI_CACHED_TOKENS)}[{RATE}]))",
            MODEL_LEGEND)], unit="short",
            description="Input tokens the provider served from its cache (Kimi reports them); "
                        "they are part of the input tokens and billed at the cached rate."),
        stat("Cost in range", [prom(
            f"sum(increase({_genai(n.GENAI_COST)}[$__range]))", "USD")], unit="currencyUSD",
            decimals=4, width=6,
            description="From the local price table; unpriced calls are not in it."),
        stat("Unpriced calls in range", [prom(or_zero(
            f"sum(increase({_genai(n.GENAI_UNPRICED)}[$__range]))"), "calls")], decimals=0,
            width=6, thresholds=[(None, "green"), (1, "orange")],
            description="Calls to models outside the price table: their cost is unknown, not 0."),
        timeseries("Cost per hour by model", [prom(
            f"sum by ({BY_MODEL}) (rate({_genai(n.GENAI_COST)}[{RATE}])) * 3600",
            MODEL_LEGEND)], unit="currencyUSD", width=12),
    ]


def latency() -> list[Panel]:
    def quantiles(bucket: str, by: str, legend: str) -> list[Json]:
        return [prom(f"histogram_quantile({q}, sum by (le, {by}) (rate({bucket}[{RATE}])))",
                     f"p{int(q * 100)} {legend}", exemplar=True) for q in (0.5, 0.95, 0.99)]

    span_bucket = f"{n.SPAN_DURATION_BUCKET}{{{n.PROVIDER_CALLS}}}"
    return [
        row("Latency"),
        timeseries("Call latency (p50, p95, p99)",
                   quantiles(span_bucket, "gen_ai_provider_name", "{{gen_ai_provider_name}}"),
                   unit="s", width=12,
                   description="One LLM call including its retries, from span metrics; exemplar "
                               "dots open the trace."),
        timeseries("Time to first chunk (p50, p95)", [
            prom(f"histogram_quantile({q}, sum by (le, {BY_MODEL}) "
                 f"(rate({_genai(n.GENAI_TTFC + '_bucket')}[{RATE}])))",
                 f"p{int(q * 100)} {MODEL_LEGEND}") for q in (0.5, 0.95)],
            unit="s", width=12, description="Streaming calls only."),
        timeseries("Calls per second by model", [prom(
            f"sum by ({BY_MODEL}) (rate({_genai(n.GENAI_DURATION + '_count')}[{RATE}]))",
            MODEL_LEGEND)], unit="reqps", width=12),
        timeseries("Latency by model (p95)", [prom(
            f"histogram_quantile(0.95, sum by (le, {BY_MODEL}) "
            f"(rate({_genai(n.GENAI_DURATION + '_bucket')}[{RATE}])))", MODEL_LEGEND)],
            unit="s", width=12),
    ]


def outcomes() -> list[Panel]:
    circuit_mappings = [{"type": "value", "options": {
        "0": {"text": "closed", "color": "green"}, "1": {"text": "half open", "color": "orange"},
        "2": {"text": "open", "color": "red"}}}]
    failed = _genai(n.GENAI_DURATION + "_count", 'error_type!=""')
    return [
        row("Outcomes"),
        timeseries("Errors per second by type", [prom(
            f"sum by (gen_ai_provider_name, error_type) (rate({failed}[{RATE}]))",
            "{{gen_ai_provider_name}} {{error_type}}")], unit="reqps",
            description="HTTP status from the upstream, timeout, circuit_open, ..."),
        timeseries("Finish reasons per second", [prom(
            f"sum by (gen_ai_response_finish_reasons) (rate({_genai(n.GENAI_FINISH_REASONS)}"
            f"[{RATE}]))", "{{gen_ai_response_finish_reasons}}")], unit="reqps",
            description="stop = a complete answer; length = cut at max_tokens; content_filter = "
                        "refused by the provider."),
        stat("Circuit breakers", [prom(
            "max by (gen_ai_provider_name) ("
            + n.by_name_regex(n.CIRCUIT_STATE, f'gen_ai_provider_name=~"$provider", {n.INSTANCE}')
            + ")",
            "{{gen_ai_provider_name}}")],
            width=8, height=8, mappings=circuit_mappings, decimals=0,
            thresholds=[(None, "green"), (1, "orange"), (2, "red")],
            description="Per provider, the worst of the selected daemons: closed (calls go "
                        "through), half open (probing), open (calls fail fast with "
                        "PROVIDER_UNAVAILABLE)."),
    ]


def instances() -> list[Panel]:
    """Per daemon: breakers and slots are per process, so one daemon can fail alone."""
    by = f"{n.INSTANCE_LABEL}, gen_ai_provider_name"
    legend = "{{instance}} {{gen_ai_provider_name}}"
    count = _genai(n.GENAI_DURATION + "_count")
    circuit = n.by_name_regex(n.CIRCUIT_STATE, f'gen_ai_provider_name=~"$provider", {n.INSTANCE}')
    return [
        row("Instances"),
        timeseries("Provider calls per second by instance", [prom(
            f"sum by ({by}) (rate({count}[{RATE}]))", legend)], unit="reqps"),
        timeseries("Provider concurrency by instance", [prom(
            f"sum by ({by}) (rate({_genai(n.GENAI_DURATION + '_sum')}[{RATE}]))", legend)],
            unit="short",
            description="Calls in progress on average (seconds of calls per second, Little's "
                        "law). Against a provider's slots (EXAI_KIMI_MAX_INFLIGHT, "
                        "EXAI_GLM_MAX_INFLIGHT), per daemon unless the limits are shared."),
        timeseries("Circuit state by instance", [prom(
            f"max by ({by}) ({circuit})", legend)], unit="short",
            description="0 closed, 1 half open, 2 open: which daemon's breaker opened."),
    ]


def _provider_names() -> str:
    """"Kimi (moonshot_ai) and GLM (z_ai)", from the provider table."""
    named = [f"{label} ({otel_name})" for label, otel_name in n.PROVIDERS.items()]
    return " and ".join([", ".join(named[:-1]), named[-1]] if len(named) > 1 else named)


def build() -> Json:
    return dashboard(
        UID, "exai: LLM providers",
        f"{_provider_names()}: what the calls cost, how fast they answer, how they end.",
        [*usage(), *latency(), *outcomes(), *instances()],
        variables=[instance_variable(), provider_variable(), model_variable()],
        links=dashboard_links())
