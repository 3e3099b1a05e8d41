"""The statements on batch lines: storing, leasing, recording results, reading them back.

Claims use ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so that several workers never take the
same line; on SQLite writers are serialised anyway.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import (
    case,
    delete,
    func,
    null,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from batchway.core.analytics import hourly_totals
from batchway.core.listings import (
    BatchFigures,
    FiguresChange,
    LineFilter,
    LineView,
    counts_from_states,
    ended_lines,
    figures_changes,
    figures_of_row,
    line_view,
)
from batchway.core.models import (
    BatchItem,
    ItemResult,
    LineRecord,
    NewItem,
    Page,
    RequestCounts,
    RequestLog,
    Usage,
)
from batchway.core.states import BatchStatus, ItemState
from batchway.store._sql_base import SqlBase, driver_marks
from batchway.store.figures import (
    FIGURE_COLUMNS,
    add_figures,
    add_models,
    clear_figures,
    figures_step,
    line_figures,
)
from batchway.store.plans import Many, Plan, Rows, run_many
from batchway.store.tables import batch_items, batches, upstream_batches
from batchway.store.usage import usage_step

__all__ = ["SqlItemStatements", "logs_plan", "settle_pending"]

_ACTIVE = (ItemState.PENDING.value, ItemState.LEASED.value)
_PAGE = 1000


# the columns a request log is written to, in the order ``_log_values`` gives them
_LOG_COLUMNS = (
    "created_at_ms",
    "kind",
    "key_id",
    "model",
    "provider",
    "upstream_model",
    "endpoint",
    "batch_id",
    "custom_id",
    "item_id",
    "status",
    "status_code",
    "error_code",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "latency_ms",
    "cost_usd",
    "retries",
    "request_id",
    "request_body",
    "response_body",
)


def _log_values(log: RequestLog) -> tuple[Any, ...]:
    return (
        log.created_at_ms,
        log.kind,
        log.key_id,
        log.model,
        log.provider,
        log.upstream_model,
        log.endpoint,
        log.batch_id,
        log.custom_id,
        log.item_id,
        log.status,
        log.status_code,
        log.error_code,
        log.usage.input_tokens,
        log.usage.cached_tokens,
        log.usage.output_tokens,
        log.latency_ms,
        log.cost_usd,
        log.retries,
        log.request_id,
        log.request_body,
        log.response_body,
    )


@functools.cache
def _log_insert(paramstyle: str) -> str:
    marks = driver_marks(paramstyle, len(_LOG_COLUMNS))
    return f"INSERT INTO request_logs ({', '.join(_LOG_COLUMNS)}) VALUES ({', '.join(marks)})"


def logs_plan(
    paramstyle: str, logs: Sequence[RequestLog], usage_only: Sequence[RequestLog] = ()
) -> Plan[None]:
    """Store request logs in one statement, and add them (and ``usage_only``, calls that keep
    no row) to their hours' usage. Straight to the driver: logs are written for every call
    the gateway makes, and this costs a third of the CPU of a Core insert."""
    if logs:
        yield Many(_log_insert(paramstyle), [_log_values(log) for log in logs])
    if logs or usage_only:
        yield usage_step(paramstyle, hourly_totals([*logs, *usage_only]))


_OUTCOME_COLUMNS = (
    "state",
    "status_code",
    "response",
    "request_id",
    "error_code",
    "error_message",
    "not_before",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "finished_at",
)


@functools.cache
def _insert_sql(paramstyle: str) -> str:
    """Store a validated line (straight to the driver: a big batch stores many)."""
    batch_id, line, custom_id, model, provider, body, state, execute_only = driver_marks(
        paramstyle, 8
    )
    return (
        "INSERT INTO batch_items (batch_id, line, custom_id, model, provider, body, state,"
        " execute_only, attempts, not_before, input_tokens, cached_tokens, output_tokens,"
        f" reasoning_tokens, cost_usd) VALUES ({batch_id}, {line}, {custom_id}, {model},"
        f" {provider}, {body}, {state}, {execute_only}, 0, 0.0, 0, 0, 0, 0, 0.0)"
    )


@functools.cache
def _record_sql(paramstyle: str) -> str:
    """Write a line's outcome, only while the worker still holds it (its lease may have
    been taken back)."""
    marks = driver_marks(paramstyle, len(_OUTCOME_COLUMNS) + 3)
    sets = ", ".join(f"{c} = {m}" for c, m in zip(_OUTCOME_COLUMNS, marks, strict=False))
    id_, worker, leased = marks[-3:]
    return (
        f"UPDATE batch_items SET {sets}, lease_owner = NULL, lease_expires_at = NULL"
        f" WHERE id = {id_} AND lease_owner = {worker} AND state = {leased}"
    )


def _outcome_values(record: LineRecord, worker: str, now: float) -> tuple[Any, ...]:
    o = record.outcome
    return (
        o.state.value,
        o.status_code,
        o.response,
        o.request_id,
        o.error_code,
        o.error_message,
        o.not_before or 0.0,
        o.usage.input_tokens,
        o.usage.cached_tokens,
        o.usage.output_tokens,
        o.usage.reasoning_tokens,
        record.cost_usd,
        None if o.state is ItemState.PENDING else now,
        record.item_id,
        worker,
        ItemState.LEASED.value,
    )


def _id_in(paramstyle: str, ids: str) -> str:
    """``id`` is one of a list given as one parameter (``ids``, its placeholder): an array on
    PostgreSQL, a JSON array on SQLite, so the statement is the same for any number of ids."""
    if paramstyle == "qmark":
        return f"id IN (SELECT value FROM json_each({ids}))"
    return f"id = ANY({ids})"


def _ids_param(paramstyle: str, ids: list[int] | list[str]) -> Any:
    """The value of `_id_in`'s parameter."""
    return orjson.dumps(ids).decode() if paramstyle == "qmark" else ids


