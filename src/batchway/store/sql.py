"""The SQL store: every statement the gateway runs, on SQLite or PostgreSQL.

Differences between the two live here and nowhere else: SQLite serialises writers (an
in-process lock plus ``BEGIN IMMEDIATE``), PostgreSQL claims lines with
``FOR UPDATE SKIP LOCKED`` so that several workers never take the same line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    case,
    delete,
    event,
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
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.schema import Table

from batchway.core.models import (
    ApiKey,
    Batch,
    BatchError,
    BatchItem,
    ItemOutcome,
    NewItem,
    Page,
    RequestCounts,
    StoredFile,
    Usage,
)
from batchway.core.states import BatchStatus, ItemState
from batchway.errors import InvalidRequest
from batchway.store.tables import api_keys, batch_items, batches, files

__all__ = ["ItemResultRow", "SqlStore", "create_engine"]

_ACTIVE = (ItemState.PENDING.value, ItemState.LEASED.value)
_PAGE = 1000


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``; SQLite gets WAL and explicit write transactions."""
    if not url.startswith("sqlite"):
        return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # let us issue BEGIN ourselves (the driver's own deferred BEGIN can deadlock writers)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextmanager
def _refused_values() -> Iterator[None]:
    """A value the database cannot hold (PostgreSQL refuses NUL characters in text) is
    bad input, not a server error."""
    try:
        yield
    except DBAPIError as exc:
        if not _is_data_error(exc):
            raise
        raise InvalidRequest(
            "The request contains a value that cannot be stored (such as a NUL character)."
        ) from exc


def _is_data_error(exc: DBAPIError) -> bool:
    """A problem with a value (SQLSTATE class 22), not with the database."""
    if isinstance(exc, DataError):
        return True
    for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(error, "sqlstate", None)
        if isinstance(code, str) and code.startswith("22"):
            return True
    return False


class ItemResultRow:
    """A finished line as the finalizer reads it."""

    __slots__ = (
        "custom_id",
        "error_code",
        "error_message",
        "id",
        "line",
        "request_id",
        "response",
        "state",
        "status_code",
    )

    def __init__(self, row: Any) -> None:
        self.id: int = row.id
        self.line: int = row.line
        self.custom_id: str = row.custom_id
        self.state = ItemState(row.state)
        self.status_code: int | None = row.status_code
        self.response: bytes | None = row.response
        self.request_id: str | None = row.request_id
        self.error_code: str | None = row.error_code
        self.error_message: str | None = row.error_message


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
    )


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


def _counts_from_states(total: int, by_state: dict[str, int]) -> RequestCounts:
    return RequestCounts(
        total=total,
        processing=by_state.get(ItemState.PENDING, 0) + by_state.get(ItemState.LEASED, 0),
        succeeded=by_state.get(ItemState.SUCCEEDED, 0),
        failed=by_state.get(ItemState.FAILED, 0),
        cancelled=by_state.get(ItemState.CANCELLED, 0),
        expired=by_state.get(ItemState.EXPIRED, 0),
    )


