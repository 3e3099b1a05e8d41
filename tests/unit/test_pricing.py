"""Unit tests of ``batchway.core.pricing``: the price table and what a call costs."""

from __future__ import annotations

import pytest

from batchway.config import NATIVE_BATCH_DISCOUNT, PriceConfig
from batchway.core import pricing
from batchway.core.models import Usage
from batchway.core.pricing import DEFAULT_PRICES, PriceTable

MILLION = 1_000_000


def _rates(price: PriceConfig | None) -> tuple[float, float, float | None] | None:
    return None if price is None else (price.input, price.output, price.cached_input)


@pytest.mark.parametrize(
    ("model", "rates"),
    [
        pytest.param("gpt-4o", (2.50, 10.00, 1.25), id="gpt-4o"),
        pytest.param("gpt-4o-mini", (0.15, 0.60, 0.075), id="gpt-4o-mini"),
        pytest.param("gpt-4.1-nano", (0.10, 0.40, 0.025), id="gpt-4.1-nano"),
        pytest.param("gpt-5", (1.25, 10.00, 0.125), id="gpt-5"),
        pytest.param("o4-mini", (1.10, 4.40, 0.275), id="o4-mini"),
        pytest.param("text-embedding-3-small", (0.02, 0.0, None), id="embedding"),
        pytest.param("claude-sonnet-4-5", (3.00, 15.00, 0.30), id="claude-sonnet-4-5"),
        pytest.param("claude-opus-4-1", (15.00, 75.00, 1.50), id="claude-opus-4-1"),
        pytest.param("claude-haiku-4-5", (1.00, 5.00, 0.10), id="claude-haiku-4-5"),
    ],
)
def test_default_prices(model: str, rates: tuple[float, float, float | None]) -> None:
    assert _rates(PriceTable({}).price(model)) == rates


def test_every_requested_family_has_a_default_price() -> None:
    wanted = {
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o1",
        "o3",
        "o3-mini",
        "o4-mini",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
        "gpt-3.5-turbo",
        "claude-3-haiku",
        "claude-3-5-haiku",
        "claude-3-5-sonnet",
        "claude-3-7-sonnet",
        "claude-sonnet-4",
        "claude-sonnet-4-5",
        "claude-opus-4",
        "claude-opus-4-1",
        "claude-haiku-4-5",
    }
    assert wanted <= set(DEFAULT_PRICES)
    # the vendors' batch APIs take NATIVE_BATCH_DISCOUNT off; no default sets a price of its own
    assert NATIVE_BATCH_DISCOUNT == 0.5
    assert not any(price.own_batch_price for price in DEFAULT_PRICES.values())
    with pytest.raises(TypeError):
        DEFAULT_PRICES["gpt-4o"] = PriceConfig(input=0)  # type: ignore[index]


def test_an_override_wins_over_the_default_and_prices_its_snapshots() -> None:
    table = PriceTable({"gpt-4o": PriceConfig(input=1.0, output=2.0)})

    assert _rates(table.price("gpt-4o")) == (1.0, 2.0, None)
    assert _rates(table.price("gpt-4o-2024-08-06")) == (1.0, 2.0, None)
    assert _rates(table.price("gpt-4o-mini")) == (0.15, 0.60, 0.075)  # untouched


def test_an_override_may_name_any_model() -> None:
    table = PriceTable({"my-llama": PriceConfig(input=0.2, output=0.4)})

    assert _rates(table.price("my-llama")) == (0.2, 0.4, None)
    assert table.price("my-llama-2") is None


