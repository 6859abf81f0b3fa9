"""The local, versioned LLM price table: what a call cost, or that its cost is unknown.

Prices live in ``prices.toml`` next to this module and are read once from the installed package,
never from the network. A model missing from the table is *unpriced*: ``cost_usd`` returns None
for it, never 0, so an unknown model cannot pass for a free one. The table's model names are also
the only model names allowed on metric labels (``metric_model``), which keeps label values bounded.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from otel import names
from otel.genai import UsageLike

from .errors import ExaiError

TABLE_RESOURCE = "prices.toml"
_PER_MILLION = 1_000_000


class PriceTableError(ExaiError, ValueError):
    """The price table is malformed (missing version, a negative or non-numeric price...)."""


@dataclass(frozen=True)
class Price:
    """USD per million tokens for one model; reasoning tokens at the output rate unless the table
    gives them one (``reasoning_output_per_mtok``)."""

    input_per_mtok: float
    cached_input_per_mtok: float
    output_per_mtok: float
    reasoning_output_per_mtok: float | None = None

    def cost(self, usage: UsageLike) -> float:
        """Cost in USD; cached tokens are billed at the cached rate, the rest of the input at
        full; reasoning tokens (part of the output) at the reasoning rate, the rest of the
        output at the output rate."""
        cached = min(max(usage.cached_input_tokens, 0), max(usage.input_tokens, 0))
        fresh = max(usage.input_tokens, 0) - cached
        output = max(usage.output_tokens, 0)
        reasoning = min(max(usage.reasoning_output_tokens or 0, 0), output)
        reasoning_rate = (self.output_per_mtok if self.reasoning_output_per_mtok is None
                          else self.reasoning_output_per_mtok)
        return (fresh * self.input_per_mtok + cached * self.cached_input_per_mtok
                + (output - reasoning) * self.output_per_mtok
                + reasoning * reasoning_rate) / _PER_MILLION


@dataclass(frozen=True)
class PriceTable:
    """A version string and the prices of the models it knows."""

    version: str
    prices: Mapping[str, Price]

    def price_for(self, model: str | None) -> Price | None:
        if not model:
            return None
        return self.prices.get(_normalise(model))

    def cost_usd(self, model: str | None, usage: UsageLike | None) -> float | None:
        price = self.price_for(model)
        if price is None or usage is None:
            return None
        return price.cost(usage)

    def metric_model(self, model: str | None) -> str:
        """The model's name if the table knows it, else ``_OTHER``: metric labels stay bounded."""
        if model and _normalise(model) in self.prices:
            return _normalise(model)
        return names.OTHER_VALUE

    def models(self) -> list[str]:
        return sorted(self.prices)


def parse_price_table(text: str) -> PriceTable:
    """Parse and validate a price table in TOML form (see ``prices.toml`` for the layout)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PriceTableError(f"price table is not valid TOML: {exc}") from exc
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        raise PriceTableError("price table needs a non-empty string 'version'")
    currency = data.get("currency", "USD")
    if currency != "USD":
        raise PriceTableError(f"price table currency must be USD, not {currency!r}")
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise PriceTableError("'models' must be a table of model names")
    prices: dict[str, Price] = {}
    for model, entry in models.items():
        if not isinstance(entry, dict):
            raise PriceTableError(f"model {model!r}: expected a table of prices")
        prices[_normalise(model)] = Price(
            input_per_mtok=_rate(model, entry, "input"),
            cached_input_per_mtok=_rate(model, entry, "cached_input"),
            output_per_mtok=_rate(model, entry, "output"),
            reasoning_output_per_mtok=(_rate(model, entry, "reasoning_output")
                                       if "reasoning_output" in entry else None),
        )
    return PriceTable(version=version.strip(), prices=prices)


def load_packaged_table() -> PriceTable:
    """The table shipped inside the ``app`` package (works from a wheel as well as a checkout)."""
    text = resources.files("app").joinpath(TABLE_RESOURCE).read_text(encoding="utf-8")
    return parse_price_table(text)


def _rate(model: str, entry: Mapping[str, object], field: str) -> float:
    value = entry.get(field)
    # bool is an int subclass; `input = true` is a typo, not a price.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PriceTableError(
            f"model {model!r}: '{field}' must be a number (USD per million tokens)")
    if not math.isfinite(value) or value < 0:
        raise PriceTableError(f"model {model!r}: '{field}' must be a finite number >= 0")
    return float(value)


def _normalise(model: str) -> str:
    return model.strip().lower()


TABLE: PriceTable = load_packaged_table()
version: str = TABLE.version


def price_for(model: str | None) -> Price | None:
    """The packaged table's price for ``model``, or None when the model is unpriced."""
    return TABLE.price_for(model)


def cost_usd(model: str | None, usage: UsageLike | None) -> float | None:
    """Cost of one call in USD from the packaged table; None (never 0) when it is unknown."""
    return TABLE.cost_usd(model, usage)


def metric_model(model: str | None) -> str:
    """The label value for ``model`` on metrics: itself if priced, else ``_OTHER``."""
    return TABLE.metric_model(model)


def models() -> list[str]:
    """Every model the packaged table prices, sorted."""
    return TABLE.models()
