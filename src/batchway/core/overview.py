"""What a person looks at: batches of any key with their figures, a batch's lines with their
logs, request logs, usage with what batch prices saved, and keys with their spending.

Every question is asked as a principal: the admin sees every key, a gateway key only its
own batches, logs and usage (a filter naming another key is overridden, never trusted).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from batchway.core import clock
from batchway.core.analytics import LogFilter, UsageQuery, UsageReport, UsageTotals
from batchway.core.batches import BatchService
from batchway.core.budgets import period_start_ms
from batchway.core.call_pricing import CallPricing
from batchway.core.listings import BatchFigures, BatchFilter, LineFilter, LineView
from batchway.core.models import ApiKey, Batch, Page, Principal, RequestLog, Usage
from batchway.core.ports import BatchStore, KeyStore, LineStore, RequestLogs
from batchway.errors import InvalidRequest, NotFound

__all__ = ["BatchRow", "KeyStanding", "LineRow", "ModelSaving", "Overview"]

MAX_PAGE = 200
_MINUTE_MS = 60_000
_HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchRow:
    """A batch with what its lines add up to so far."""

    batch: Batch
    figures: BatchFigures


@dataclass(frozen=True, slots=True, kw_only=True)
class LineRow:
    """A line of a batch with the log of its call (None until it finished)."""

    line: LineView
    log: RequestLog | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSaving:
    """What a model's batch lines cost, and what they would have cost at the normal price."""

    model: str
    batch: UsageTotals
    at_normal_price: float

    @property
    def saved_usd(self) -> float:
        return max(0.0, self.at_normal_price - self.batch.cost_usd)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyStanding:
    """A key with its spending in the budget period and its use of the current windows."""

    key: ApiKey
    spent_usd: float
    last_minute: UsageTotals  # interactive calls, the traffic key limits apply to
    last_hour: UsageTotals

    @property
    def budget_left_usd(self) -> float | None:
        return None if self.key.budget_usd is None else self.key.budget_usd - self.spent_usd


def _page_size(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}.", param="limit")
    return limit


