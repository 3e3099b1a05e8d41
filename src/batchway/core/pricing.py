"""The price table: what a call costs in USD, from its model and token usage.

Prices are USD per million tokens (:class:`~batchway.config.PriceConfig`). The configured
``prices`` override the built-in :data:`DEFAULT_PRICES`. A model name not in either falls back
to its family when all it adds is a snapshot or alias suffix: ``gpt-4o-mini-2024-07-18`` and
``claude-3-5-sonnet-latest`` are priced as ``gpt-4o-mini`` and ``claude-3-5-sonnet``. Any other
suffix does not fall back, so ``gpt-4o-mini`` never takes ``gpt-4o``'s price, and neither does
``gpt-5-pro`` take ``gpt-5``'s (it costs twelve times more): an unknown model costs nothing
rather than a wrong amount.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

from batchway.config import NATIVE_BATCH_DISCOUNT, PriceConfig
from batchway.core.models import Usage

__all__ = ["DEFAULT_PRICES", "PriceTable"]


def _price(input: float, output: float, cached: float | None = None) -> PriceConfig:
    return PriceConfig(input=input, output=output, cached_input=cached)


# List prices (input, output, cached input) in USD per million tokens, as published by OpenAI
# (openai.com/api/pricing) and Anthropic (docs' "Pricing" page) in November 2025, cross-checked
# against third-party copies of those pages. Both vendors' batch APIs take 50% off everything
# (NATIVE_BATCH_DISCOUNT), which lines run through them get. Not modelled: Anthropic's cache writes
# (1.25x input; usage counts them as plain input) and its long-context (>200k) Sonnet rates.
DEFAULT_PRICES: Final[Mapping[str, PriceConfig]] = MappingProxyType(
    {
        # OpenAI: GPT-5 family
        "gpt-5": _price(1.25, 10.00, 0.125),
        "gpt-5-mini": _price(0.25, 2.00, 0.025),
        "gpt-5-nano": _price(0.05, 0.40, 0.005),
        "gpt-5-chat-latest": _price(1.25, 10.00, 0.125),
        "gpt-5-codex": _price(1.25, 10.00, 0.125),
        "gpt-5-pro": _price(15.00, 120.00),
        "gpt-5.1": _price(1.25, 10.00, 0.125),
        "gpt-5.1-codex": _price(1.25, 10.00, 0.125),
        # OpenAI: GPT-4.1 and GPT-4o
        "gpt-4.1": _price(2.00, 8.00, 0.50),
        "gpt-4.1-mini": _price(0.40, 1.60, 0.10),
        "gpt-4.1-nano": _price(0.10, 0.40, 0.025),
        "gpt-4o": _price(2.50, 10.00, 1.25),
        "gpt-4o-2024-05-13": _price(5.00, 15.00),  # the first snapshot kept its launch price
        "chatgpt-4o-latest": _price(5.00, 15.00),
        "gpt-4o-mini": _price(0.15, 0.60, 0.075),
        # OpenAI: reasoning models
        "o1": _price(15.00, 60.00, 7.50),
        "o1-preview": _price(15.00, 60.00, 7.50),
        "o1-mini": _price(1.10, 4.40, 0.55),
        "o1-pro": _price(150.00, 600.00),
        "o3": _price(2.00, 8.00, 0.50),  # since the cut of June 2025 (was 10 / 40)
        "o3-pro": _price(20.00, 80.00),
        "o3-mini": _price(1.10, 4.40, 0.55),
        "o4-mini": _price(1.10, 4.40, 0.275),
        # OpenAI: older chat and completion models
        "gpt-4-turbo": _price(10.00, 30.00),
        "gpt-4-turbo-preview": _price(10.00, 30.00),
        "gpt-4-0125-preview": _price(10.00, 30.00),
        "gpt-4-1106-preview": _price(10.00, 30.00),
        "gpt-4": _price(30.00, 60.00),
        "gpt-4-32k": _price(60.00, 120.00),
        "gpt-3.5-turbo": _price(0.50, 1.50),
        "gpt-3.5-turbo-instruct": _price(1.50, 2.00),
        "davinci-002": _price(2.00, 2.00),
        "babbage-002": _price(0.40, 0.40),
        # OpenAI: embeddings
        "text-embedding-3-small": _price(0.02, 0.0),
        "text-embedding-3-large": _price(0.13, 0.0),
        "text-embedding-ada-002": _price(0.10, 0.0),
        # Anthropic (cached input: cache hits, 0.1x input)
        "claude-3-haiku": _price(0.25, 1.25, 0.03),
        "claude-3-5-haiku": _price(0.80, 4.00, 0.08),
        "claude-haiku-4-5": _price(1.00, 5.00, 0.10),
        "claude-3-5-sonnet": _price(3.00, 15.00, 0.30),
        "claude-3-7-sonnet": _price(3.00, 15.00, 0.30),
        "claude-sonnet-4": _price(3.00, 15.00, 0.30),
        "claude-sonnet-4-5": _price(3.00, 15.00, 0.30),
        "claude-3-opus": _price(15.00, 75.00, 1.50),
        "claude-opus-4": _price(15.00, 75.00, 1.50),
        "claude-opus-4-1": _price(15.00, 75.00, 1.50),
        "claude-opus-4-5": _price(5.00, 25.00, 0.50),
    }
)

# A vendor's route prefix: "openai/gpt-4o", Bedrock's "us.anthropic.claude-…"
_PREFIX: Final = re.compile(r"^(?:.*/)?(?:(?:[a-z]{2,6}\.)?anthropic\.)?")
# One suffix that names a snapshot or alias of the same model: a date (20241022, 2024-07-18,
# Vertex's @20241022), an old four-digit snapshot (0613), "latest", Anthropic's "-0" alias
# (claude-sonnet-4-0) and version tags (claude-3-5-sonnet-v2, Bedrock's -v2:0).
_SUFFIX: Final = re.compile(r"(?:[-@](?:\d{8}|\d{4}-\d{2}-\d{2}|\d{4}|latest|0)|-v\d+(?::\d+)?)$")
_MAX_CACHED: Final = 10_000  # names are client input: keep the cache of them bounded


class PriceTable:
    """Prices by model name: ``overrides`` (the configured prices) first, then
    :data:`DEFAULT_PRICES`, then the family of a snapshot or alias (see the module docstring).
    Resolved names are cached."""

    def __init__(self, overrides: Mapping[str, PriceConfig] | None = None) -> None:
        self._overrides = dict(overrides or {})
        self._table = {**DEFAULT_PRICES, **self._overrides}
        self._resolved: dict[str, PriceConfig | None] = {}

    def price(self, model: str) -> PriceConfig | None:
        """The price of ``model``, or None if neither it nor its family is known."""
        try:
            return self._resolved[model]
        except KeyError:
            pass
        price = self._resolve(model)
        if len(self._resolved) >= _MAX_CACHED:
            self._resolved.clear()
        self._resolved[model] = price
        return price

    def _resolve(self, model: str) -> PriceConfig | None:
        price = self._overrides.get(model)
        if price is None:
            price = DEFAULT_PRICES.get(model)
        if price is not None:
            return price
        name = _PREFIX.sub("", model.strip().lower(), count=1)
        while name:
            price = self._table.get(name)
            if price is not None:
                return price
            match = _SUFFIX.search(name)
            if match is None:
                return None
            name = name[: match.start()]
        return None

    def _first(self, models: Sequence[str]) -> PriceConfig | None:
        if isinstance(models, str):  # a lone name, not a sequence of one-letter names
            models = (models,)
        for model in models:
            price = self.price(model)
            if price is not None:
                return price
        return None

    def cost(self, models: Sequence[str], usage: Usage, *, batch: bool) -> float:
        """The cost in USD of ``usage`` at the price of the first of ``models`` (the public
        name, then the upstream one) that has a price; 0.0 if none has.

        ``batch`` prices at the batch rate: ``batch_input``/``batch_output`` when set, else
        the normal rates (cached input included) less the batch discount.
        """
        price = self._first(models)
        return _cost(price, usage, batch) if price is not None else 0.0

    def line_cost(self, models: Sequence[str], usage: Usage, *, native: bool) -> float:
        """The cost of a batch line: at the batch price if it ran through a provider's
        native batch API, or if the config gives the model a batch price of its own."""
        price = self._first(models)
        if price is None:
            return 0.0
        return _cost(price, usage, native or price.own_batch_price)


def _cost(price: PriceConfig, usage: Usage, batch: bool) -> float:
    input_tokens = max(usage.input_tokens, 0)
    cached = min(max(usage.cached_tokens, 0), input_tokens)  # part of input_tokens
    output_tokens = max(usage.output_tokens, 0)
    input_rate, output_rate = price.input, price.output
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    if batch:
        discount = price.batch_discount
        keep = 1.0 - (discount if discount is not None else NATIVE_BATCH_DISCOUNT)
        if price.cached_input is not None:
            cached_rate = price.cached_input * keep
        else:  # cached input costs what input costs
            cached_rate = price.batch_input if price.batch_input is not None else input_rate * keep
        input_rate = price.batch_input if price.batch_input is not None else input_rate * keep
        output_rate = price.batch_output if price.batch_output is not None else output_rate * keep
    total = (
        (input_tokens - cached) * input_rate + cached * cached_rate + output_tokens * output_rate
    )
    # rounded to a millionth of a cent, so that sums of rates like 0.1 + 0.2 read cleanly
    return round(total / 1_000_000, 12)
