"""What the request logs answer: which calls matched a filter, and usage over time.

Pure data: the SQL lives in ``store/logs.py``. Times are epoch milliseconds, ``since``
inclusive and ``until`` exclusive.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from batchway.core.models import RequestKind, RequestLog

__all__ = [
    "HOUR_MS",
    "INTERVAL_MS",
    "LogFilter",
    "UsageGroup",
    "UsageInterval",
    "UsageQuery",
    "UsageReport",
    "UsageRow",
    "UsageSlot",
    "UsageTotals",
    "hourly_totals",
    "whole_hours",
]

UsageGroup = Literal["key", "model", "provider"]
UsageInterval = Literal["hour", "day"]

# the width of a usage bucket; buckets start at whole multiples of it (UTC)
INTERVAL_MS: dict[UsageInterval, int] = {"hour": 3_600_000, "day": 86_400_000}
HOUR_MS = INTERVAL_MS["hour"]

# what the stores keep usage per (so that a report over weeks reads hours, not logs): the
# hour's start (epoch ms), the key, the public model, the provider and the kind of call
UsageSlot = tuple[int, str, str, str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class LogFilter:
    """Which request logs to list; every field left None matches everything."""

    key_id: str | None = None
    model: str | None = None
    provider: str | None = None
    batch_id: str | None = None
    status: str | None = None
    kind: RequestKind | None = None
    since_ms: int | None = None
    until_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageQuery:
    """Usage per time bucket, optionally per key, model or provider."""

    group_by: UsageGroup | None = None
    interval: UsageInterval = "day"
    since_ms: int | None = None
    until_ms: int | None = None
    key_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageTotals:
    """Calls, tokens, cost and errors (calls that did not succeed) added up."""

    requests: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    errors: int = 0

    def __add__(self, other: UsageTotals) -> UsageTotals:
        return UsageTotals(
            requests=self.requests + other.requests,
            input_tokens=self.input_tokens + other.input_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
            errors=self.errors + other.errors,
        )


def _sum(parts: Iterable[UsageTotals]) -> UsageTotals:
    # field by field: a report over weeks per hour adds up thousands of rows
    requests = input_tokens = cached_tokens = output_tokens = errors = 0
    cost_usd = 0.0
    for part in parts:
        requests += part.requests
        input_tokens += part.input_tokens
        cached_tokens += part.cached_tokens
        output_tokens += part.output_tokens
        cost_usd += part.cost_usd
        errors += part.errors
    return UsageTotals(
        requests=requests,
        input_tokens=input_tokens,
        cached_tokens=cached_tokens,
        output_tokens=output_tokens,
        cost_usd=cost_usd,
        errors=errors,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRow:
    """The usage of one time bucket, group value and kind of call."""

    bucket_start_ms: int
    group: str | None  # the key id, model or provider; None when not grouped
    kind: RequestKind
    totals: UsageTotals


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageReport:
    """A usage series (oldest bucket first) with its totals, per kind of call and overall."""

    query: UsageQuery
    series: tuple[UsageRow, ...]
    batch: UsageTotals
    interactive: UsageTotals
    overall: UsageTotals

    @classmethod
    def of(cls, query: UsageQuery, series: Iterable[UsageRow]) -> UsageReport:
        """The report of ``series``, its totals added up from it."""
        rows = tuple(series)
        return cls(
            query=query,
            series=rows,
            batch=_sum(r.totals for r in rows if r.kind == "batch"),
            interactive=_sum(r.totals for r in rows if r.kind == "interactive"),
            overall=_sum(r.totals for r in rows),
        )


def hourly_totals(logs: Iterable[RequestLog]) -> dict[UsageSlot, UsageTotals]:
    """``logs`` added up per hour, key, model, provider and kind of call."""
    sums: dict[UsageSlot, list[float]] = {}
    for log in logs:
        hour = log.created_at_ms // HOUR_MS * HOUR_MS
        slot = (hour, log.key_id, log.model, log.provider, log.kind)
        s = sums.get(slot)
        if s is None:
            s = sums[slot] = [0, 0, 0, 0, 0, 0.0]
        s[0] += 1
        s[1] += log.status != "succeeded"
        s[2] += log.usage.input_tokens
        s[3] += log.usage.cached_tokens
        s[4] += log.usage.output_tokens
        s[5] += log.cost_usd
    return {
        slot: UsageTotals(
            requests=int(s[0]),
            errors=int(s[1]),
            input_tokens=int(s[2]),
            cached_tokens=int(s[3]),
            output_tokens=int(s[4]),
            cost_usd=s[5],
        )
        for slot, s in sums.items()
    }


def whole_hours(
    since_ms: int | None, until_ms: int | None
) -> tuple[tuple[int | None, int | None] | None, list[tuple[int, int]]]:
    """A period (``since`` inclusive, ``until`` exclusive, either open) split into the whole
    hours in it, to be read from the hourly totals (None: it holds no whole hour), and the
    parts of hours at its edges, to be read from the logs."""
    if since_ms is not None and until_ms is not None:
        if -(-since_ms // HOUR_MS) * HOUR_MS >= until_ms // HOUR_MS * HOUR_MS:
            return None, [(since_ms, until_ms)] if since_ms < until_ms else []
    first = last = None
    edges = []
    if since_ms is not None:
        first = -(-since_ms // HOUR_MS) * HOUR_MS
        if since_ms < first:
            edges.append((since_ms, first))
    if until_ms is not None:
        last = until_ms // HOUR_MS * HOUR_MS
        if last < until_ms:
            edges.append((last, until_ms))
    return (first, last), edges
