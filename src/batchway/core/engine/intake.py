"""Validating a batch's input file and storing its lines (``validating`` → ``in_progress``).

The file is read once, as a stream. Lines are stored in chunks as they pass; if any line
is bad, the stored lines are removed again and the batch fails with every problem found
(up to a cap), so nothing of a failed batch ever runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from batchway.config import BatchLimits
from batchway.core import clock
from batchway.core.engine.lifecycle import Lifecycle
from batchway.core.models import Batch, BatchError, NewItem
from batchway.core.ports import BlobStore, Store
from batchway.core.routing import Router
from batchway.core.states import BatchStatus, ItemState
from batchway.core.validation import InputValidator, input_lines

__all__ = ["Intake"]

log = logging.getLogger("batchway.engine")
# lines are stored in chunks of this many lines or bytes, whichever comes first
_CHUNK_LINES = 2000
_CHUNK_BYTES = 2 * 1024 * 1024


def _errors_json(errors: list[BatchError]) -> list[dict[str, object]]:
    return [
        {"code": e.code, "message": e.message, "line": e.line, "param": e.param} for e in errors
    ]


class Intake:
    """Reads input files into stored lines (safe to run again after a crash)."""

    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        lifecycle: Lifecycle,
        router: Router,
        limits: BatchLimits,
        native_for: Callable[[str], set[str]],
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._lifecycle = lifecycle
        self._router = router
        self._limits = limits
        # providers whose own batch API takes the lines of an endpoint
        self._native_for = native_for

    async def validate(self, batch_id: str) -> None:
        """Check and store the lines of a ``validating`` batch. A batch cancelled before it
        was read is read all the same, so that its lines can be reported as cancelled."""
        store = self._store
        batch = await store.get_batch(None, batch_id)
        if batch is None or batch.status not in (BatchStatus.VALIDATING, BatchStatus.CANCELLING):
            return
        key = await store.get_key(batch.owner)
        blob_key = await store.file_blob_key(batch.input_file_id)
        if key is None or blob_key is None:
            message = "The input file was deleted before the batch could read it."
            await self._fail(batch, [BatchError(code="file_not_found", message=message)])
            return
        await store.clear_items(batch_id)  # a previous attempt may have died half-way
        native = self._native_for(batch.endpoint)
        validator = InputValidator(
            endpoint=batch.endpoint,
            router=self._router,
            principal=key.principal(),
            limits=self._limits,
        )
        pending: list[NewItem] = []
        pending_bytes = 0
        number = 0
        async for raw in input_lines(
            self._blobs.chunks(blob_key), self._limits.max_batch_line_bytes
        ):
            number += 1
            item = validator.check(number, raw)
            if item is not None and validator.ok:
                pending.append(item)
                pending_bytes += len(item.body)
                if len(pending) >= _CHUNK_LINES or pending_bytes >= _CHUNK_BYTES:
                    await store.insert_items(batch_id, pending, native)
                    pending, pending_bytes = [], 0
        validator.finish()
        if not validator.ok:
            if batch.status is BatchStatus.VALIDATING:
                await self._fail(batch, validator.errors)
            else:
                await store.clear_items(batch_id)
            return
        await store.insert_items(batch_id, pending, native)
        models = sorted(validator.models)
        started = await self._lifecycle.move(
            batch_id,
            BatchStatus.VALIDATING,
            BatchStatus.IN_PROGRESS,
            in_progress_at=clock.now(),
            total=validator.requests,
            model=models[0] if len(models) == 1 else None,
            lease_owner=None,
        )
        if not started:  # cancelled while we read: its lines never run
            await store.settle_unfinished(batch_id, ItemState.CANCELLED, clock.now_float())
            await self._lifecycle.move(
                batch_id, BatchStatus.CANCELLING, BatchStatus.CANCELLING, total=validator.requests
            )
        log.info(
            "batch validated",
            extra={"action": "batch_validated", "batch_id": batch_id, "lines": validator.requests},
        )

    async def _fail(self, batch: Batch, errors: list[BatchError]) -> None:
        await self._store.clear_items(batch.id)
        await self._lifecycle.move(
            batch.id,
            BatchStatus.VALIDATING,
            BatchStatus.FAILED,
            failed_at=clock.now(),
            errors=_errors_json(errors),
            lease_owner=None,
        )
        log.info("batch failed validation", extra={"action": "batch_failed", "batch_id": batch.id})
