"""What the request logs answer: which calls matched a filter, and usage over time.

Pure data: the SQL lives in ``store/logs.py``. Times are epoch milliseconds, ``since``
inclusive and ``until`` exclusive.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from batchway.core.models import RequestKind

__all__ = [
    "INTERVAL_MS",
    "LogFilter",
    "UsageGroup",
    "UsageInterval",
    "UsageQuery",
    "UsageReport",
    "UsageRow",
    "UsageTotals",
]

UsageGroup = Literal["key", "model", "provider"]
UsageInterval = Literal["hour", "day"]

# the width of a usage bucket; buckets start at whole multiples of it (UTC)
INTERVAL_MS: dict[UsageInterval, int] = {"hour": 3_600_000, "day": 86_400_000}


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
    total = UsageTotals()
    for part in parts:
        total += part
    return total


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
