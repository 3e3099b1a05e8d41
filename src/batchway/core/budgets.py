"""Budgets: what each key has spent, read from the request logs and kept in memory.

A key's spend is read from the database when first needed and again every few seconds
(so that several gateway processes see each other's spending), and in between grows by
what this process records. A budget may reset every day or month (UTC).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from batchway.core import clock
from batchway.core.call_pricing import CallPricing
from batchway.core.models import BudgetPeriod, Principal, Usage
from batchway.core.ports import PrincipalLookup, RequestLogs
from batchway.core.routing import Router
from batchway.core.tokens import estimate_input_tokens
from batchway.core.validation import input_lines
from batchway.errors import BudgetExceeded

__all__ = [
    "BatchCostCheck",
    "Budgets",
    "OwnerBudgets",
    "jsonl_lines",
    "period_start_ms",
]


def period_start_ms(period: BudgetPeriod | None, now: float) -> int | None:
    """When the current budget period began (epoch ms, UTC); None for a lifetime budget."""
    if period is None:
        return None
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today if period == "day" else today.replace(day=1)
    return int(start.timestamp() * 1000)


@dataclass(slots=True)
class _Spend:
    since_ms: int | None
    stored: float  # as last read from the database
    added: float  # recorded by this process since that read
    read_at: float  # time.monotonic() of the read


class Budgets:
    """Remaining budget per key, without a database read per request.

    When a key's spend is due to be read again, the requests that find it so share one
    read: under load, every request in flight would otherwise ask the database the same
    question at once.
    """

    def __init__(self, spend: RequestLogs, refresh_seconds: float = 2.0) -> None:
        self._spend = spend
        self._refresh = refresh_seconds
        self._known: dict[str, _Spend] = {}
        self._reading: dict[tuple[str, int | None], asyncio.Future[_Spend]] = {}

    async def remaining(self, principal: Principal) -> float | None:
        """USD left in the key's budget (may be negative); None when it has no budget."""
        if principal.budget_usd is None:
            return None
        since = period_start_ms(principal.budget_period, clock.now_float())
        entry = self._known.get(principal.key_id)
        if (
            entry is None
            or entry.since_ms != since
            or time.monotonic() - entry.read_at > self._refresh
        ):
            entry = await asyncio.shield(self._read(principal.key_id, since))
        return principal.budget_usd - entry.stored - entry.added

    def _read(self, key_id: str, since: int | None) -> asyncio.Future[_Spend]:
        """The read of a key's spend under way, or a new one."""
        slot = (key_id, since)
        pending = self._reading.get(slot)
        if pending is None:
            pending = self._reading[slot] = asyncio.ensure_future(self._fetch(key_id, since))

            def done(read: asyncio.Future[_Spend]) -> None:
                self._reading.pop(slot, None)
                if not read.cancelled():
                    read.exception()  # retrieved, even when every asker has gone

            pending.add_done_callback(done)
        return pending

    async def _fetch(self, key_id: str, since: int | None) -> _Spend:
        stored = await self._spend.spent(key_id, since)
        entry = _Spend(since_ms=since, stored=stored, added=0.0, read_at=time.monotonic())
        self._known[key_id] = entry
        return entry

    async def exhausted(self, principal: Principal) -> bool:
        remaining = await self.remaining(principal)
        return remaining is not None and remaining <= 0

    def add(self, key_id: str, cost_usd: float) -> None:
        """This process recorded ``cost_usd`` of spending for a key."""
        entry = self._known.get(key_id)
        if entry is not None and cost_usd:
            entry.added += cost_usd


class OwnerBudgets:
    """Budgets as the batch worker sees them: by the id of the key owning a batch.

    A line's cost counts against its key as soon as its answer arrives, before its result
    is written, so that lines stop being started as soon as the budget is used up.
    """

    def __init__(self, budgets: Budgets, keys: PrincipalLookup, pricing: CallPricing) -> None:
        self._budgets = budgets
        self._keys = keys
        self._pricing = pricing

    def spend(self, key_id: str, model: str, provider: str, usage: Usage) -> None:
        self._budgets.add(key_id, self._pricing.cost(model, provider, usage, batch=False)[0])

    async def exhausted(self, key_id: str) -> bool:
        principal = await self._keys.principal_by_id(key_id)
        return principal is not None and await self._budgets.exhausted(principal)


class BatchCostCheck:
    """Refuses a batch whose estimated cost is more than its key's remaining budget.

    The estimate is the price of the batch's input tokens at the normal price: a floor of
    what it will cost, so that a batch refused here could never have finished within the
    budget. Lines that would go past the budget while it runs end ``budget_exceeded``.
    """

    def __init__(self, budgets: Budgets, pricing: CallPricing, router: Router) -> None:
        self._budgets = budgets
        self._pricing = pricing
        self._router = router

    async def check(self, principal: Principal, endpoint: str, lines: AsyncIterable[bytes]) -> None:
        if await self._budgets.remaining(principal) is None:
            return
        cost = 0.0
        async for line in lines:
            cost += self.line_cost(endpoint, line)
        await self.check_cost(principal, cost)

    async def check_cost(self, principal: Principal, cost: float) -> None:
        """Refuse a batch estimated at ``cost`` if that is more than the key has left."""
        remaining = await self._budgets.remaining(principal)
        if remaining is not None and cost > remaining:
            raise BudgetExceeded(
                f"The batch's estimated cost (${cost:.4f} for its input tokens alone) is more "
                f"than the ${max(remaining, 0.0):.4f} left in this key's budget.",
                code="budget_exceeded",
            )

    def line_cost(self, endpoint: str, line: bytes) -> float:
        """The estimated cost of one batch line's input tokens (0 if it cannot be read)."""
        try:
            parsed = orjson.loads(line)
        except orjson.JSONDecodeError:
            return 0.0  # the worker's validation reports it
        body = parsed.get("body") if isinstance(parsed, dict) else None
        return self.body_cost(endpoint, body)

    def body_cost(self, endpoint: str, body: Any) -> float:
        """The estimated cost of one request body's input tokens (0 if it has no model)."""
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(model, str):
            return 0.0
        model = self._router.batch_model(model) or model  # "gpt-4o-mini-batch" too
        usage = Usage(input_tokens=estimate_input_tokens(endpoint, body))
        return self._pricing.estimate(model, usage)


async def jsonl_lines(chunks: AsyncIterable[bytes], max_line_bytes: int) -> AsyncIterator[bytes]:
    """The non-blank lines of a byte stream, less those over ``max_line_bytes`` (which
    validation reports)."""
    async for line in input_lines(chunks, max_line_bytes):
        if isinstance(line, bytes) and line.strip():
            yield line