@functools.cache
def _held_sql(paramstyle: str) -> str:
    """The lines of a list of ids a worker still holds, with their batch and cost, locked
    until the transaction ends."""
    owner, state, ids = driver_marks(paramstyle, 3)
    lock = "" if paramstyle == "qmark" else " FOR UPDATE"
    return (
        "SELECT id, batch_id, cost_usd FROM batch_items"
        f" WHERE lease_owner = {owner} AND state = {state} AND {_id_in(paramstyle, ids)}{lock}"
    )


def _record_plan(
    paramstyle: str, worker: str, records: Sequence[LineRecord], now: float
) -> Plan[list[LineRecord]]:
    ids = [r.item_id for r in records]
    rows = yield Rows(
        _held_sql(paramstyle), (worker, ItemState.LEASED.value, _ids_param(paramstyle, ids))
    )
    held = {row[0]: (row[1], row[2]) for row in rows}
    written = [r for r in records if r.item_id in held]
    if written:
        yield Many(_record_sql(paramstyle), [_outcome_values(r, worker, now) for r in written])
        yield from logs_plan(paramstyle, [r.log for r in written if r.log is not None])
        yield figures_step(paramstyle, _recorded(written, held))
    return written


@functools.cache
def _claim_sql(paramstyle: str, of_model: bool) -> str:
    """Lease the first runnable lines of a provider (``of_model``: of one model and
    endpoint), counting the attempt; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so that
    workers never take the same line."""
    marks = driver_marks(paramstyle, 12 if of_model else 10)
    state, owner, expires, upstream, pending, provider, now, execute, status = marks[:9]
    one_model = f" AND i.model = {marks[9]} AND b.endpoint = {marks[10]}" if of_model else ""
    lock = "" if paramstyle == "qmark" else " FOR UPDATE OF i SKIP LOCKED"
    return (
        f"UPDATE batch_items SET state = {state}, lease_owner = {owner},"
        f" lease_expires_at = {expires}, attempts = attempts + 1, upstream_batch_id = {upstream}"
        " WHERE id IN (SELECT i.id FROM batch_items AS i JOIN batches AS b ON b.id = i.batch_id"
        f" WHERE i.state = {pending} AND i.provider = {provider} AND i.not_before <= {now}"
        f" AND i.execute_only = {execute} AND b.status = {status}{one_model}"
        f" ORDER BY i.id LIMIT {marks[-1]}{lock})"
        " RETURNING id, batch_id, line, custom_id, provider, body, attempts, model"
    )


@functools.cache
def _parents_sql(paramstyle: str) -> str:
    (ids,) = driver_marks(paramstyle, 1)
    return f"SELECT id, endpoint, owner FROM batches WHERE {_id_in(paramstyle, ids)}"