@pytest.mark.parametrize(
    ("model", "family"),
    [
        pytest.param("gpt-4o-mini-2024-07-18", "gpt-4o-mini", id="openai-dated"),
        pytest.param("gpt-4o-2024-08-06", "gpt-4o", id="openai-dated-parent"),
        pytest.param("gpt-4.1-2025-04-14", "gpt-4.1", id="gpt-4.1-dated"),
        pytest.param("o3-2025-04-16", "o3", id="o3-dated"),
        pytest.param("gpt-5-mini-2025-08-07", "gpt-5-mini", id="gpt-5-mini-dated"),
        pytest.param("gpt-4-0613", "gpt-4", id="openai-four-digit-snapshot"),
        pytest.param("gpt-3.5-turbo-0125", "gpt-3.5-turbo", id="gpt-3.5-snapshot"),
        pytest.param("claude-3-5-sonnet-20241022", "claude-3-5-sonnet", id="anthropic-dated"),
        pytest.param("claude-sonnet-4-20250514", "claude-sonnet-4", id="sonnet-4-dated"),
        pytest.param("claude-sonnet-4-5-20250929", "claude-sonnet-4-5", id="sonnet-4-5-dated"),
        pytest.param("claude-opus-4-1-20250805", "claude-opus-4-1", id="opus-4-1-dated"),
        pytest.param("claude-3-5-haiku-latest", "claude-3-5-haiku", id="anthropic-latest"),
        pytest.param("claude-sonnet-4-0", "claude-sonnet-4", id="anthropic-x-0-alias"),
        pytest.param("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet", id="vertex"),
        pytest.param(
            "us.anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet", id="bedrock"
        ),
        pytest.param("openai/gpt-4o-mini", "gpt-4o-mini", id="route-prefix"),
        pytest.param("GPT-4o", "gpt-4o", id="case"),
    ],
)
def test_snapshots_and_aliases_fall_back_to_their_family(model: str, family: str) -> None:
    assert PriceTable({}).price(model) == DEFAULT_PRICES[family]


def test_a_snapshot_with_its_own_price_keeps_it() -> None:
    assert _rates(PriceTable({}).price("gpt-4o-2024-05-13")) == (5.0, 15.0, None)


@pytest.mark.parametrize(
    "model",
    [
        pytest.param("gpt-4o-mini-tts", id="other-variant"),
        pytest.param("gpt-4o-realtime-preview", id="realtime"),
        pytest.param("gpt-4o-audio-preview-2024-12-17", id="audio-dated"),
        pytest.param("gpt-4oo", id="no-dash-boundary"),
        pytest.param("gpt-5-turbo", id="unknown-variant"),
        pytest.param("claude-opus-4-6", id="newer-version-not-the-old-one"),
        pytest.param("claude-sonnet-4-7-20260101", id="newer-version-dated"),
        pytest.param("o3-deep-research", id="o3-variant"),
        pytest.param("", id="empty"),
        pytest.param("-20240101", id="only-a-suffix"),
        pytest.param("llama-3-70b", id="unknown"),
    ],
)
def test_no_false_prefix_match(model: str) -> None:
    assert PriceTable({}).price(model) is None


def test_gpt_4o_mini_is_not_gpt_4o() -> None:
    table = PriceTable({})

    assert table.price("gpt-4o-mini") == DEFAULT_PRICES["gpt-4o-mini"]
    assert table.price("gpt-4o-mini-2024-07-18") != DEFAULT_PRICES["gpt-4o"]
    assert table.price("gpt-5-pro") == DEFAULT_PRICES["gpt-5-pro"]


def test_resolved_names_are_cached_and_the_cache_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = PriceTable({})
    table.price("gpt-4o-2024-08-06")
    resolves: list[str] = []
    real = table._resolve

    def counted(model: str) -> PriceConfig | None:
        resolves.append(model)
        return real(model)

    monkeypatch.setattr(table, "_resolve", counted)

    assert table.price("gpt-4o-2024-08-06") == DEFAULT_PRICES["gpt-4o"]
    assert table.price("unknown-model") is None
    assert table.price("unknown-model") is None
    assert resolves == ["unknown-model"]

    monkeypatch.setattr(pricing, "_MAX_CACHED", 3)
    for n in range(10):
        table.price(f"random-{n}")
    assert len(table._resolved) <= 3


# --- cost --------------------------------------------------------------------------------------

USAGE = Usage(input_tokens=1_000_000, cached_tokens=200_000, output_tokens=500_000)


def test_cost_counts_uncached_cached_and_output_tokens() -> None:
    cost = PriceTable({}).cost(["gpt-4o"], USAGE, batch=False)

    assert cost == pytest.approx(0.8 * 2.50 + 0.2 * 1.25 + 0.5 * 10.00)
    assert cost == 7.25


def test_cached_input_defaults_to_the_input_price() -> None:
    table = PriceTable({"m": PriceConfig(input=2.0, output=4.0)})

    assert table.cost(["m"], USAGE, batch=False) == 1.0 * 2.0 + 0.5 * 4.0