class SqlStore:
    """Keys, files, batches and batch lines in one SQL database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock()

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (serialised on SQLite, where writers would otherwise collide)."""
        with _refused_values():
            if not self.is_sqlite:
                async with self.engine.begin() as conn:
                    yield conn
                return
            async with self._write_lock, self.engine.connect() as conn:
                conn = await conn.execution_options(sqlite_immediate=True)
                async with conn.begin():
                    yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        with _refused_values():
            async with self.engine.connect() as conn:
                yield conn

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

    # -- files --------------------------------------------------------------------------

    async def create_file(self, file: StoredFile, blob_key: str) -> None:
        async with self._write() as conn:
            await self._insert_file(conn, file, blob_key)

    @staticmethod
    async def _insert_file(conn: AsyncConnection, file: StoredFile, blob_key: str) -> None:
        await conn.execute(
            insert(files).values(
                id=file.id,
                owner=file.owner,
                filename=file.filename,
                purpose=file.purpose,
                bytes=file.bytes,
                created_at=file.created_at,
                expires_at=file.expires_at,
                status=file.status,
                blob_key=blob_key,
                sort_key=time.time_ns(),
            )
        )

    @staticmethod
    def _live_files(owner: str | None, now: int) -> Any:
        clause = or_(files.c.expires_at.is_(None), files.c.expires_at > now)
        return clause if owner is None else and_(clause, files.c.owner == owner)

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

    async def create_batch(self, batch: Batch) -> None:
        async with self._write() as conn:
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
                )
            )

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
        return {bid: _counts_from_states(totals[bid], states) for bid, states in by_batch.items()}

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
            await conn.execute(
                update(batch_items)
                .where(
                    batch_items.c.batch_id == batch_id,
                    batch_items.c.state == ItemState.PENDING.value,
                )
                .values(state=ItemState.CANCELLED.value, finished_at=float(now))
            )
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
            await conn.execute(
                update(batch_items)
                .where(
                    batch_items.c.batch_id == batch_id,
                    batch_items.c.state == ItemState.PENDING.value,
                )
                .values(state=ItemState.EXPIRED.value, finished_at=float(now))
            )
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
                    "total": counts.total,
                    "succeeded": counts.succeeded,
                    "failed": counts.failed,
                    "cancelled": counts.cancelled,
                    "expired": counts.expired,
                    "input_tokens": usage.input_tokens,
                    "cached_tokens": usage.cached_tokens,
                    "output_tokens": usage.output_tokens,
                    "reasoning_tokens": usage.reasoning_tokens,
                    "lease_owner": None,
                    "lease_expires_at": None,
                },
            )
            if ok:
                await conn.execute(delete(files).where(files.c.id.in_([f.id for f, _ in outputs])))
                for file, blob_key in outputs:
                    await self._insert_file(conn, file, blob_key)
        return ok

    # -- batch lines --------------------------------------------------------------------

    async def clear_items(self, batch_id: str) -> None:
        async with self._write() as conn:
            await conn.execute(delete(batch_items).where(batch_items.c.batch_id == batch_id))

    async def insert_items(
        self, batch_id: str, items: Sequence[NewItem], native_providers: Iterable[str] = ()
    ) -> None:
        """Store validated lines; lines of ``native_providers`` may go to their native batch API."""
        if not items:
            return
        native = frozenset(native_providers)
        async with self._write() as conn:
            await conn.execute(
                insert(batch_items),
                [
                    {
                        "batch_id": batch_id,
                        "line": item.line,
                        "custom_id": item.custom_id,
                        "model": item.model,
                        "provider": item.provider,
                        "body": item.body,
                        "state": ItemState.PENDING.value,
                        "attempts": 0,
                        "not_before": 0.0,
                        "execute_only": item.provider not in native,
                    }
                    for item in items
                ],
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
        runnable = (
            select(batch_items.c.id)
            .join(batches, batches.c.id == batch_items.c.batch_id)
            .where(
                batch_items.c.state == ItemState.PENDING.value,
                batch_items.c.provider == provider,
                batch_items.c.not_before <= now,
                batch_items.c.execute_only == execute,
                batches.c.status == BatchStatus.IN_PROGRESS.value,
            )
            .order_by(batch_items.c.id)
            .limit(limit)
        )
        if model is not None:
            runnable = runnable.where(batch_items.c.model == model, batches.c.endpoint == endpoint)
        if not self.is_sqlite:
            runnable = runnable.with_for_update(skip_locked=True, of=batch_items)
        # RETURNING cannot reach the batches table on SQLite: endpoints come separately
        async with self._write() as conn:
            rows = (
                await conn.execute(
                    update(batch_items)
                    .where(batch_items.c.id.in_(runnable.scalar_subquery()))
                    .values(
                        state=ItemState.LEASED.value,
                        lease_owner=worker,
                        lease_expires_at=now + lease,
                        attempts=batch_items.c.attempts + 1,
                        upstream_batch_id=None if execute else worker.removeprefix("native:"),
                    )
                    .returning(
                        batch_items.c.id,
                        batch_items.c.batch_id,
                        batch_items.c.line,
                        batch_items.c.custom_id,
                        batch_items.c.provider,
                        batch_items.c.body,
                        batch_items.c.attempts,
                    )
                )
            ).all()
            if not rows:
                return []
            endpoints = dict(
                (
                    await conn.execute(
                        select(batches.c.id, batches.c.endpoint).where(
                            batches.c.id.in_({r.batch_id for r in rows})
                        )
                    )
                ).all()
            )
        return [
            BatchItem(
                id=str(r.id),
                batch_id=r.batch_id,
                line=r.line,
                custom_id=r.custom_id,
                provider=r.provider,
                endpoint=endpoints[r.batch_id],
                body=r.body,
                attempts=r.attempts,
            )
            for r in sorted(rows, key=lambda r: r.id)
        ]

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

    async def release_expired_leases(self, now: float) -> int:
        """Give back the lines of workers that stopped renewing their leases."""
        async with self._write() as conn:
            result = await conn.execute(
                update(batch_items)
                .where(
                    batch_items.c.state == ItemState.LEASED.value,
                    batch_items.c.lease_expires_at < now,
                )
                .values(state=ItemState.PENDING.value, lease_owner=None, lease_expires_at=None)
            )
        return result.rowcount

    async def record_outcomes(
        self, worker: str, outcomes: Sequence[ItemOutcome], now: float
    ) -> set[str]:
        """Write what became of leased lines, in one transaction.

        A line is only written while this worker still holds its lease, so a worker that
        lost a lease can never overwrite (or double count) another's result. Returns the
        ids of the batches touched.
        """
        if not outcomes:
            return set()
        rows = [
            {
                "_id": int(o.item_id),
                "_worker": worker,
                "_leased": ItemState.LEASED.value,
                "state": o.state.value,
                "status_code": o.status_code,
                "response": o.response,
                "request_id": o.request_id,
                "error_code": o.error_code,
                "error_message": o.error_message,
                "not_before": o.not_before or 0.0,
                "input_tokens": o.usage.input_tokens,
                "cached_tokens": o.usage.cached_tokens,
                "output_tokens": o.usage.output_tokens,
                "reasoning_tokens": o.usage.reasoning_tokens,
                "finished_at": None if o.state is ItemState.PENDING else now,
            }
            for o in outcomes
        ]
        statement = (
            update(batch_items)
            .where(
                batch_items.c.id == bindparam("_id"),
                batch_items.c.lease_owner == bindparam("_worker"),
                batch_items.c.state == bindparam("_leased"),
            )
            .values(
                state=bindparam("state"),
                status_code=bindparam("status_code"),
                response=bindparam("response"),
                request_id=bindparam("request_id"),
                error_code=bindparam("error_code"),
                error_message=bindparam("error_message"),
                not_before=bindparam("not_before"),
                input_tokens=bindparam("input_tokens"),
                cached_tokens=bindparam("cached_tokens"),
                output_tokens=bindparam("output_tokens"),
                reasoning_tokens=bindparam("reasoning_tokens"),
                finished_at=bindparam("finished_at"),
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        async with self._write() as conn:
            await conn.execute(statement, rows)
            batch_ids = (
                await conn.execute(
                    select(batch_items.c.batch_id)
                    .where(batch_items.c.id.in_([r["_id"] for r in rows]))
                    .distinct()
                )
            ).scalars()
            return set(batch_ids)

    async def stopped_batches(self, batch_ids: Iterable[str]) -> dict[str, ItemState]:
        """Of these batches, those whose unstarted lines must not run now, and how those
        lines end (cancelled, or expired)."""
        async with self._read() as conn:
            rows = await conn.execute(
                select(batches.c.id, batches.c.finish_as).where(
                    batches.c.id.in_(list(batch_ids)),
                    batches.c.status.in_(
                        [BatchStatus.CANCELLING.value, BatchStatus.FINALIZING.value]
                    ),
                )
            )
            return {
                row.id: ItemState.EXPIRED
                if row.finish_as == BatchStatus.EXPIRED.value
                else ItemState.CANCELLED
                for row in rows
                if row.finish_as in (BatchStatus.EXPIRED.value, BatchStatus.CANCELLED.value)
            }

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
        counts = _counts_from_states(sum(states.values()), states)
        usage = Usage(
            input_tokens=int(sums[0]),
            cached_tokens=int(sums[1]),
            output_tokens=int(sums[2]),
            reasoning_tokens=int(sums[3]),
        )
        return counts, usage

    async def settle_unfinished(self, batch_id: str, state: ItemState, now: float) -> None:
        """Lines of an ending batch that never started end as ``state`` (cancelled/expired)."""
        async with self._write() as conn:
            await conn.execute(
                update(batch_items)
                .where(
                    batch_items.c.batch_id == batch_id,
                    batch_items.c.state == ItemState.PENDING.value,
                )
                .values(state=state.value, finished_at=now)
            )

    async def item_results(self, batch_id: str) -> AsyncIterator[ItemResultRow]:
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
                yield ItemResultRow(row)
            if len(rows) < _PAGE:
                return
            after = rows[-1].line
