"""Usage per hour (``usage_hourly``): the request logs added up per hour, key, model,
provider and kind of call, in the transaction that writes or deletes the logs; and the
usage report, which reads these for the whole hours of its period and the logs only for the
parts of hours at its edges, so that weeks of usage read hours, not logs.

Buckets are ``hour_ms`` or ``created_at_ms`` divided by the bucket width: integer division
of a BIGINT by an integer literal, which truncates the same way on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    Select,
    and_,
    case,
    delete,
    func,
    literal_column,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from batchway.core.analytics import (
    HOUR_MS,
    INTERVAL_MS,
    UsageQuery,
    UsageRow,
    UsageSlot,
    UsageTotals,
    whole_hours,
)
from batchway.core.models import RequestKind
from batchway.store._sql_base import driver_marks
from batchway.store.plans import Many, run_many
from batchway.store.tables import request_logs, usage_hourly

__all__ = ["add_usage", "drop_empty_hours", "usage_rows", "usage_step"]

_SLOT = ("hour_ms", "key_id", "model", "provider", "kind")
_KEY = ("hour_ms", "kind", "model", "provider", "key_id")  # the primary key's order
_TOTALS = ("requests", "errors", "input_tokens", "cached_tokens", "output_tokens", "cost_usd")
_GROUPS = {"key": "key_id", "model": "model", "provider": "provider"}
_HOUR = literal_column(str(HOUR_MS), BigInteger)


@functools.cache
def _upsert(paramstyle: str) -> str:
    marks = driver_marks(paramstyle, len(_SLOT) + len(_TOTALS))
    adds = ", ".join(f"{c} = usage_hourly.{c} + excluded.{c}" for c in _TOTALS)
    return (
        f"INSERT INTO usage_hourly ({', '.join(_SLOT + _TOTALS)}) VALUES ({', '.join(marks)})"
        f" ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET {adds}"
    )


def usage_step(paramstyle: str, totals: Mapping[UsageSlot, UsageTotals], *, sign: int = 1) -> Many:
    """Add ``totals`` to their hours (``sign=-1``: take them away), in slot order, so that
    two writers lock the same rows in the same order. Straight to the driver: this runs
    with every request-log write."""
    return Many(
        _upsert(paramstyle),
        [
            (
                *slot,
                sign * t.requests,
                sign * t.errors,
                sign * t.input_tokens,
                sign * t.cached_tokens,
                sign * t.output_tokens,
                sign * t.cost_usd,
            )
            for slot, t in sorted(totals.items())
        ],
    )


async def add_usage(
    conn: AsyncConnection, totals: Mapping[UsageSlot, UsageTotals], *, sign: int = 1
) -> None:
    """`usage_step`, run on ``conn``."""
    await run_many(conn, usage_step(conn.dialect.paramstyle, totals, sign=sign))


async def drop_empty_hours(conn: AsyncConnection, until_ms: int) -> None:
    """Forget the hours before ``until_ms`` whose logs are all gone, and every hour that
    ended by then (its calls that kept no log row go with its logs)."""
    await conn.execute(
        delete(usage_hourly).where(
            usage_hourly.c.hour_ms < until_ms // HOUR_MS * HOUR_MS + HOUR_MS,
            or_(usage_hourly.c.requests <= 0, usage_hourly.c.hour_ms <= until_ms - HOUR_MS),
        )
    )


def _from_hours(query: UsageQuery, first: int | None, last: int | None) -> Select[Any]:
    """The whole hours' totals per hour, group and kind (SQLite reads them in key order,
    grouped as it goes, when the group is a model or there is none)."""
    u = usage_hourly.c
    conditions = []
    if first is not None:
        conditions.append(u.hour_ms >= first)
    if last is not None:
        conditions.append(u.hour_ms < last)
    if query.key_id is not None:
        conditions.append(u.key_id == query.key_id)
    group = [u[_GROUPS[query.group_by]]] if query.group_by is not None else []
    return (
        select(
            u.hour_ms.label("hour"),
            *(c.label("grp") for c in group),
            u.kind,
            *(func.sum(u[name]).label(name) for name in _TOTALS),
        )
        .where(*conditions)
        .group_by(u.hour_ms, *group, u.kind)
    )


def _from_logs(query: UsageQuery, edges: list[tuple[int, int]]) -> Select[Any]:
    """The logs of the parts of hours at the period's edges, per hour, group and kind."""
    t = request_logs.c
    conditions: list[ColumnElement[bool]] = [
        or_(*(and_(t.created_at_ms >= since, t.created_at_ms < until) for since, until in edges))
    ]
    if query.key_id is not None:
        conditions.append(t.key_id == query.key_id)
    hour = (t.created_at_ms // _HOUR) * _HOUR
    group = [t[_GROUPS[query.group_by]]] if query.group_by is not None else []
    return (
        select(
            hour.label("hour"),
            *(c.label("grp") for c in group),
            t.kind,
            func.count().label("requests"),
            func.sum(case((t.status != "succeeded", 1), else_=0)).label("errors"),
            *(func.sum(t[name]).label(name) for name in _TOTALS[2:]),
        )
        .where(*conditions)
        .group_by(hour, *group, t.kind)
    )


async def usage_rows(conn: AsyncConnection, query: UsageQuery) -> list[UsageRow]:
    """The usage series of ``query``, oldest bucket first, then by group and kind."""
    hours, edges = whole_hours(query.since_ms, query.until_ms)
    parts = []
    if hours is not None:
        parts.append(_from_hours(query, *hours))
    if edges:
        parts.append(_from_logs(query, edges))
    if not parts:
        return []
    both = union_all(*parts).subquery()
    # a literal, not a bound parameter: PostgreSQL matches the GROUP BY expression to the
    # selected one only when both are written the same way
    width = literal_column(str(INTERVAL_MS[query.interval]), BigInteger)
    bucket = (both.c.hour // width) * width
    grouped = query.group_by is not None
    group: ColumnElement[Any] = both.c.grp if grouped else null()
    keys = [bucket, group, both.c.kind] if grouped else [bucket, both.c.kind]
    columns: list[ColumnElement[Any]] = [
        bucket,
        group,
        both.c.kind,
        *(func.sum(both.c[name]) for name in _TOTALS),
    ]
    rows = await conn.execute(select(*columns).group_by(*keys).order_by(*keys))
    return [_usage_row(*row) for row in rows]


def _usage_row(
    bucket: int,
    group: str | None,
    kind: RequestKind,
    requests: Any,
    errors: Any,
    input_tokens: Any,
    cached_tokens: Any,
    output_tokens: Any,
    cost_usd: Any,
) -> UsageRow:
    # PostgreSQL sums integers as NUMERIC or BIGINT
    return UsageRow(
        bucket_start_ms=int(bucket),
        group=group,
        kind=kind,
        totals=UsageTotals(
            requests=int(requests),
            errors=int(errors),
            input_tokens=int(input_tokens),
            cached_tokens=int(cached_tokens),
            output_tokens=int(output_tokens),
            cost_usd=float(cost_usd),
        ),
    )
