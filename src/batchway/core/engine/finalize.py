"""Writing a batch's output and error files and moving it to its terminal status.

Files are written in input order from the stored lines, under ids derived from the batch
id, and recorded together with the final status in one write; a worker that dies half-way
leaves the batch as it was, and the next one simply writes it again. How a line reads in
the file is the client dialect's business: the engine is given a renderer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from batchway.core import clock
from batchway.core.engine.lifecycle import Lifecycle
from batchway.core.files import BATCH_FILE_TTL
from batchway.core.ids import result_file_id
from batchway.core.models import Batch, ItemResult, StoredFile
from batchway.core.ports import BlobStore, Store
from batchway.core.states import BatchStatus, ItemState

__all__ = ["Finalizer", "RenderResult"]

log = logging.getLogger("batchway.engine")

ResultKind = Literal["output", "error"]
# one finished line as its result file shows it
RenderResult = Callable[[Batch, ItemResult], bytes]
_FILE_ID_FIELD: dict[ResultKind, str] = {"output": "output_file_id", "error": "error_file_id"}


class Finalizer:
    """Finishes batches whose lines have all ended (or must end now)."""

    def __init__(
        self, store: Store, blobs: BlobStore, lifecycle: Lifecycle, render: RenderResult
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._lifecycle = lifecycle
        self._render = render

    async def finalize(self, batch_id: str) -> None:
        store = self._store
        batch = await store.get_batch(None, batch_id)
        if batch is None or batch.status.terminal:
            return
        now = clock.now()
        if batch.status is BatchStatus.IN_PROGRESS:
            if not await self._lifecycle.move(
                batch_id,
                BatchStatus.IN_PROGRESS,
                BatchStatus.FINALIZING,
                finalizing_at=now,
                finish_as=BatchStatus.COMPLETED.value,
            ):
                return
            batch = await store.get_batch(None, batch_id)
            assert batch is not None
        target = await store.finish_as(batch_id) or BatchStatus.COMPLETED
        if target in (BatchStatus.CANCELLED, BatchStatus.EXPIRED):
            # lines handed back by a dead worker after the cancel or expiry never run now
            state = ItemState.CANCELLED if target is BatchStatus.CANCELLED else ItemState.EXPIRED
            await store.settle_unfinished(batch_id, state, float(now))
        outputs = await self._write_files(batch, now)
        counts, usage = await store.item_summary(batch_id)
        values: dict[str, object] = {
            _FILE_ID_FIELD[kind]: file.id if file is not None else None
            for kind, file in outputs.items()
        }
        if batch.finalizing_at is None and target is not BatchStatus.CANCELLED:
            values["finalizing_at"] = now
        done = await self._lifecycle.finish(
            batch,
            target,
            now=now,
            outputs=[(file, file.id) for file in outputs.values() if file is not None],
            counts=counts,
            usage=usage,
            values=values,
        )
        if done:
            log.info(
                "batch finished",
                extra={"action": "batch_finished", "batch_id": batch_id, "status": target.value},
            )

    async def _write_files(self, batch: Batch, now: int) -> dict[ResultKind, StoredFile | None]:
        """The output and error files (None for one that would be empty)."""
        kinds: tuple[ResultKind, ResultKind] = ("output", "error")
        ids = {kind: result_file_id(batch.id, kind) for kind in kinds}
        writers = {kind: self._blobs.writer(file_id) for kind, file_id in ids.items()}
        sizes = dict.fromkeys(kinds, 0)
        try:
            async for row in self._store.item_results(batch.id):
                kind: ResultKind = "output" if row.state is ItemState.SUCCEEDED else "error"
                data = self._render(batch, row)
                sizes[kind] += len(data)
                await writers[kind].write(data)
        except BaseException:
            for writer in writers.values():
                await writer.abort()
            raise
        ttl = batch.output_expires_after or BATCH_FILE_TTL
        files: dict[ResultKind, StoredFile | None] = {}
        for kind, writer in writers.items():
            if not sizes[kind]:
                await writer.abort()
                files[kind] = None
                continue
            await writer.commit()
            files[kind] = StoredFile(
                id=ids[kind],
                owner=batch.owner,
                filename=f"{batch.id}_{kind}.jsonl",
                purpose="batch_output",
                bytes=sizes[kind],
                created_at=now,
                expires_at=now + ttl,
            )
        return files
