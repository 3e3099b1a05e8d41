"""The batch engine: a batch's life from validation to its terminal status.

validate → (lines claimed, run and recorded by the worker) → finalize, or expire / cancel
on the way, or be given up after its steps kept failing. Every status change goes through
`Lifecycle`, and so through the state machine. The engine holds no loop and no timer: the
worker decides when to call it, the engine decides what a step does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum

from batchway.config import BatchLimits
from batchway.core import clock
from batchway.core.engine.finalize import Finalizer, RenderResult
from batchway.core.engine.intake import Intake
from batchway.core.engine.lifecycle import Lifecycle
from batchway.core.line_records import LineRecords
from batchway.core.models import BatchItem, ItemOutcome, LineRecord
from batchway.core.ports import BlobStore, LinePricing, Store
from batchway.core.routing import Router
from batchway.core.states import BatchStatus, ItemState

__all__ = ["BatchEngine", "Step"]

log = logging.getLogger("batchway.engine")


class Step(StrEnum):
    """What a step did, for the worker to act on."""

    VALIDATED = "validated"  # new lines may be waiting
    WAITING = "waiting"  # expired, but lines in flight finish first
    DONE = "done"  # finalized (or nothing to do)


class BatchEngine:
    """Takes batches a step further; see the module docstring."""

    def __init__(
        self,
        *,
        store: Store,
        blobs: BlobStore,
        router: Router,
        limits: BatchLimits,
        render: RenderResult,
        pricing: LinePricing | None = None,
        native_for: Callable[[str], set[str]] = lambda endpoint: set(),
    ) -> None:
        self._store = store
        self.lifecycle = Lifecycle(store)
        self.records = LineRecords(pricing)
        self._intake = Intake(store, blobs, self.lifecycle, router, limits, native_for)
        self._finalizer = Finalizer(store, blobs, self.lifecycle, render)

    async def claim(
        self, worker: str, provider: str, limit: int, lease_seconds: float
    ) -> list[BatchItem]:
        """Lease up to ``limit`` runnable lines of in-progress batches for ``provider``
        (each claim counts an attempt; a lease not renewed in time is taken back)."""
        return await self._store.claim_items(
            worker, provider, limit, clock.now_float(), lease_seconds
        )

    def record(self, item: BatchItem, outcome: ItemOutcome) -> LineRecord:
        """The record the store writes for a line's outcome: priced and logged."""
        return self.records.of(item, outcome, clock.now_float())

    async def validate(self, batch_id: str) -> None:
        await self._intake.validate(batch_id)

    async def finalize(self, batch_id: str) -> None:
        await self._finalizer.finalize(batch_id)

    async def advance(self, batch_id: str, status: BatchStatus, now: int) -> Step:
        """Take one batch a step further: validate, expire or finalize it."""
        store = self._store
        if status is BatchStatus.VALIDATING:
            await self.validate(batch_id)
            return Step.VALIDATED
        if status is BatchStatus.CANCELLING and not await store.has_items(batch_id):
            # cancelled before its file was read: read it now, its lines end cancelled
            await self.validate(batch_id)
        if status is BatchStatus.IN_PROGRESS:
            batch = await store.get_batch(None, batch_id)
            if batch is not None and batch.expires_at <= now:
                await self.lifecycle.expire(batch, now)
                if await store.has_active_items(batch_id):
                    return Step.WAITING
        await self.finalize(batch_id)
        return Step.DONE

    async def give_up(self, batch_id: str, failures: int, error: BaseException) -> bool:
        """A batch whose step failed ``failures`` times ends now, without result files: a
        cancelled one as cancelled, an expiring one as expired, any other as failed.
        False if it had ended already."""
        store = self._store
        batch = await store.get_batch(None, batch_id)
        if batch is None or batch.status.terminal:
            return False
        finish_as = await store.finish_as(batch_id)
        if batch.status is BatchStatus.CANCELLING or finish_as is BatchStatus.CANCELLED:
            target, lines = BatchStatus.CANCELLED, ItemState.CANCELLED
        elif finish_as is BatchStatus.EXPIRED or batch.expires_at <= clock.now():
            target, lines = BatchStatus.EXPIRED, ItemState.EXPIRED
        else:
            target, lines = BatchStatus.FAILED, ItemState.FAILED
        validating = batch.status is BatchStatus.VALIDATING
        stage = "validated" if validating else "finished"
        message = (
            f"The batch could not be {stage}: the step failed {failures} times "
            f"({type(error).__name__}); it was stopped."
        )
        await self.lifecycle.end(
            batch,
            target,
            now=clock.now(),
            lines=None if validating else lines,
            errors=[{"code": "internal_error", "message": message, "line": None, "param": None}],
        )
        log.error(
            "gave up on a batch",
            extra={"action": "batch_given_up", "batch_id": batch_id, "status": target.value},
        )
        return True