def _claim_plan(paramstyle: str, of_model: bool, args: tuple[Any, ...]) -> Plan[list[BatchItem]]:
    # RETURNING cannot reach the batches table on SQLite: endpoints come separately
    rows = yield Rows(_claim_sql(paramstyle, of_model), args)
    if not rows:
        return []
    batch_ids = sorted({row[1] for row in rows})
    parents = {
        row[0]: (row[1], row[2])
        for row in (yield Rows(_parents_sql(paramstyle), (_ids_param(paramstyle, batch_ids),)))
    }
    return [
        BatchItem(
            id=str(id_),
            batch_id=batch_id,
            line=line,
            custom_id=custom_id,
            provider=provider,
            endpoint=parents[batch_id][0],
            body=body,
            attempts=attempts,
            model=model,
            owner=parents[batch_id][1],
        )
        for id_, batch_id, line, custom_id, provider, body, attempts, model in sorted(
            rows, key=lambda row: row[0]
        )
    ]


@functools.cache
def _stopped_sql(paramstyle: str) -> str:
    ids, cancelling, finalizing = driver_marks(paramstyle, 3)
    return (
        f"SELECT id, finish_as FROM batches WHERE {_id_in(paramstyle, ids)}"
        f" AND status IN ({cancelling}, {finalizing})"
    )


def _stopped_plan(paramstyle: str, batch_ids: list[str]) -> Plan[dict[str, ItemState]]:
    rows = yield Rows(
        _stopped_sql(paramstyle),
        (
            _ids_param(paramstyle, batch_ids),
            BatchStatus.CANCELLING.value,
            BatchStatus.FINALIZING.value,
        ),
    )
    ends = {
        BatchStatus.EXPIRED.value: ItemState.EXPIRED,
        BatchStatus.CANCELLED.value: ItemState.CANCELLED,
    }
    return {batch_id: ends[finish_as] for batch_id, finish_as in rows if finish_as in ends}


_VIEW_COLUMNS = (
    batch_items.c.id,
    batch_items.c.line,
    batch_items.c.custom_id,
    batch_items.c.model,
    batch_items.c.provider,
    batch_items.c.state,
    batch_items.c.attempts,
    batch_items.c.status_code,
    batch_items.c.error_code,
    batch_items.c.error_message,
    batch_items.c.input_tokens,
    batch_items.c.cached_tokens,
    batch_items.c.output_tokens,
    batch_items.c.reasoning_tokens,
    batch_items.c.cost_usd,
    batch_items.c.finished_at,
)


