"""The price of a call by where it went: its public model on one provider.

A price is looked up by the public model name, then by the provider's own name for it. Calls
to a simulated provider are free: its answers are fakes, and so would be their cost.
"""

from __future__ import annotations

from collections.abc import Iterable

from batchway.core.models import Usage
from batchway.core.pricing import PriceTable
from batchway.core.routing import Router

__all__ = ["CallPricing"]


class CallPricing:
    """Prices calls from the price table and the routes of the config."""

    def __init__(self, prices: PriceTable, router: Router, free: Iterable[str] = ()) -> None:
        """``free``: the providers whose calls cost nothing (the simulated ones)."""
        self._prices = prices
        self._router = router
        self._free = frozenset(free)

    def cost(
        self, model: str, provider: str, usage: Usage, *, batch: bool
    ) -> tuple[float, str | None]:
        """The cost of a call in USD (at the batch price if ``batch``), and the provider's own
        name for the model."""
        upstream = self._router.upstream_model(model, provider)
        if provider in self._free:
            return 0.0, upstream
        names = (model, upstream) if upstream is not None else (model,)
        return self._prices.cost(names, usage, batch=batch), upstream

    def line_cost(
        self, model: str, provider: str, usage: Usage, *, native: bool
    ) -> tuple[float, str | None]:
        """The cost of a batch line in USD (see ``PriceTable.line_cost``), and the
        provider's own name for the model."""
        upstream = self._router.upstream_model(model, provider)
        if provider in self._free:
            return 0.0, upstream
        names = (model, upstream) if upstream is not None else (model,)
        return self._prices.line_cost(names, usage, native=native), upstream

    def estimate(self, model: str, usage: Usage) -> float:
        """The cost of ``usage`` on a model's first route, at the normal price."""
        route = self._router.route(model)
        if route is None:
            return self._prices.cost((model,), usage, batch=False)
        return self.cost(model, route.provider, usage, batch=False)[0]