def test_batch_takes_the_discount_off_everything() -> None:
    cost = PriceTable({}).cost(["gpt-4o"], USAGE, batch=True)

    assert cost == pytest.approx((0.8 * 2.50 + 0.2 * 1.25 + 0.5 * 10.00) / 2)


def test_batch_uses_explicit_batch_prices_when_given() -> None:
    price = PriceConfig(input=3.0, output=15.0, cached_input=0.3, batch_input=1.0, batch_output=5.0)
    table = PriceTable({"m": price})

    cost = table.cost(["m"], USAGE, batch=True)

    # cached input in batch: cached_input less the (default 50%) discount
    assert cost == pytest.approx(0.8 * 1.0 + 0.2 * 0.15 + 0.5 * 5.0)


def test_batch_cached_input_without_a_cached_price_costs_the_batch_input() -> None:
    discounted = PriceTable({"m": PriceConfig(input=4.0, output=8.0, batch_discount=0.25)})
    explicit = PriceTable({"m": PriceConfig(input=4.0, output=8.0, batch_input=1.0)})

    assert discounted.cost(["m"], USAGE, batch=True) == pytest.approx(1.0 * 3.0 + 0.5 * 6.0)
    assert explicit.cost(["m"], USAGE, batch=True) == pytest.approx(1.0 * 1.0 + 0.5 * 4.0)


def test_a_line_costs_the_batch_price_when_native_and_the_normal_price_when_executed() -> None:
    table = PriceTable({})
    usage = Usage(input_tokens=MILLION)

    assert table.line_cost(["gpt-4o"], usage, native=True) == 1.25
    assert table.line_cost(["gpt-4o"], usage, native=False) == 2.50
    assert table.line_cost(["unknown"], usage, native=True) == 0.0


@pytest.mark.parametrize(
    "price",
    [
        PriceConfig(input=2.0, batch_discount=0.5),
        PriceConfig(input=2.0, batch_input=1.0),
        PriceConfig(input=2.0, output=4.0, batch_output=2.0),
    ],
)
def test_a_configured_batch_price_applies_to_every_batch_line(price: PriceConfig) -> None:
    table = PriceTable({"llama": price})
    usage = Usage(input_tokens=MILLION)

    assert price.own_batch_price
    assert table.line_cost(["llama"], usage, native=False) == 1.0
    assert table.line_cost(["llama"], usage, native=True) == 1.0
    assert table.cost(["llama"], usage, batch=False) == 2.0  # interactive calls: full price


def test_the_first_priced_model_is_used() -> None:
    table = PriceTable({})
    usage = Usage(input_tokens=MILLION)

    assert table.cost(("my-alias", "gpt-4o-mini-2024-07-18"), usage, batch=False) == 0.15
    assert table.cost(("gpt-4o", "gpt-4o-mini"), usage, batch=False) == 2.50
    assert table.cost("gpt-4o", usage, batch=False) == 2.50  # a lone name, not its letters


@pytest.mark.parametrize("models", [[], ["unknown"], ["unknown", "also-unknown"]])
def test_an_unknown_model_costs_nothing(models: list[str]) -> None:
    assert PriceTable({}).cost(models, USAGE, batch=False) == 0.0


def test_float_rounding_is_sane() -> None:
    table = PriceTable({"m": PriceConfig(input=0.1, output=0.2)})

    assert (
        table.cost(["m"], Usage(input_tokens=3), batch=False) == 3e-7
    )  # not 3.0000000000000004e-07
    assert table.cost(["m"], Usage(input_tokens=1, output_tokens=1), batch=False) == 3e-7
    assert PriceTable({}).cost(
        ["gpt-5-nano"], Usage(input_tokens=1, cached_tokens=1), batch=False
    ) == (5e-9)
    total = sum(
        table.cost(["m"], Usage(input_tokens=1000, output_tokens=1000), batch=False)
        for _ in range(1000)
    )
    assert total == pytest.approx(0.3)


def test_odd_usage_never_goes_negative() -> None:
    table = PriceTable({})

    assert table.cost(["gpt-4o"], Usage(input_tokens=10, cached_tokens=50), batch=False) == (
        10 * 1.25 / MILLION
    )
    assert table.cost(["gpt-4o"], Usage(input_tokens=-5, output_tokens=-5), batch=False) == 0.0
    assert table.cost(["gpt-4o"], Usage(), batch=True) == 0.0
