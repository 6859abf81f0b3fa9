"""The price table: known prices, cached-token billing, and unknown models never costing $0."""

from __future__ import annotations

import pytest

from app import pricing
from app.providers.base import Usage
from otel import names


def test_packaged_table_has_a_version_and_both_providers_models() -> None:
    assert pricing.version == pricing.TABLE.version
    assert len(pricing.version) >= 8
    for model in ("kimi-k2-0905-preview", "kimi-k2-turbo-preview", "moonshot-v1-8k",
                  "moonshot-v1-32k", "moonshot-v1-128k", "kimi-latest", "glm-4.5",
                  "glm-4.5-air", "glm-4.5-flash", "glm-4.6"):
        assert pricing.price_for(model) is not None, model


def test_cached_tokens_are_part_of_input_and_billed_at_the_cached_rate() -> None:
    price = pricing.price_for("kimi-k2-0905-preview")
    assert price is not None
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, cached_input_tokens=400_000)
    expected = (600_000 * price.input_per_mtok + 400_000 * price.cached_input_per_mtok
                + 1_000_000 * price.output_per_mtok) / 1_000_000
    assert pricing.cost_usd("kimi-k2-0905-preview", usage) == pytest.approx(expected)


def test_cached_tokens_beyond_input_are_clamped() -> None:
    price = pricing.Price(1.0, 0.5, 2.0)
    assert price.cost(Usage(10, 0, 50)) == pytest.approx(10 * 0.5 / 1e6)


def test_free_model_costs_zero_which_is_a_known_price() -> None:
    cost = pricing.cost_usd("glm-4.5-flash", Usage(100, 100, 0))
    assert cost == 0.0 and cost is not None
    assert pricing.metric_model("glm-4.5-flash") == "glm-4.5-flash"


def test_unknown_model_is_unpriced_not_free() -> None:
    assert pricing.price_for("gpt-4o") is None
    assert pricing.cost_usd("gpt-4o", Usage(100, 100, 0)) is None
    assert pricing.cost_usd(None, Usage(1, 1, 0)) is None
    assert pricing.cost_usd("glm-4.5", None) is None


def test_metric_model_bounds_label_values() -> None:
    assert pricing.metric_model("kimi-k2-0905-preview") == "kimi-k2-0905-preview"
    assert pricing.metric_model(" GLM-4.6 ") == "glm-4.6"
    assert pricing.metric_model("user-typed-anything-123") == names.OTHER_VALUE
    assert pricing.metric_model(None) == names.OTHER_VALUE


@pytest.mark.parametrize("text, problem", [
    ('[models."m"]\ninput = 1\ncached_input = 1\noutput = 1\n', "version"),
    ('version = "v"\n[models."m"]\ninput = -1\ncached_input = 1\noutput = 1\n', "input"),
    ('version = "v"\n[models."m"]\ninput = 1\noutput = 1\n', "cached_input"),
    ('version = "v"\n[models."m"]\ninput = true\ncached_input = 1\noutput = 1\n', "input"),
    ('version = "v"\ncurrency = "EUR"\n', "currency"),
    ("version = ", "TOML"),
])
def test_malformed_tables_are_rejected(text: str, problem: str) -> None:
    with pytest.raises(pricing.PriceTableError, match=problem):
        pricing.parse_price_table(text)


def test_reasoning_tokens_are_output_tokens_billed_once_at_the_output_rate() -> None:
    price = pricing.price_for("glm-4.6")
    assert price is not None and price.reasoning_output_per_mtok is None
    with_reasoning = Usage(1_000, 3_000, 0, reasoning_output_tokens=2_000)
    expected = (1_000 * price.input_per_mtok + 3_000 * price.output_per_mtok) / 1_000_000
    assert pricing.cost_usd("glm-4.6", with_reasoning) == pytest.approx(expected)
    assert pricing.cost_usd("glm-4.6", with_reasoning) == pytest.approx(pricing.cost_usd(
        "glm-4.6", Usage(1_000, 3_000, 0)))


def test_a_reasoning_rate_in_the_table_bills_the_reasoning_share_at_it() -> None:
    table = pricing.parse_price_table(
        'version = "v"\n[models."thinker"]\ninput = 1\ncached_input = 0.5\noutput = 2\n'
        "reasoning_output = 8\n")
    assert table.prices["thinker"] == pricing.Price(1.0, 0.5, 2.0, 8.0)
    usage = Usage(100, 300, 0, reasoning_output_tokens=200)
    assert table.cost_usd("thinker", usage) == pytest.approx((100 * 1 + 100 * 2 + 200 * 8) / 1e6)
    # more reasoning than output cannot bill more than the output
    assert table.cost_usd("thinker", Usage(0, 10, 0, 50)) == pytest.approx(10 * 8 / 1e6)
    with pytest.raises(pricing.PriceTableError, match="reasoning_output"):
        pricing.parse_price_table('version = "v"\n[models."m"]\ninput = 1\ncached_input = 1\n'
                                  "output = 1\nreasoning_output = -1\n")
