"""`MemoryUpstreamBatches`: batches submitted to providers' native batch APIs, on the
tables of a `MemoryStore`, as ``batchway.store.upstream.SqlUpstreamBatches`` keeps them on
the database of a ``SqlStore``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batchway.core.models import BatchItem, UpstreamBatchRow
from batchway.core.states import BatchStatus, ItemState
from batchway.testing.memory._tables import LineRow, UniqueViolation, UpstreamRow, assign, turn
from batchway.testing.memory.store import MemoryStore

__all__ = ["NATIVE_LEASE_SECONDS", "MemoryUpstreamBatches"]

# claimed lines of an upstream batch stay leased to it for as long as it may run (as in SQL)
NATIVE_LEASE_SECONDS = 7 * 24 * 3600
_OPEN = ("preparing", "submitted")


def _row(row: UpstreamRow) -> UpstreamBatchRow:
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


class MemoryUpstreamBatches:
    """The upstream-batch statements, on the same tables as ``store``."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._tables = store.tables

    def _carried(self, row: UpstreamBatchRow) -> list[LineRow]:
        """The lines ``row`` still holds, in id order."""
        lines = sorted(self._tables.lines.values(), key=lambda line: line.id)
        return [line for line in lines if line.held_by(row.owner)]

    async def groups_waiting(self, provider: str, now: float) -> list[tuple[str, str]]:
        """(endpoint, model) of lines of ``provider`` waiting for a native batch."""
        await turn()
        groups: dict[tuple[str, str], None] = {}
        for line in self._tables.lines.values():
            batch = self._tables.batches.get(line.batch_id)
            if (
                batch is not None
                and batch.status == BatchStatus.IN_PROGRESS
                and line.provider == provider
                and line.state == ItemState.PENDING
                and not line.execute_only
                and line.not_before <= now
            ):
                groups[(batch.endpoint, line.model)] = None
        return list(groups)

    async def create(
        self, upstream_id: str, *, provider: str, endpoint: str, model: str, now: float, poll: float
    ) -> None:
        await turn()
        if upstream_id in self._tables.upstream:
            raise UniqueViolation(f"upstream_batches.id {upstream_id!r}")
        self._tables.upstream[upstream_id] = UpstreamRow(
            id=upstream_id,
            provider=provider,
            endpoint=endpoint,
            model=model,
            state="preparing",
            lines=0,
            created_at=now,
            next_poll_at=now,
            poll_interval=poll,
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
        for item in overflow:  # for the next upstream batch; the claim did not count as a try
            line = self._tables.lines[int(item.id)]
            line.release(upstream_batch_id=None, attempts=line.attempts - 1)
        if items:
            if row.id in self._tables.upstream:
                self._tables.upstream[row.id].lines = len(items)
        else:
            self._tables.upstream.pop(row.id, None)
        return items

    async def lines(self, row: UpstreamBatchRow) -> list[BatchItem]:
        """The lines an upstream batch carries (to write its input file again)."""
        await turn()
        return [
            BatchItem(
                id=str(line.id),
                batch_id=line.batch_id,
                line=line.line,
                custom_id=line.custom_id,
                provider=line.provider,
                endpoint=row.endpoint,
                body=line.body,
                attempts=line.attempts,
            )
            for line in self._carried(row)
        ]

    async def update(self, upstream_id: str, **values: Any) -> None:
        await turn()
        row = self._tables.upstream.get(upstream_id)
        if row is not None:
            assign(row, values)

    async def due(self, worker: str, now: float, lease: float) -> list[UpstreamBatchRow]:
        """Upstream batches to prepare or poll now, leased to ``worker``."""
        await turn()
        due = []
        for row in self._tables.upstream.values():
            lapsed = row.lease_expires_at is not None and row.lease_expires_at < now
            free = row.lease_owner in (None, worker) or lapsed
            if row.state in _OPEN and row.next_poll_at <= now and free:
                row.lease_owner, row.lease_expires_at = worker, now + lease
                due.append(_row(row))
        return due

    async def next_due(self) -> float | None:
        await turn()
        times = [row.next_poll_at for row in self._tables.upstream.values() if row.state in _OPEN]
        return float(min(times)) if times else None

    async def stopping_batches(self, row: UpstreamBatchRow) -> set[str]:
        """Client batches with lines in ``row`` that are being cancelled."""
        await turn()
        batches = self._tables.batches
        return {
            line.batch_id
            for line in self._tables.lines.values()
            if line.lease_owner == row.owner
            and line.batch_id in batches
            and batches[line.batch_id].status == BatchStatus.CANCELLING
        }

    async def carries_only(self, row: UpstreamBatchRow, batch_ids: set[str]) -> bool:
        """Are all the still-leased lines of ``row`` from ``batch_ids``?"""
        await turn()
        return all(line.batch_id in batch_ids for line in self._carried(row))

    async def release(self, row: UpstreamBatchRow, *, execute: bool, now: float) -> None:
        """Hand the still-leased lines back (to run them as calls, when ``execute``)."""
        await turn()
        for line in self._carried(row):
            line.release(upstream_batch_id=None, execute_only=execute, not_before=now)

    async def batch_states(self, item_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """For items: the status of their client batch and how it finishes."""
        await turn()
        states: dict[str, tuple[str, str | None]] = {}
        for item_id in item_ids:
            line = self._tables.lines.get(int(item_id))
            batch = self._tables.batches.get(line.batch_id) if line is not None else None
            if line is not None and batch is not None:
                states[str(line.id)] = (batch.status, batch.finish_as)
        return states
