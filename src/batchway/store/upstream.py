"""Batches submitted to providers' native batch APIs, and the lines they carry.

An upstream batch row is written *before* its lines are claimed and before anything is sent,
and every upstream id is recorded as soon as it is known, so a worker that dies at any
point leaves enough behind for the next one to carry on without submitting twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update

from batchway.core.models import BatchItem, UpstreamBatchRow
from batchway.core.states import BatchStatus, ItemState
from batchway.store.sql import SqlStore
from batchway.store.tables import batch_items, batches, upstream_batches

__all__ = ["SqlUpstreamBatches"]

# claimed lines of an upstream batch stay leased to it for as long as it may run
NATIVE_LEASE_SECONDS = 7 * 24 * 3600


def _row(row: Any) -> UpstreamBatchRow:
    return UpstreamBatchRow(
        id=row.id,
        provider=row.provider,
        endpoint=row.endpoint,
        model=row.model,
        state=row.state,
        lines=row.lines,
        upstream_file_id=row.upstream_file_id,
        upstream_batch_id=row.upstream_batch_id,
        poll_interval=row.poll_interval,
        failures=row.failures,
    )


class SqlUpstreamBatches:
    """The upstream-batch statements, on the same database as ``SqlStore``."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def groups_waiting(self, provider: str, now: float) -> list[tuple[str, str]]:
        """(endpoint, model) of lines of ``provider`` waiting for a native batch."""
        async with self._store._read() as conn:
            rows = await conn.execute(
                select(batches.c.endpoint, batch_items.c.model)
                .join(batches, batches.c.id == batch_items.c.batch_id)
                .where(
                    batch_items.c.provider == provider,
                    batch_items.c.state == ItemState.PENDING.value,
                    batch_items.c.execute_only.is_(False),
                    batch_items.c.not_before <= now,
                    batches.c.status == BatchStatus.IN_PROGRESS.value,
                )
                .distinct()
            )
            return [(row.endpoint, row.model) for row in rows]

    async def create(
        self, upstream_id: str, *, provider: str, endpoint: str, model: str, now: float, poll: float
    ) -> None:
        async with self._store._write() as conn:
            await conn.execute(
                insert(upstream_batches).values(
                    id=upstream_id,
                    provider=provider,
                    endpoint=endpoint,
                    model=model,
                    state="preparing",
                    lines=0,
                    created_at=now,
                    next_poll_at=now,
                    poll_interval=poll,
                    failures=0,
                )
            )

    async def claim_lines(
        self, row: UpstreamBatchRow, limit: int, max_bytes: int, now: float
    ) -> list[BatchItem]:
        """Claim up to ``limit`` lines, and no more than ``max_bytes`` of them, for ``row``
        (deleted again when there is nothing to claim)."""
        items = await self._store.claim_items(
            row.owner,
            row.provider,
            limit,
            now,
            NATIVE_LEASE_SECONDS,
            execute=False,
            model=row.model,
            endpoint=row.endpoint,
        )
        size, keep = 0, 0
        for item in items:
            size += len(item.body) + 200  # the line's envelope around its body
            if size > max_bytes and keep:
                break
            keep += 1
        overflow, items = items[keep:], items[:keep]
        async with self._store._write() as conn:
            if overflow:  # for the next upstream batch; the claim did not count as a try
                await conn.execute(
                    update(batch_items)
                    .where(batch_items.c.id.in_([int(item.id) for item in overflow]))
                    .values(
                        state=ItemState.PENDING.value,
                        lease_owner=None,
                        lease_expires_at=None,
                        upstream_batch_id=None,
                        attempts=batch_items.c.attempts - 1,
                    )
                )
            if items:
                await conn.execute(
                    update(upstream_batches)
                    .where(upstream_batches.c.id == row.id)
                    .values(lines=len(items))
                )
            else:
                await conn.execute(delete(upstream_batches).where(upstream_batches.c.id == row.id))
        return items

    async def lines(self, row: UpstreamBatchRow) -> list[BatchItem]:
        """The lines an upstream batch carries (to write its input file again)."""
        async with self._store._read() as conn:
            rows = await conn.execute(
                select(
                    batch_items.c.id,
                    batch_items.c.batch_id,
                    batch_items.c.line,
                    batch_items.c.custom_id,
                    batch_items.c.provider,
                    batch_items.c.body,
                    batch_items.c.attempts,
                )
                .where(
                    batch_items.c.lease_owner == row.owner,
                    batch_items.c.state == ItemState.LEASED.value,
                )
                .order_by(batch_items.c.id)
            )
            return [
                BatchItem(
                    id=str(r.id),
                    batch_id=r.batch_id,
                    line=r.line,
                    custom_id=r.custom_id,
                    provider=r.provider,
                    endpoint=row.endpoint,
                    body=r.body,
                    attempts=r.attempts,
                )
                for r in rows
            ]

    async def update(self, upstream_id: str, **values: Any) -> None:
        async with self._store._write() as conn:
            await conn.execute(
                update(upstream_batches)
                .where(upstream_batches.c.id == upstream_id)
                .values(**values)
            )

    async def due(self, worker: str, now: float, lease: float) -> list[UpstreamBatchRow]:
        """Upstream batches to prepare or poll now, leased to ``worker``."""
        free = or_(
            upstream_batches.c.lease_owner.is_(None),
            upstream_batches.c.lease_owner == worker,
            upstream_batches.c.lease_expires_at < now,
        )
        async with self._store._write() as conn:
            ids = list(
                (
                    await conn.execute(
                        select(upstream_batches.c.id).where(
                            upstream_batches.c.state.in_(["preparing", "submitted"]),
                            upstream_batches.c.next_poll_at <= now,
                            free,
                        )
                    )
                ).scalars()
            )
            if not ids:
                return []
            await conn.execute(
                update(upstream_batches)
                .where(upstream_batches.c.id.in_(ids), free)
                .values(lease_owner=worker, lease_expires_at=now + lease)
            )
            rows = await conn.execute(
                select(upstream_batches).where(
                    upstream_batches.c.id.in_(ids), upstream_batches.c.lease_owner == worker
                )
            )
            return [_row(r) for r in rows]

    async def next_due(self) -> float | None:
        async with self._store._read() as conn:
            value = (
                await conn.execute(
                    select(func.min(upstream_batches.c.next_poll_at)).where(
                        upstream_batches.c.state.in_(["preparing", "submitted"])
                    )
                )
            ).scalar()
        return float(value) if value is not None else None

    async def stopping_batches(self, row: UpstreamBatchRow) -> set[str]:
        """Client batches with lines in ``row`` that are being cancelled."""
        async with self._store._read() as conn:
            rows = await conn.execute(
                select(batch_items.c.batch_id)
                .join(batches, batches.c.id == batch_items.c.batch_id)
                .where(
                    batch_items.c.lease_owner == row.owner,
                    batches.c.status == BatchStatus.CANCELLING.value,
                )
                .distinct()
            )
            return {r.batch_id for r in rows}

    async def carries_only(self, row: UpstreamBatchRow, batch_ids: set[str]) -> bool:
        """Are all the still-leased lines of ``row`` from ``batch_ids``?"""
        async with self._store._read() as conn:
            other = (
                await conn.execute(
                    select(batch_items.c.id)
                    .where(
                        batch_items.c.lease_owner == row.owner,
                        batch_items.c.state == ItemState.LEASED.value,
                        batch_items.c.batch_id.not_in(batch_ids),
                    )
                    .limit(1)
                )
            ).first()
        return other is None

    async def release(self, row: UpstreamBatchRow, *, execute: bool, now: float) -> None:
        """Hand the still-leased lines back (to run them as calls, when ``execute``)."""
        async with self._store._write() as conn:
            await conn.execute(
                update(batch_items)
                .where(
                    batch_items.c.lease_owner == row.owner,
                    batch_items.c.state == ItemState.LEASED.value,
                )
                .values(
                    state=ItemState.PENDING.value,
                    lease_owner=None,
                    lease_expires_at=None,
                    upstream_batch_id=None,
                    execute_only=execute,
                    not_before=now,
                )
            )

    async def batch_states(self, item_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """For items: the status of their client batch and how it finishes."""
        async with self._store._read() as conn:
            rows = await conn.execute(
                select(batch_items.c.id, batches.c.status, batches.c.finish_as)
                .join(batches, batches.c.id == batch_items.c.batch_id)
                .where(batch_items.c.id.in_([int(i) for i in item_ids]))
            )
            return {str(r.id): (r.status, r.finish_as) for r in rows}