def _chunks(values: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _recorded(
    written: Sequence[LineRecord], held: dict[int, tuple[str, float]]
) -> dict[str, FiguresChange]:
    """What recording ``written`` adds to their batches' figures (a line named twice is
    written once: the first time)."""
    first: dict[int, LineRecord] = {}
    for record in written:
        first.setdefault(record.item_id, record)
    return figures_changes(
        (
            held[item_id][0],
            record.outcome.state,
            record.outcome.usage,
            record.cost_usd - held[item_id][1],
        )
        for item_id, record in first.items()
    )


async def settle_pending(
    conn: AsyncConnection, batch_id: str, state: ItemState, now: float
) -> None:
    """A batch's lines that never started end as ``state``, and are counted in its figures."""
    result = await conn.execute(
        update(batch_items)
        .where(batch_items.c.batch_id == batch_id, batch_items.c.state == ItemState.PENDING.value)
        .values(state=state.value, finished_at=now)
    )
    if result.rowcount:
        await add_figures(conn, ended_lines(batch_id, state, result.rowcount))


class SqlItemStatements(SqlBase):
    """Batch lines (``batch_items``)."""

    # -- batch lines --------------------------------------------------------------------

    async def clear_items(self, batch_id: str) -> None:
        async with self._write() as conn:
            await conn.execute(delete(batch_items).where(batch_items.c.batch_id == batch_id))
            await clear_figures(conn, batch_id)

    async def insert_items(
        self, batch_id: str, items: Sequence[NewItem], native_providers: Iterable[str] = ()
    ) -> None:
        """Store validated lines; lines of ``native_providers`` may go to their native batch API."""
        if not items:
            return
        native = frozenset(native_providers)
        pending = ItemState.PENDING.value
        rows = [
            (
                batch_id,
                item.line,
                item.custom_id,
                item.model,
                item.provider,
                item.body,
                pending,
                item.provider not in native,
            )
            for item in items
        ]
        async with self._write() as conn:
            await run_many(conn, Many(_insert_sql(self.paramstyle), rows))
            await add_models(
                conn,
                batch_id,
                {item.model for item in items},
                {item.provider for item in items},
                lock=not self.is_sqlite,
            )

    async def claim_items(
        self,
        worker: str,
        provider: str,
        limit: int,
        now: float,
        lease: float,
        *,
        execute: bool = True,
        model: str | None = None,
        endpoint: str | None = None,
    ) -> list[BatchItem]:
        """Lease up to ``limit`` runnable lines for ``provider``; counts the attempt.

        ``execute`` picks lines the gateway runs itself (True) or lines bound for the
        provider's native batch API (False), optionally of one ``model`` and ``endpoint``.
        """
        args: tuple[Any, ...] = (
            ItemState.LEASED.value,
            worker,
            now + lease,
            None if execute else worker.removeprefix("native:"),
            ItemState.PENDING.value,
            provider,
            now,
            execute,
            BatchStatus.IN_PROGRESS.value,
        )
        if model is not None:
            args += (model, endpoint)
        plan = _claim_plan(self.paramstyle, model is not None, (*args, limit))
        return await self._write_plan(plan)

    async def extend_leases(self, worker: str, until: float) -> None:
        async with self._write() as conn:
            await conn.execute(
                update(batch_items)
                .where(
                    batch_items.c.lease_owner == worker,
                    batch_items.c.state == ItemState.LEASED.value,
                )
                .values(lease_expires_at=until)
            )
            await conn.execute(
                update(batches)
                .where(batches.c.lease_owner == worker)
                .values(lease_expires_at=until)
            )

    async def release_expired_leases(self, now: float, max_attempts: int | None = None) -> int:
        """Give back the lines of workers that stopped renewing their leases.

        A line that has already been claimed ``max_attempts`` times fails instead
        (``worker_lost``): a line that takes its worker down with it must not do so forever.
        """
        expired = (
            batch_items.c.state == ItemState.LEASED.value,
            batch_items.c.lease_expires_at < now,
        )
        async with self._write() as conn:
            if max_attempts is not None:
                lost = await conn.execute(
                    update(batch_items)
                    .where(*expired, batch_items.c.attempts >= max_attempts)
                    .values(
                        state=ItemState.FAILED.value,
                        error_code="worker_lost",
                        error_message=(
                            f"The worker running this line stopped during each of its "
                            f"{max_attempts} attempts; it was not tried again."
                        ),
                        finished_at=now,
                        lease_owner=None,
                        lease_expires_at=None,
                    )
                    .returning(batch_items.c.batch_id)
                )
                await add_figures(
                    conn, figures_changes((r.batch_id, ItemState.FAILED, None, 0.0) for r in lost)
                )
            result = await conn.execute(
                update(batch_items)
                .where(*expired)
                .values(state=ItemState.PENDING.value, lease_owner=None, lease_expires_at=None)
            )
        return result.rowcount

    async def release_worker(self, worker: str, unstarted: Iterable[str] = ()) -> int:
        """A worker stopping cleanly hands back what it holds at once, rather than letting
        its leases run out: the lines it had claimed, and the batches it was working on.
        Lines in ``unstarted`` were claimed but never sent: their attempt is taken back."""
        never_sent = [int(item_id) for item_id in unstarted]
        held = (
            batch_items.c.state == ItemState.LEASED.value,
            batch_items.c.lease_owner == worker,
        )
        async with self._write() as conn:
            released = 0
            for chunk in _chunks(never_sent, _PAGE):
                result = await conn.execute(
                    update(batch_items)
                    .where(*held, batch_items.c.id.in_(chunk))
                    .values(
                        state=ItemState.PENDING.value,
                        lease_owner=None,
                        lease_expires_at=None,
                        attempts=func.max(batch_items.c.attempts - 1, 0)
                        if self.is_sqlite
                        else func.greatest(batch_items.c.attempts - 1, 0),
                    )
                )
                released += result.rowcount
            result = await conn.execute(
                update(batch_items)
                .where(*held)
                .values(state=ItemState.PENDING.value, lease_owner=None, lease_expires_at=None)
            )
            released += result.rowcount
            for table in (batches, upstream_batches):
                await conn.execute(
                    update(table)
                    .where(table.c.lease_owner == worker)
                    .values(lease_owner=None, lease_expires_at=None)
                )
        return released

    async def fail_unrecorded(self, worker: str, item_id: str, reason: str, now: float) -> bool:
        """Fail a held line whose result the database would not take (no log, no price)."""
        async with self._write() as conn:
            result = await conn.execute(
                update(batch_items)
                .where(
                    batch_items.c.id == int(item_id),
                    batch_items.c.lease_owner == worker,
                    batch_items.c.state == ItemState.LEASED.value,
                )
                .values(
                    state=ItemState.FAILED.value,
                    status_code=None,
                    response=None,
                    error_code="result_not_recorded",
                    error_message=reason,
                    finished_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                )
                .returning(batch_items.c.batch_id)
            )
            batch_id = result.scalar()
            if batch_id is not None:
                await add_figures(conn, ended_lines(batch_id, ItemState.FAILED, 1))
        return batch_id is not None

    async def record_outcomes(
        self, worker: str, records: Sequence[LineRecord], now: float
    ) -> list[LineRecord]:
        """Write what became of leased lines, with their prices and request-log rows, in
        one transaction.

        A line is only written while this worker still holds its lease, so a worker that
        lost a lease can never overwrite (or double count, or double bill) another's result.
        Returns the records written.
        """
        if not records:
            return []
        return await self._write_plan(_record_plan(self.paramstyle, worker, records, now))

    async def leased_items(
        self, worker: str, item_ids: Sequence[str], *, bodies: bool
    ) -> dict[str, BatchItem]:
        """The lines of ``item_ids`` that ``worker`` holds, as claimed (request bodies only
        when asked for: they can be large)."""
        async with self._read() as conn:
            rows = await conn.execute(
                select(
                    batch_items.c.id,
                    batch_items.c.batch_id,
                    batch_items.c.line,
                    batch_items.c.custom_id,
                    batch_items.c.provider,
                    batch_items.c.model,
                    batch_items.c.attempts,
                    (batch_items.c.body if bodies else null()).label("body"),
                    batches.c.owner,
                    batches.c.endpoint,
                )
                .join(batches, batches.c.id == batch_items.c.batch_id)
                .where(
                    batch_items.c.id.in_([int(i) for i in item_ids]),
                    batch_items.c.lease_owner == worker,
                    batch_items.c.state == ItemState.LEASED.value,
                )
            )
            return {
                str(r.id): BatchItem(
                    id=str(r.id),
                    batch_id=r.batch_id,
                    line=r.line,
                    custom_id=r.custom_id,
                    provider=r.provider,
                    endpoint=r.endpoint,
                    body=r.body or b"",
                    attempts=r.attempts,
                    model=r.model,
                    owner=r.owner,
                )
                for r in rows
            }

    async def line_counts(self) -> dict[str, int]:
        """How many batch lines are in each state, over every batch (for metrics)."""
        async with self._read() as conn:
            rows = await conn.execute(
                select(batch_items.c.state, func.count()).group_by(batch_items.c.state)
            )
            return {state: count for state, count in rows.all()}

    async def stopped_batches(self, batch_ids: Iterable[str]) -> dict[str, ItemState]:
        """Of these batches, those whose unstarted lines must not run now, and how those
        lines end (cancelled, or expired). The worker asks on every look for lines: one
        statement, in one hand-off."""
        return await self._read_plan(_stopped_plan(self.paramstyle, list(batch_ids)))

    async def has_items(self, batch_id: str) -> bool:
        async with self._read() as conn:
            found = (
                await conn.execute(
                    select(batch_items.c.id).where(batch_items.c.batch_id == batch_id).limit(1)
                )
            ).first()
        return found is not None

    async def has_active_items(self, batch_id: str) -> bool:
        async with self._read() as conn:
            found = (
                await conn.execute(
                    select(batch_items.c.id)
                    .where(batch_items.c.batch_id == batch_id, batch_items.c.state.in_(_ACTIVE))
                    .limit(1)
                )
            ).first()
        return found is not None

    async def has_work(self) -> bool:
        """Is any batch still doing something (for drain mode)?"""
        async with self._read() as conn:
            found = (
                await conn.execute(
                    select(batches.c.id)
                    .where(
                        batches.c.status.in_(
                            [
                                BatchStatus.VALIDATING.value,
                                BatchStatus.IN_PROGRESS.value,
                                BatchStatus.FINALIZING.value,
                                BatchStatus.CANCELLING.value,
                            ]
                        )
                    )
                    .limit(1)
                )
            ).first()
        return found is not None

    async def next_retry_at(self, now: float) -> float | None:
        """When the earliest line now waiting for a retry may run."""
        async with self._read() as conn:
            value = (
                await conn.execute(
                    select(func.min(batch_items.c.not_before)).where(
                        batch_items.c.state == ItemState.PENDING.value,
                        batch_items.c.not_before > now,
                    )
                )
            ).scalar()
        return float(value) if value is not None else None

    async def item_summary(self, batch_id: str) -> tuple[RequestCounts, Usage]:
        """Final counts and token usage of a batch, from its lines."""
        succeeded = batch_items.c.state == ItemState.SUCCEEDED.value
        async with self._read() as conn:
            states: dict[str, int] = dict(
                (
                    await conn.execute(
                        select(batch_items.c.state, func.count())
                        .where(batch_items.c.batch_id == batch_id)
                        .group_by(batch_items.c.state)
                    )
                ).all()
            )
            sums = (
                await conn.execute(
                    select(
                        *(
                            func.coalesce(func.sum(case((succeeded, column), else_=0)), 0)
                            for column in (
                                batch_items.c.input_tokens,
                                batch_items.c.cached_tokens,
                                batch_items.c.output_tokens,
                                batch_items.c.reasoning_tokens,
                            )
                        )
                    ).where(batch_items.c.batch_id == batch_id)
                )
            ).one()
        counts = counts_from_states(sum(states.values()), states)
        usage = Usage(
            input_tokens=int(sums[0]),
            cached_tokens=int(sums[1]),
            output_tokens=int(sums[2]),
            reasoning_tokens=int(sums[3]),
        )
        return counts, usage

    async def batch_figures(self, batch_ids: Sequence[str]) -> dict[str, BatchFigures]:
        """What the lines of each of these batches add up to so far; a batch without lines
        is left out. Each batch keeps its figures on its row as its lines change (see
        ``store.figures``); only a batch still storing its lines has them added up."""
        if not batch_ids:
            return {}
        async with self._read() as conn:
            rows = await conn.execute(
                select(*FIGURE_COLUMNS).where(batches.c.id.in_(list(batch_ids)))
            )
            kept = {r.id: f for r in rows if (f := figures_of_row(r)) is not None}
            rest = [batch_id for batch_id in batch_ids if batch_id not in kept]
            return {**kept, **(await line_figures(conn, rest) if rest else {})}

    async def list_lines(
        self, batch_id: str, filters: LineFilter, *, limit: int, after_line: int | None
    ) -> Page[LineView]:
        """A batch's lines in input order from just after ``after_line``."""
        t = batch_items.c
        query = select(*_VIEW_COLUMNS).where(t.batch_id == batch_id)
        if after_line is not None:
            query = query.where(t.line > after_line)
        if filters.state is not None:
            query = query.where(t.state == filters.state.value)
        if filters.custom_id is not None:
            query = query.where(t.custom_id == filters.custom_id)
        async with self._read() as conn:
            rows = (await conn.execute(query.order_by(t.line).limit(limit + 1))).all()
        return Page(items=[line_view(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def settle_unfinished(self, batch_id: str, state: ItemState, now: float) -> None:
        """Lines of an ending batch that never started end as ``state`` (cancelled/expired)."""
        async with self._write() as conn:
            await settle_pending(conn, batch_id, state, now)

    async def item_results(self, batch_id: str) -> AsyncIterator[ItemResult]:
        """Every finished line of a batch in input order, a page at a time."""
        after = 0
        columns = (
            batch_items.c.id,
            batch_items.c.line,
            batch_items.c.custom_id,
            batch_items.c.state,
            batch_items.c.status_code,
            batch_items.c.response,
            batch_items.c.request_id,
            batch_items.c.error_code,
            batch_items.c.error_message,
        )
        while True:
            async with self._read() as conn:
                rows = (
                    await conn.execute(
                        select(*columns)
                        .where(batch_items.c.batch_id == batch_id, batch_items.c.line > after)
                        .order_by(batch_items.c.line)
                        .limit(_PAGE)
                    )
                ).all()
            for row in rows:
                yield ItemResult(
                    id=row.id,
                    line=row.line,
                    custom_id=row.custom_id,
                    state=ItemState(row.state),
                    status_code=row.status_code,
                    response=row.response,
                    request_id=row.request_id,
                    error_code=row.error_code,
                    error_message=row.error_message,
                )
            if len(rows) < _PAGE:
                return
            after = rows[-1].line
