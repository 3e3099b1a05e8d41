"""`MemoryRequestLogs`: the request log of a `MemoryStore` (where its ``record_outcomes``
writes batch lines' logs too), with the questions ``batchway.store.logs.SqlRequestLogs``
answers: listings, usage per time bucket, a key's spending, retention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import cast

from batchway.core.analytics import (
    INTERVAL_MS,
    LogFilter,
    UsageQuery,
    UsageReport,
    UsageRow,
    UsageTotals,
    hourly_totals,
    whole_hours,
)
from batchway.core.models import Page, RequestKind, RequestLog
from batchway.testing.memory._tables import turn
from batchway.testing.memory.store import MemoryStore

__all__ = ["DELETE_CHUNK", "MemoryRequestLogs"]

DELETE_CHUNK = 10_000  # rows deleted per turn, as the SQL store deletes per transaction


def _matches(log: RequestLog, filters: LogFilter) -> bool:
    for value, wanted in (
        (log.key_id, filters.key_id),
        (log.model, filters.model),
        (log.provider, filters.provider),
        (log.batch_id, filters.batch_id),
        (log.status, filters.status),
        (log.kind, filters.kind),
    ):
        if wanted is not None and value != wanted:
            return False
    if filters.since_ms is not None and log.created_at_ms < filters.since_ms:
        return False
    return filters.until_ms is None or log.created_at_ms < filters.until_ms


class MemoryRequestLogs:
    """The request log, on the same tables as ``store`` (a store of its own when None)."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        self._tables = (store if store is not None else MemoryStore()).tables

    async def insert(
        self, logs: Sequence[RequestLog], *, usage_only: Sequence[RequestLog] = ()
    ) -> None:
        """Store ``logs`` in one statement (their ``id`` is ignored: the database assigns it),
        and add them and ``usage_only`` (calls that keep no log row) to their hours' usage."""
        await turn()
        self._tables.add_logs(logs, usage_only)

    async def query(
        self,
        filters: LogFilter,
        *,
        limit: int,
        before_id: int | None,
        bodies: bool = True,
    ) -> Page[RequestLog]:
        """Logs matching ``filters``, newest first; ``before_id`` (the last id of the previous
        page) pages to older ones. ``bodies=False`` leaves the bodies unread."""
        await turn()
        rows = [
            log
            for log_id, log in sorted(self._tables.logs.items(), reverse=True)
            if (before_id is None or log_id < before_id) and _matches(log, filters)
        ]
        if not bodies:
            rows = [replace(log, request_body=None, response_body=None) for log in rows]
        return Page(items=rows[:limit], has_more=len(rows) > limit)

    async def get(self, log_id: int) -> RequestLog | None:
        """One log with its bodies (where they were kept)."""
        await turn()
        return self._tables.logs.get(log_id)

    async def for_items(self, item_ids: Sequence[str]) -> dict[str, RequestLog]:
        """The logs of these batch lines, by line id (bodies left unread)."""
        await turn()
        wanted = set(item_ids)
        return {
            str(log.item_id): replace(log, request_body=None, response_body=None)
            for log in self._tables.logs.values()
            if log.item_id is not None and str(log.item_id) in wanted
        }

    async def usage(self, query: UsageQuery) -> UsageReport:
        """Calls, tokens, cost and errors per time bucket, kind of call and (optionally) key,
        model or provider, oldest bucket first: whole hours from their totals, the parts of
        hours at the period's edges from the logs (as ``store.usage`` reads them)."""
        await turn()
        width = INTERVAL_MS[query.interval]
        hours, edges = whole_hours(query.since_ms, query.until_ms)
        parts: list[tuple[tuple[int, str, str, str, str], UsageTotals]] = []
        if hours is not None:
            first, last = hours
            parts += [
                (slot, totals)
                for slot, totals in self._tables.usage.items()
                if (first is None or slot[0] >= first) and (last is None or slot[0] < last)
            ]
        for since, until in edges:
            period = LogFilter(since_ms=since, until_ms=until)
            parts += hourly_totals(
                log for log in self._tables.logs.values() if _matches(log, period)
            ).items()
        buckets: dict[tuple[int, str, str], UsageTotals] = {}
        for (hour, key_id, model, provider, kind), totals in parts:
            if query.key_id is not None and key_id != query.key_id:
                continue
            group = {"key": key_id, "model": model, "provider": provider}.get(
                query.group_by or "", ""
            )
            bucket = (hour // width * width, group, kind)
            buckets[bucket] = buckets.get(bucket, UsageTotals()) + totals
        return UsageReport.of(
            query,
            (
                UsageRow(
                    bucket_start_ms=bucket,
                    group=group if query.group_by is not None else None,
                    kind=cast(RequestKind, kind),
                    totals=totals,
                )
                for (bucket, group, kind), totals in sorted(buckets.items())
            ),
        )

    async def spent(self, key_id: str, since_ms: int | None) -> float:
        """What ``key_id`` has cost since ``since_ms`` (epoch ms), or ever when None: its
        whole hours' usage, and the logs of the part of an hour before them."""
        return (await self._spent(since_ms, key_id)).get(key_id, 0.0)

    async def spent_by_key(self, since_ms: int | None) -> dict[str, float]:
        """What every key that spent anything has cost since ``since_ms``."""
        return await self._spent(since_ms, None)

    async def _spent(self, since_ms: int | None, key_id: str | None) -> dict[str, float]:
        await turn()
        hours, edges = whole_hours(since_ms, None)
        first = hours[0] if hours is not None else None
        spent: dict[str, float] = {}
        for (hour, key, *_), totals in self._tables.usage.items():
            if (key_id is None or key == key_id) and (first is None or hour >= first):
                spent[key] = spent.get(key, 0.0) + totals.cost_usd
        for since, until in edges:
            wanted = LogFilter(key_id=key_id, since_ms=since, until_ms=until)
            for log in self._tables.logs.values():
                if _matches(log, wanted):
                    spent[log.key_id] = spent.get(log.key_id, 0.0) + log.cost_usd
        return spent

    async def delete_older_than(self, cutoff_ms: int, *, chunk: int = DELETE_CHUNK) -> int:
        """Delete the logs from before ``cutoff_ms``, ``chunk`` rows per transaction; returns
        how many went."""
        deleted = 0
        while True:
            await turn()
            old = sorted(i for i, log in self._tables.logs.items() if log.created_at_ms < cutoff_ms)
            self._tables.delete_logs(old[:chunk], cutoff_ms)
            deleted += len(old[:chunk])
            if len(old[:chunk]) < chunk:
                return deleted
