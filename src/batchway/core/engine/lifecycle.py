"""Every change of a batch's status, checked against the state machine before it is written.

The store writes a status with compare-and-set (``expected``): a change another worker or
a client made first wins, and the loser sees False. What this module adds is that no code
path can write a change ``core/states.py`` does not allow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batchway.core.models import Batch, RequestCounts, StoredFile, Usage
from batchway.core.ports import BatchStore
from batchway.core.states import BatchStatus, ItemState, transition

__all__ = ["STAMP", "Lifecycle"]

# the timestamp a batch gets when it reaches each status
STAMP = {
    BatchStatus.IN_PROGRESS: "in_progress_at",
    BatchStatus.FINALIZING: "finalizing_at",
    BatchStatus.COMPLETED: "completed_at",
    BatchStatus.FAILED: "failed_at",
    BatchStatus.EXPIRED: "expired_at",
    BatchStatus.CANCELLING: "cancelling_at",
    BatchStatus.CANCELLED: "cancelled_at",
}


class Lifecycle:
    """Moves batches between statuses through the state machine."""

    def __init__(self, store: BatchStore) -> None:
        self._store = store

    async def move(
        self, batch_id: str, current: BatchStatus, target: BatchStatus, **values: Any
    ) -> bool:
        """``current`` → ``target`` with ``values`` written alongside, if the batch is still
        ``current``. A write that keeps the status (``current is target``) is no change."""
        if current is not target:
            transition(current, target)
        return await self._store.set_batch_status(
            batch_id, expected=[current], status=target, **values
        )

    async def cancel(self, batch: Batch, now: int) -> bool:
        """Start cancelling; lines that have not started are cancelled at once."""
        transition(batch.status, BatchStatus.CANCELLING)
        return await self._store.cancel_batch(batch.id, expected=batch.status, now=now)

    async def expire(self, batch: Batch, now: int) -> bool:
        """The completion window ended: on to finalizing, to end as expired."""
        transition(batch.status, BatchStatus.FINALIZING)
        return await self._store.expire_batch(batch.id, now)

    async def finish(
        self,
        batch: Batch,
        target: BatchStatus,
        *,
        now: int,
        outputs: Sequence[tuple[StoredFile, str]],
        counts: RequestCounts,
        usage: Usage,
        values: dict[str, Any],
    ) -> bool:
        """The terminal status, with result files, counts and usage, in one write."""
        transition(batch.status, target)
        return await self._store.finish_batch(
            batch.id,
            expected=batch.status,
            status=target,
            now=now,
            outputs=outputs,
            counts=counts,
            usage=usage,
            values={STAMP[target]: now, **values},
        )

    async def end(
        self,
        batch: Batch,
        target: BatchStatus,
        *,
        now: int,
        lines: ItemState | None,
        errors: list[dict[str, object]],
    ) -> bool:
        """End at once without result files: unfinished lines end as ``lines`` (or are
        removed, when None)."""
        transition(batch.status, target)
        values: dict[str, Any] = {STAMP[target]: now}
        if errors:
            values["errors"] = errors
        return await self._store.end_batch(
            batch.id, expected=batch.status, status=target, lines=lines, values=values
        )
