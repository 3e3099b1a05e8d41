"""The SQL store: keys, files and batches here, batch lines in ``sql_items``, quotas and
file expiry in ``sql_storage``, the engine and transactions in ``_sql_base``.
SQLite/PostgreSQL differences live in those modules and nowhere else.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    and_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.schema import Table

from batchway.core.listings import BatchFilter, counts_from_states
from batchway.core.models import (
    ApiKey,
    Batch,
    BatchError,
    Page,
    RequestCounts,
    StoredFile,
    Usage,
)
from batchway.core.states import BatchStatus, ItemState
from batchway.store._sql_base import create_engine
from batchway.store.figures import kept_figures
from batchway.store.sql_items import SqlItemStatements, settle_pending
from batchway.store.sql_storage import SqlStorageStatements, lock_key
from batchway.store.tables import api_keys, batch_items, batches, files

__all__ = ["SqlStore", "create_engine"]

_ACTIVE = (ItemState.PENDING.value, ItemState.LEASED.value)


def _batch_from_row(row: Row[Any], counts: RequestCounts | None = None) -> Batch:
    errors = tuple(
        BatchError(code=e["code"], message=e["message"], line=e.get("line"), param=e.get("param"))
        for e in (row.errors or [])
    )
    if counts is None:
        counts = RequestCounts(
            total=row.total,
            succeeded=row.succeeded,
            failed=row.failed,
            cancelled=row.cancelled,
            expired=row.expired,
        )
    return Batch(
        id=row.id,
        owner=row.owner,
        endpoint=row.endpoint,
        input_file_id=row.input_file_id,
        completion_window=row.completion_window,
        status=BatchStatus(row.status),
        created_at=row.created_at,
        expires_at=row.expires_at,
        model=row.model,
        metadata=row.metadata,
        output_expires_after=row.output_expires_after,
        in_progress_at=row.in_progress_at,
        finalizing_at=row.finalizing_at,
        completed_at=row.completed_at,
        failed_at=row.failed_at,
        expired_at=row.expired_at,
        cancelling_at=row.cancelling_at,
        cancelled_at=row.cancelled_at,
        output_file_id=row.output_file_id,
        error_file_id=row.error_file_id,
        errors=errors,
        counts=counts,
        usage=Usage(
            input_tokens=row.input_tokens,
            cached_tokens=row.cached_tokens,
            output_tokens=row.output_tokens,
            reasoning_tokens=row.reasoning_tokens,
        ),
        shape=row.shape,
    )


def _final_counts(counts: RequestCounts) -> dict[str, int]:
    """The columns an ended batch keeps its counts in."""
    return {
        "total": counts.total,
        "succeeded": counts.succeeded,
        "failed": counts.failed,
        "cancelled": counts.cancelled,
        "expired": counts.expired,
    }


def _file_from_row(row: Row[Any]) -> StoredFile:
    return StoredFile(
        id=row.id,
        owner=row.owner,
        filename=row.filename,
        purpose=row.purpose,
        bytes=row.bytes,
        created_at=row.created_at,
        expires_at=row.expires_at,
        status=row.status,
    )


def _key_from_row(row: Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        key_hash=row.key_hash,
        created_at=row.created_at,
        models=tuple(row.models) if row.models is not None else None,
        rpm=row.rpm,
        tpm=row.tpm,
        budget_usd=row.budget_usd,
        revoked=row.revoked,
        tph=row.tph,
        budget_period=row.budget_period,
        max_storage_bytes=row.max_storage_bytes,
        max_files=row.max_files,
        rph=row.rph,
    )


def _order(table: Table, ascending: bool) -> tuple[Any, Any]:
    """Listing order: creation, with the id to break ties between equal clock readings."""
    if ascending:
        return table.c.sort_key.asc(), table.c.id.asc()
    return table.c.sort_key.desc(), table.c.id.desc()


async def _past(
    conn: AsyncConnection, table: Table, owner: str, after: str, ascending: bool
) -> ColumnElement[bool]:
    """Rows strictly after the row ``after`` in listing order (all rows if it is unknown)."""
    row = (
        await conn.execute(
            select(table.c.sort_key).where(table.c.id == after, table.c.owner == owner)
        )
    ).first()
    if row is None:
        return true()
    position = tuple_(table.c.sort_key, table.c.id)
    cursor = tuple_(literal(row.sort_key), literal(after))
    return position > cursor if ascending else position < cursor


class SqlStore(SqlStorageStatements, SqlItemStatements):
    """Keys, files, batches and batch lines in one SQL database."""

    # -- keys ---------------------------------------------------------------------------

    async def create_key(self, key: ApiKey) -> None:
        async with self._write() as conn:
            await conn.execute(
                insert(api_keys).values(
                    id=key.id,
                    name=key.name,
                    key_hash=key.key_hash,
                    created_at=key.created_at,
                    models=list(key.models) if key.models is not None else None,
                    rpm=key.rpm,
                    tpm=key.tpm,
                    budget_usd=key.budget_usd,
                    revoked=key.revoked,
                    tph=key.tph,
                    budget_period=key.budget_period,
                    max_storage_bytes=key.max_storage_bytes,
                    max_files=key.max_files,
                    rph=key.rph,
                )
            )

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        async with self._read() as conn:
            row = (
                await conn.execute(select(api_keys).where(api_keys.c.key_hash == key_hash))
            ).first()
        return _key_from_row(row) if row else None

    async def get_key(self, key_id: str) -> ApiKey | None:
        async with self._read() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        return _key_from_row(row) if row else None

    async def list_keys(self) -> list[ApiKey]:
        async with self._read() as conn:
            rows = await conn.execute(
                select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
            )
            return [_key_from_row(row) for row in rows]

    async def revoke_key(self, key_id: str) -> bool:
        async with self._write() as conn:
            result = await conn.execute(
                update(api_keys).where(api_keys.c.id == key_id).values(revoked=True)
            )
        return result.rowcount > 0

    async def update_key(self, key_id: str, changes: dict[str, Any]) -> ApiKey | None:
        values = {**changes}
        if "models" in values and values["models"] is not None:
            values["models"] = list(values["models"])
        async with self._write() as conn:
            if values:
                await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(values))
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        return _key_from_row(row) if row else None

    # -- files --------------------------------------------------------------------------

    async def create_file(self, file: StoredFile, blob_key: str) -> None:
        async with self._write() as conn:
            await self._insert_file(conn, file, blob_key)

    async def get_file(self, owner: str | None, file_id: str, now: int) -> StoredFile | None:
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(files).where(files.c.id == file_id, self._live_files(owner, now))
                )
            ).first()
        return _file_from_row(row) if row else None

    async def file_blob_key(self, file_id: str) -> str | None:
        async with self._read() as conn:
            return (
                await conn.execute(select(files.c.blob_key).where(files.c.id == file_id))
            ).scalar()

    async def list_files(
        self,
        owner: str,
        now: int,
        *,
        purpose: str | None,
        limit: int,
        after: str | None,
        ascending: bool,
    ) -> Page[StoredFile]:
        query = select(files).where(self._live_files(owner, now))
        if purpose:
            query = query.where(files.c.purpose == purpose)
        async with self._read() as conn:
            if after:
                query = query.where(await _past(conn, files, owner, after, ascending))
            rows = (
                await conn.execute(query.order_by(*_order(files, ascending)).limit(limit + 1))
            ).all()
        return Page(items=[_file_from_row(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def delete_file(self, owner: str, file_id: str, now: int) -> str | None:
        """Delete a file's row; returns its blob key (None if there was no such file)."""
        async with self._write() as conn:
            blob_key = (
                await conn.execute(
                    select(files.c.blob_key).where(
                        files.c.id == file_id, self._live_files(owner, now)
                    )
                )
            ).scalar()
            if blob_key is not None:
                await conn.execute(delete(files).where(files.c.id == file_id))
        return blob_key

    # -- batches ------------------------------------------------------------------------

    async def create_batch(self, batch: Batch) -> bool:
        """Insert a batch unless its key is revoked (False then, and nothing is inserted).

        The key's row stays share-locked until the insert commits, so a revocation either
        comes first and is seen here, or waits and then finds this batch to cancel.
        """
        async with self._write() as conn:
            if await lock_key(conn, batch.owner, exclusive=False):
                return False
            await conn.execute(
                insert(batches).values(
                    id=batch.id,
                    owner=batch.owner,
                    endpoint=batch.endpoint,
                    input_file_id=batch.input_file_id,
                    completion_window=batch.completion_window,
                    status=batch.status.value,
                    created_at=batch.created_at,
                    expires_at=batch.expires_at,
                    model=batch.model,
                    metadata=batch.metadata,
                    output_expires_after=batch.output_expires_after,
                    total=batch.counts.total,
                    sort_key=time.time_ns(),
                    shape=batch.shape,
                )
            )
        return True

    async def unfinished_batches(self, owner: str) -> list[str]:
        """The ids of the batches of ``owner`` that have not ended, oldest first."""
        ended = [status.value for status in BatchStatus if status.terminal]
        async with self._read() as conn:
            rows = await conn.execute(
                select(batches.c.id)
                .where(batches.c.owner == owner, batches.c.status.not_in(ended))
                .order_by(batches.c.sort_key, batches.c.id)
            )
            return list(rows.scalars())

    async def _live_counts(
        self, conn: AsyncConnection, rows: Sequence[Row[Any]]
    ) -> dict[str, RequestCounts]:
        """Counts of the batches still running, straight from their lines."""
        running = [
            r.id
            for r in rows
            if r.status in (BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING, BatchStatus.CANCELLING)
        ]
        if not running:
            return {}
        grouped = await conn.execute(
            select(batch_items.c.batch_id, batch_items.c.state, func.count())
            .where(batch_items.c.batch_id.in_(running))
            .group_by(batch_items.c.batch_id, batch_items.c.state)
        )
        by_batch: dict[str, dict[str, int]] = {batch_id: {} for batch_id in running}
        for batch_id, state, count in grouped:
            by_batch[batch_id][state] = count
        totals = {r.id: r.total for r in rows}
        return {bid: counts_from_states(totals[bid], states) for bid, states in by_batch.items()}

    async def get_batch(self, owner: str | None, batch_id: str) -> Batch | None:
        query = select(batches).where(batches.c.id == batch_id)
        if owner is not None:
            query = query.where(batches.c.owner == owner)
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                return None
            live = await self._live_counts(conn, [row])
        return _batch_from_row(row, live.get(row.id))

    async def list_batches(
        self, owner: str, *, limit: int, after: str | None, before: str | None = None
    ) -> Page[Batch]:
        """A key's batches, newest first; ``after`` pages to older ones, ``before`` to newer
        ones (``has_more`` then tells whether there are newer still)."""
        query = select(batches).where(batches.c.owner == owner)
        newer = before is not None and after is None
        async with self._read() as conn:
            if after:
                query = query.where(await _past(conn, batches, owner, after, ascending=False))
            elif before:
                query = query.where(await _past(conn, batches, owner, before, ascending=True))
            order = _order(batches, ascending=newer)
            rows = (await conn.execute(query.order_by(*order).limit(limit + 1))).all()
            page = list(reversed(rows[:limit])) if newer else list(rows[:limit])
            live = await self._live_counts(conn, page)
        return Page(
            items=[_batch_from_row(r, live.get(r.id)) for r in page], has_more=len(rows) > limit
        )

    async def find_batches(
        self, filters: BatchFilter, *, limit: int, after: str | None
    ) -> Page[Batch]:
        """Batches of every key matching ``filters``, newest first; ``after`` (the last id of
        the previous page) pages to older ones. The owner's or the status's index orders
        them; a model filter probes each candidate's lines through their batch index."""
        query = select(batches)
        if filters.owner is not None:
            query = query.where(batches.c.owner == filters.owner)
        if filters.status is not None:
            query = query.where(batches.c.status == filters.status.value)
        if filters.model is not None:
            query = query.where(
                select(batch_items.c.id)
                .where(
                    batch_items.c.batch_id == batches.c.id,
                    batch_items.c.model == filters.model,
                )
                .exists()
            )
        async with self._read() as conn:
            if after:
                cursor = (
                    await conn.execute(select(batches.c.sort_key).where(batches.c.id == after))
                ).scalar()
                if cursor is not None:
                    query = query.where(
                        tuple_(batches.c.sort_key, batches.c.id)
                        < tuple_(literal(cursor), literal(after))
                    )
            order = _order(batches, ascending=False)
            rows = (await conn.execute(query.order_by(*order).limit(limit + 1))).all()
            page = rows[:limit]
            live = await self._live_counts(conn, page)
        return Page(
            items=[_batch_from_row(r, live.get(r.id)) for r in page], has_more=len(rows) > limit
        )

    async def delete_batch(self, batch_id: str) -> list[str]:
        """Delete a batch with its lines and result files; returns the blobs to delete."""
        async with self._write() as conn:
            row = (
                await conn.execute(
                    select(batches.c.output_file_id, batches.c.error_file_id).where(
                        batches.c.id == batch_id
                    )
                )
            ).first()
            if row is None:
                return []
            result_files = [f for f in (row.output_file_id, row.error_file_id) if f]
            blob_keys = list(
                (
                    await conn.execute(select(files.c.blob_key).where(files.c.id.in_(result_files)))
                ).scalars()
            )
            await conn.execute(delete(files).where(files.c.id.in_(result_files)))
            await conn.execute(delete(batch_items).where(batch_items.c.batch_id == batch_id))
            await conn.execute(delete(batches).where(batches.c.id == batch_id))
        return blob_keys

    async def set_batch_status(
        self,
        batch_id: str,
        *,
        expected: Iterable[BatchStatus],
        status: BatchStatus,
        **values: Any,
    ) -> bool:
        """Move a batch to ``status`` if it is still in one of ``expected`` (compare-and-set)."""
        async with self._write() as conn:
            return await self._set_status(conn, batch_id, expected, status, values)

    @staticmethod
    async def _set_status(
        conn: AsyncConnection,
        batch_id: str,
        expected: Iterable[BatchStatus],
        status: BatchStatus,
        values: dict[str, Any],
    ) -> bool:
        result = await conn.execute(
            update(batches)
            .where(batches.c.id == batch_id, batches.c.status.in_([s.value for s in expected]))
            .values(status=status.value, **values)
        )
        return result.rowcount > 0

    async def cancel_batch(self, batch_id: str, *, expected: BatchStatus, now: int) -> bool:
        """Start cancelling: lines that have not started are cancelled at once."""
        async with self._write() as conn:
            if not await self._set_status(
                conn,
                batch_id,
                [expected],
                BatchStatus.CANCELLING,
                {"cancelling_at": now, "finish_as": BatchStatus.CANCELLED.value},
            ):
                return False
            await settle_pending(conn, batch_id, ItemState.CANCELLED, float(now))
        return True

    async def expire_batch(self, batch_id: str, now: int) -> bool:
        """The completion window ended: lines that have not started expire."""
        async with self._write() as conn:
            if not await self._set_status(
                conn,
                batch_id,
                [BatchStatus.IN_PROGRESS],
                BatchStatus.FINALIZING,
                {"finalizing_at": now, "finish_as": BatchStatus.EXPIRED.value},
            ):
                return False
            await settle_pending(conn, batch_id, ItemState.EXPIRED, float(now))
        return True

    async def claim_batch(self, batch_id: str, worker: str, now: float, lease: float) -> bool:
        """Take a batch for validation or finalization, unless another worker holds it."""
        async with self._write() as conn:
            result = await conn.execute(
                update(batches)
                .where(
                    batches.c.id == batch_id,
                    or_(
                        batches.c.lease_owner.is_(None),
                        batches.c.lease_owner == worker,
                        batches.c.lease_expires_at < now,
                    ),
                )
                .values(lease_owner=worker, lease_expires_at=now + lease)
            )
        return result.rowcount > 0

    async def batches_needing_work(self, now: int) -> list[tuple[str, BatchStatus]]:
        """Batches a worker should validate, expire or finalize."""
        active = (
            select(batch_items.c.id)
            .where(batch_items.c.batch_id == batches.c.id, batch_items.c.state.in_(_ACTIVE))
            .exists()
        )
        leased = (
            select(batch_items.c.id)
            .where(
                batch_items.c.batch_id == batches.c.id,
                batch_items.c.state == ItemState.LEASED.value,
            )
            .exists()
        )
        query = select(batches.c.id, batches.c.status).where(
            or_(
                batches.c.status == BatchStatus.VALIDATING.value,
                and_(
                    batches.c.status == BatchStatus.IN_PROGRESS.value,
                    or_(batches.c.expires_at <= now, ~active),
                ),
                and_(
                    batches.c.status.in_(
                        [BatchStatus.CANCELLING.value, BatchStatus.FINALIZING.value]
                    ),
                    ~leased,
                ),
            )
        )
        async with self._read() as conn:
            return [(r.id, BatchStatus(r.status)) for r in await conn.execute(query)]

    async def end_batch(
        self,
        batch_id: str,
        *,
        expected: BatchStatus,
        status: BatchStatus,
        lines: ItemState | None,
        values: dict[str, Any],
    ) -> bool:
        """End a batch at once, without result files (a worker gave up on it): its
        unfinished lines end as ``lines`` (or are removed, when None), its counts are
        taken from its lines, and ``values`` (timestamps, errors) are written with it."""
        async with self._write() as conn:
            # the batch must still be as expected before its lines are touched (locked, so
            # that no other writer moves it on between this check and the status write)
            current = select(batches.c.status).where(batches.c.id == batch_id)
            if not self.is_sqlite:
                current = current.with_for_update()
            if (await conn.execute(current)).scalar() != expected.value:
                return False
            unfinished = (
                batch_items.c.batch_id == batch_id,
                batch_items.c.state.in_(_ACTIVE),
            )
            if lines is None:
                await conn.execute(delete(batch_items).where(batch_items.c.batch_id == batch_id))
            else:
                await conn.execute(
                    update(batch_items)
                    .where(*unfinished)
                    .values(state=lines.value, lease_owner=None, lease_expires_at=None)
                )
            states: dict[str, int] = dict(
                (
                    await conn.execute(
                        select(batch_items.c.state, func.count())
                        .where(batch_items.c.batch_id == batch_id)
                        .group_by(batch_items.c.state)
                    )
                ).all()
            )
            counts = counts_from_states(sum(states.values()), states)
            return await self._set_status(
                conn,
                batch_id,
                [expected],
                status,
                {
                    **values,
                    **_final_counts(counts),
                    **await kept_figures(conn, batch_id),
                    "lease_owner": None,
                    "lease_expires_at": None,
                },
            )

    async def finish_as(self, batch_id: str) -> BatchStatus | None:
        async with self._read() as conn:
            value = (
                await conn.execute(select(batches.c.finish_as).where(batches.c.id == batch_id))
            ).scalar()
        return BatchStatus(value) if value else None

    async def finish_batch(
        self,
        batch_id: str,
        *,
        expected: BatchStatus,
        status: BatchStatus,
        now: int,
        outputs: Sequence[tuple[StoredFile, str]],
        counts: RequestCounts,
        usage: Usage,
        values: dict[str, Any],
    ) -> bool:
        """Record a batch's result files, final counts and terminal status in one go."""
        async with self._write() as conn:
            ok = await self._set_status(
                conn,
                batch_id,
                [expected],
                status,
                {
                    **values,
                    **_final_counts(counts),
                    "input_tokens": usage.input_tokens,
                    "cached_tokens": usage.cached_tokens,
                    "output_tokens": usage.output_tokens,
                    "reasoning_tokens": usage.reasoning_tokens,
                    **await kept_figures(conn, batch_id),
                    "lease_owner": None,
                    "lease_expires_at": None,
                },
            )
            if ok:
                await conn.execute(delete(files).where(files.c.id.in_([f.id for f, _ in outputs])))
                for file, blob_key in outputs:
                    await self._insert_file(conn, file, blob_key)
        return ok