class Overview:
    """Read-mostly questions over batches, lines, logs, usage and keys."""

    def __init__(
        self,
        *,
        batches: BatchService,
        batch_store: BatchStore,
        lines: LineStore,
        keys: KeyStore,
        logs: RequestLogs,
        pricing: CallPricing,
    ) -> None:
        self._batches = batches
        self._batch_store = batch_store
        self._lines = lines
        self._keys = keys
        self._logs = logs
        self._pricing = pricing

    @staticmethod
    def _own(principal: Principal, key_id: str | None) -> str | None:
        """The key a question is about: any (or the named one) for the admin, else its own."""
        return key_id if principal.is_admin else principal.key_id

    async def batches(
        self, principal: Principal, filters: BatchFilter, *, limit: int, after: str | None
    ) -> Page[BatchRow]:
        """Batches newest first, each with its figures (one query for the page's lines)."""
        filters = replace(filters, owner=self._own(principal, filters.owner))
        page = await self._batch_store.find_batches(filters, limit=_page_size(limit), after=after)
        figures = await self._lines.batch_figures([b.id for b in page.items])
        return Page(
            items=[
                BatchRow(batch=b, figures=figures.get(b.id, BatchFigures(counts=b.counts)))
                for b in page.items
            ],
            has_more=page.has_more,
        )

    async def batch(self, principal: Principal, batch_id: str) -> BatchRow:
        batch = await self._batches.get(principal, batch_id)
        figures = await self._lines.batch_figures([batch.id])
        return BatchRow(
            batch=batch, figures=figures.get(batch.id, BatchFigures(counts=batch.counts))
        )

    async def lines(
        self,
        principal: Principal,
        batch_id: str,
        filters: LineFilter,
        *,
        limit: int,
        after_line: int | None,
    ) -> Page[LineRow]:
        """A batch's lines in input order, each with the log of its call."""
        batch = await self._batches.get(principal, batch_id)
        page = await self._lines.list_lines(
            batch.id, filters, limit=_page_size(limit), after_line=after_line
        )
        logs = await self._logs.for_items([v.id for v in page.items])
        return Page(
            items=[LineRow(line=v, log=logs.get(v.id)) for v in page.items],
            has_more=page.has_more,
        )

    async def logs(
        self, principal: Principal, filters: LogFilter, *, limit: int, before_id: int | None
    ) -> Page[RequestLog]:
        """Request logs newest first, bodies left unread."""
        filters = replace(filters, key_id=self._own(principal, filters.key_id))
        return await self._logs.query(
            filters, limit=_page_size(limit), before_id=before_id, bodies=False
        )

    async def log(self, principal: Principal, log_id: int) -> RequestLog:
        """One request log with its bodies (where the config keeps them)."""
        log = await self._logs.get(log_id)
        if log is None or not (principal.is_admin or log.key_id == principal.key_id):
            raise NotFound(f"No request log with id {log_id}.")
        return log

    async def usage(self, principal: Principal, query: UsageQuery) -> UsageReport:
        """The same report as ``GET /admin/usage`` and ``batchway usage``."""
        return await self._logs.usage(replace(query, key_id=self._own(principal, query.key_id)))

    async def batch_savings(self, principal: Principal, query: UsageQuery) -> list[ModelSaving]:
        """Per model, what its batch lines cost against the normal price of the same tokens
        (batch prices apply where a provider's batch discount does: see docs/limits-and-usage)."""
        report = await self.usage(principal, replace(query, group_by="model"))
        per_model: dict[str, UsageTotals] = {}
        for row in report.series:
            if row.kind == "batch" and row.group is not None:
                per_model[row.group] = per_model.get(row.group, UsageTotals()) + row.totals
        return [
            ModelSaving(
                model=model,
                batch=totals,
                at_normal_price=self._pricing.estimate(
                    model,
                    Usage(
                        input_tokens=totals.input_tokens,
                        cached_tokens=totals.cached_tokens,
                        output_tokens=totals.output_tokens,
                    ),
                ),
            )
            for model, totals in sorted(per_model.items())
        ]

    async def key_standings(self) -> list[KeyStanding]:
        """Every key (admin only) with its spending and its current windows' use, in a few
        reads however many keys there are: one per budget period in use, one per window."""
        keys = await self._keys.list_keys()
        now_ms = int(clock.now_float() * 1000)
        starts = {key.id: period_start_ms(key.budget_period, now_ms / 1000) for key in keys}
        spent = {since: await self._logs.spent_by_key(since) for since in set(starts.values())}
        minute = await self._recent_by_key(now_ms - _MINUTE_MS)
        hour = await self._recent_by_key(now_ms - _HOUR_MS)
        return [
            KeyStanding(
                key=key,
                spent_usd=spent[starts[key.id]].get(key.id, 0.0),
                last_minute=minute.get(key.id, UsageTotals()),
                last_hour=hour.get(key.id, UsageTotals()),
            )
            for key in keys
        ]

    async def key_standing(self, key: ApiKey) -> KeyStanding:
        now_ms = int(clock.now_float() * 1000)
        spent = await self._logs.spent(key.id, period_start_ms(key.budget_period, now_ms / 1000))
        minute = await self._recent(key.id, now_ms - _MINUTE_MS)
        hour = await self._recent(key.id, now_ms - _HOUR_MS)
        return KeyStanding(key=key, spent_usd=spent, last_minute=minute, last_hour=hour)

    async def _recent(self, key_id: str, since_ms: int) -> UsageTotals:
        query = UsageQuery(interval="hour", since_ms=since_ms, key_id=key_id)
        return (await self._logs.usage(query)).interactive

    async def _recent_by_key(self, since_ms: int) -> dict[str, UsageTotals]:
        """Each key's interactive calls since ``since_ms``."""
        query = UsageQuery(interval="hour", since_ms=since_ms, group_by="key")
        totals: dict[str, UsageTotals] = {}
        for row in (await self._logs.usage(query)).series:
            if row.kind == "interactive" and row.group is not None:
                totals[row.group] = totals.get(row.group, UsageTotals()) + row.totals
        return totals
