"""Pricing a call by its public model and provider."""

from __future__ import annotations

import pytest

from batchway.config import Config
from batchway.core.call_pricing import CallPricing
from batchway.core.models import Usage
from batchway.core.pricing import PriceTable
from batchway.core.routing import Router
from batchway.providers.registry import simulated_providers

CONFIG = Config.model_validate(
    {
        "providers": {
            "up": {"kind": "openai-compatible", "base_url": "http://127.0.0.1:1"},
            "sim": {"kind": "simulated"},
        },
        "models": {
            "house": {"provider": "up", "model": "gpt-4o-mini-2024-07-18"},
            "priced": {"provider": "up", "model": "whatever"},
            "gpt-4o": {"provider": "sim", "model": "gpt-4o"},
        },
        "prices": {"priced": {"input": 1.0, "output": 2.0}},
    }
)
USAGE = Usage(input_tokens=1_000_000, output_tokens=1_000_000)


@pytest.fixture
def pricing() -> CallPricing:
    return CallPricing(PriceTable(CONFIG.prices), Router(CONFIG), simulated_providers(CONFIG))


def test_the_public_name_is_priced_first(pricing: CallPricing):
    assert pricing.cost("priced", "up", USAGE, batch=False) == (3.0, "whatever")
    assert pricing.cost("priced", "up", USAGE, batch=True) == (1.5, "whatever")


def test_the_upstream_name_is_the_fallback(pricing: CallPricing):
    cost, upstream = pricing.cost("house", "up", USAGE, batch=False)
    assert upstream == "gpt-4o-mini-2024-07-18"
    assert cost == pytest.approx(0.15 + 0.60)


def test_a_simulated_provider_costs_nothing(pricing: CallPricing):
    assert pricing.cost("gpt-4o", "sim", USAGE, batch=False) == (0.0, "gpt-4o")
    assert pricing.estimate("gpt-4o", USAGE) == 0.0


def test_an_estimate_uses_the_first_route_at_the_normal_price(pricing: CallPricing):
    assert pricing.estimate("priced", USAGE) == 3.0
    assert pricing.estimate("unknown", USAGE) == 0.0
