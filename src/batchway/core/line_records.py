"""Pricing a finished batch line and writing its request-log row, before the store keeps it.

A line is priced and logged from what the worker holds (the leased line and its outcome),
so that the store's one transaction only persists: the result, the price and the log row
together, which is what makes a line billed exactly once even across a crash.
"""

from __future__ import annotations

from batchway.core.models import BatchItem, ItemOutcome, LineRecord, RequestLog
from batchway.core.ports import LinePricing
from batchway.core.states import ItemState

__all__ = ["LineRecords"]

_LOGGED = (ItemState.SUCCEEDED, ItemState.FAILED)  # lines that went upstream (or were refused)


class LineRecords:
    """Turns outcomes into the records the store writes (unpriced without ``pricing``)."""

    def __init__(self, pricing: LinePricing | None) -> None:
        self._pricing = pricing
        self.record_bodies = pricing is not None and pricing.record_bodies

    def of(self, item: BatchItem, outcome: ItemOutcome, now: float) -> LineRecord:
        cost, upstream_model = 0.0, None
        if outcome.state is ItemState.SUCCEEDED and self._pricing is not None:
            cost, upstream_model = self._pricing.price(
                item.model, item.provider, outcome.usage, outcome.native
            )
        log = None
        if outcome.state in _LOGGED:
            log = self._log(item, outcome, now, cost, upstream_model)
        return LineRecord(outcome=outcome, batch_id=item.batch_id, cost_usd=cost, log=log)

    def _log(
        self,
        item: BatchItem,
        o: ItemOutcome,
        now: float,
        cost: float,
        upstream_model: str | None,
    ) -> RequestLog:
        bodies = self.record_bodies
        return RequestLog(
            created_at_ms=int(now * 1000),
            kind="batch",
            key_id=item.owner,
            model=item.model,
            provider=item.provider,
            upstream_model=upstream_model,
            endpoint=item.endpoint,
            batch_id=item.batch_id,
            custom_id=item.custom_id,
            item_id=int(item.id),
            status=o.error_code if o.error_code == "budget_exceeded" else o.state.value,
            status_code=o.status_code,
            error_code=o.error_code,
            usage=o.usage,
            latency_ms=o.latency_ms,
            cost_usd=cost,
            retries=max(item.attempts - 1, 0),
            request_id=o.request_id,
            request_body=item.body if bodies else None,
            response_body=o.response if bodies else None,
        )
