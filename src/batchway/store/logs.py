"""Request logs: one row per upstream call outcome, and the questions asked of them
(listings, usage over time, a key's spending, retention). Usage per hour, kept as logs are
written, is in ``store.usage``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from sqlalchemy import Integer, delete, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from batchway.core.analytics import (
    LogFilter,
    UsageQuery,
    UsageReport,
    hourly_totals,
    whole_hours,
)
from batchway.core.models import Page, RequestLog, Usage
from batchway.store.sql import SqlStore
from batchway.store.sql_items import logs_plan
from batchway.store.tables import request_logs, usage_hourly
from batchway.store.usage import add_usage, drop_empty_hours, usage_rows

__all__ = ["DELETE_CHUNK", "SqlRequestLogs"]

# rows deleted per transaction, so that retention never holds the write lock for long
DELETE_CHUNK = 10_000

# the filters with a (column, id) index: a value's newest log is one probe away
_INDEXED = ("batch_id", "key_id", "model")
_ALL = list(request_logs.c)
_WITHOUT_BODIES = [c for c in _ALL if c.name not in ("request_body", "response_body")]


def _log(row: Any, bodies: bool) -> RequestLog:
    return RequestLog(
        id=row.id,
        created_at_ms=row.created_at_ms,
        kind=row.kind,
        key_id=row.key_id,
        model=row.model,
        provider=row.provider,
        upstream_model=row.upstream_model,
        endpoint=row.endpoint,
        batch_id=row.batch_id,
        custom_id=row.custom_id,
        item_id=row.item_id,
        status=row.status,
        status_code=row.status_code,
        error_code=row.error_code,
        usage=Usage(
            input_tokens=row.input_tokens,
            cached_tokens=row.cached_tokens,
            output_tokens=row.output_tokens,
        ),
        latency_ms=row.latency_ms,
        cost_usd=row.cost_usd,
        retries=row.retries,
        request_id=row.request_id,
        request_body=row.request_body if bodies else None,
        response_body=row.response_body if bodies else None,
    )


def _by_its_index(filters: LogFilter) -> ColumnElement[bool] | None:
    """The filter, when it is one value of a column with a ``(column, id)`` index and
    nothing else."""
    given = [(f.name, getattr(filters, f.name)) for f in fields(filters)]
    named = [(name, value) for name, value in given if value is not None]
    if len(named) != 1 or named[0][0] not in _INDEXED:
        return None
    name, value = named[0]
    condition: ColumnElement[bool] = request_logs.c[name] == value
    return condition


def _newest_bounds(filters: LogFilter, before_id: int | None) -> list[ColumnElement[bool]]:
    """``id <=`` the newest id of each filtered value that has a ``(column, id)`` index:
    one probe each. PostgreSQL expects a value's logs spread evenly over the ids, so without
    it a page of logs that are all old walks the primary key past every newer log."""
    t, newest = request_logs.c, request_logs.alias("newest")
    bounds: list[ColumnElement[bool]] = []
    for name in _INDEXED:
        value = getattr(filters, name)
        if value is None:
            continue
        probe = select(func.max(newest.c.id)).where(newest.c[name] == value)
        if before_id is not None:
            probe = probe.where(newest.c.id < before_id)
        bounds.append(t.id <= probe.scalar_subquery())
    return bounds


def _matching(filters: LogFilter, *, time_index: bool = True) -> list[ColumnElement[bool]]:
    """The conditions of ``filters``; ``time_index=False`` keeps the time index out of the
    plan (a page then walks the ids in order)."""
    t = request_logs.c
    created: ColumnElement[int] = t.created_at_ms if time_index else t.created_at_ms + 0
    conditions: list[ColumnElement[bool]] = []
    for column, value in (
        (t.key_id, filters.key_id),
        (t.model, filters.model),
        (t.provider, filters.provider),
        (t.batch_id, filters.batch_id),
        (t.status, filters.status),
        (t.kind, filters.kind),
    ):
        if value is not None:
            conditions.append(column == value)
    if filters.since_ms is not None:
        conditions.append(created >= filters.since_ms)
    if filters.until_ms is not None:
        conditions.append(created < filters.until_ms)
    return conditions


async def _spent(
    conn: AsyncConnection, since_ms: int | None, key_id: str | None
) -> dict[str, float]:
    """Cost per key since ``since_ms`` (one key's, or every key's): whole hours from their
    totals, the part of an hour before them from the logs."""
    hours, edges = whole_hours(since_ms, None)
    first = hours[0] if hours is not None else None
    u, t = usage_hourly.c, request_logs.c
    in_hours = [u.key_id == key_id] if key_id is not None else []
    if first is not None:
        in_hours.append(u.hour_ms >= first)
    statements = [
        select(u.key_id, func.sum(u.cost_usd)).where(*in_hours).group_by(u.key_id),
        *(
            select(t.key_id, func.sum(t.cost_usd))
            .where(*_matching(LogFilter(key_id=key_id, since_ms=since, until_ms=until)))
            .group_by(t.key_id)
            for since, until in edges
        ),
    ]
    spent: dict[str, float] = {}
    for statement in statements:
        for key, cost in await conn.execute(statement):
            spent[key] = spent.get(key, 0.0) + float(cost or 0.0)
    return spent


async def _window_ids(
    conn: AsyncConnection, filters: LogFilter, before_id: int | None
) -> list[ColumnElement[bool]] | None:
    """Which ids a page of a time window walks (newest first): all of them from the newest
    down, when fewer logs are newer than the window than are in it; otherwise only the
    window's own ids, ``id BETWEEN lo AND hi``, read from the time index. None: no log is
    in the window.

    Ids are only roughly in time order (a log is numbered when it is written, timed when
    its call ended), so the sizes come from one probe at each end of the window, and the
    window's ids are exact: the smallest and the largest of the logs in it.
    """
    since, until = filters.since_ms, filters.until_ms
    if since is None and until is None:
        return []
    t = request_logs.c
    newest = select(func.max(t.id)).scalar_subquery()
    last: ColumnElement[Any] = newest
    if until is not None:
        last = (
            select(t.id)
            .where(t.created_at_ms < until)
            .order_by(t.created_at_ms.desc())
            .limit(1)
            .scalar_subquery()
        )
    first: ColumnElement[Any] = select(func.min(t.id)).scalar_subquery()
    if since is not None:
        first = (
            select(t.id)
            .where(t.created_at_ms >= since)
            .order_by(t.created_at_ms)
            .limit(1)
            .scalar_subquery()
        )
    top, last_id, first_id = (await conn.execute(select(newest, last, first))).one()
    if last_id is None or first_id is None:
        return None
    start = top if before_id is None else min(top, before_id - 1)
    if start - last_id <= last_id - first_id:
        return []
    # min(id + 0): PostgreSQL would otherwise look for max(id) down the primary key
    lo, hi = (
        await conn.execute(
            select(func.min(t.id + 0), func.max(t.id + 0)).where(
                *_matching(LogFilter(since_ms=since, until_ms=until))
            )
        )
    ).one()
    if lo is None:
        return None
    return [t.id >= lo, t.id <= hi]


class SqlRequestLogs:
    """The request-log statements, on the same database as ``SqlStore``."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def insert(
        self, logs: Sequence[RequestLog], *, usage_only: Sequence[RequestLog] = ()
    ) -> None:
        """Store ``logs`` in one statement (their ``id`` is ignored: the database assigns it),
        and add them and ``usage_only`` (calls that keep no log row) to their hours' usage."""
        if not logs and not usage_only:
            return
        await self._store._write_plan(logs_plan(self._store.paramstyle, logs, usage_only))

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
        t = request_logs.c
        columns = _ALL if bodies else _WITHOUT_BODIES
        async with self._store._read() as conn:
            by_index = _by_its_index(filters)
            conditions: list[ColumnElement[bool]]
            # written into the statement: with the limit unknown, PostgreSQL's generic plan
            # merges the page's ids with a walk of every id
            size = literal(limit + 1, Integer, literal_execute=True)
            if by_index is not None:
                # the page's ids from the value's (column, id) index alone: whatever the
                # parameters (a prepared statement's generic plan too), no walk of the ids
                ids = select(t.id).where(by_index).order_by(t.id.desc()).limit(size)
                if before_id is not None:
                    ids = ids.where(t.id < before_id)
                conditions = [t.id.in_(ids.scalar_subquery())]
            else:
                window = await _window_ids(conn, filters, before_id)
                if window is None:
                    return Page(items=[], has_more=False)
                conditions = [
                    *_matching(filters, time_index=False),
                    *_newest_bounds(filters, before_id),
                    *window,
                ]
                if before_id is not None:
                    conditions.append(t.id < before_id)
            statement = select(*columns).where(*conditions).order_by(t.id.desc())
            rows = (await conn.execute(statement.limit(size))).all()
        return Page(items=[_log(r, bodies) for r in rows[:limit]], has_more=len(rows) > limit)

    async def get(self, log_id: int) -> RequestLog | None:
        """One log with its bodies (where they were kept)."""
        async with self._store._read() as conn:
            row = (await conn.execute(select(*_ALL).where(request_logs.c.id == log_id))).first()
        return _log(row, bodies=True) if row is not None else None

    async def for_items(self, item_ids: Sequence[str]) -> dict[str, RequestLog]:
        """The logs of these batch lines, by line id (bodies left unread)."""
        ids = [int(i) for i in item_ids if i.isdigit()]
        if not ids:
            return {}
        async with self._store._read() as conn:
            rows = (
                await conn.execute(select(*_WITHOUT_BODIES).where(request_logs.c.item_id.in_(ids)))
            ).all()
        return {str(r.item_id): _log(r, bodies=False) for r in rows}

    async def usage(self, query: UsageQuery) -> UsageReport:
        """Calls, tokens, cost and errors per time bucket, kind of call and (optionally) key,
        model or provider, oldest bucket first: whole hours from their totals
        (``store.usage``), the parts of hours at the period's edges from the logs."""
        async with self._store._read() as conn:
            return UsageReport.of(query, await usage_rows(conn, query))

    async def spent(self, key_id: str, since_ms: int | None) -> float:
        """What ``key_id`` has cost since ``since_ms`` (epoch ms), or ever when None: its
        whole hours' usage (which counts calls that keep no log row too), and the logs of the
        part of an hour before them."""
        async with self._store._read() as conn:
            return (await _spent(conn, since_ms, key_id)).get(key_id, 0.0)

    async def spent_by_key(self, since_ms: int | None) -> dict[str, float]:
        """What every key that spent anything has cost since ``since_ms``, in one read."""
        async with self._store._read() as conn:
            return await _spent(conn, since_ms, None)

    async def delete_older_than(self, cutoff_ms: int, *, chunk: int = DELETE_CHUNK) -> int:
        """Delete the logs from before ``cutoff_ms``, ``chunk`` rows per transaction (taken
        from their hours' usage in the same one); returns how many went."""
        oldest = (
            select(request_logs.c.id)
            .where(request_logs.c.created_at_ms < cutoff_ms)
            .order_by(request_logs.c.id)
            .limit(chunk)
        )
        deleted = 0
        while True:
            async with self._store._write() as conn:
                gone = (
                    await conn.execute(
                        delete(request_logs)
                        .where(request_logs.c.id.in_(oldest))
                        .returning(*_WITHOUT_BODIES)
                    )
                ).all()
                await add_usage(conn, hourly_totals(_log(r, bodies=False) for r in gone), sign=-1)
                await drop_empty_hours(conn, cutoff_ms)
            deleted += len(gone)
            if len(gone) < chunk:
                return deleted
