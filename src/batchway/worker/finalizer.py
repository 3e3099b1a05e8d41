"""Writing a batch's output and error files and moving it to its terminal status.

Files are written in input order from the stored lines, under ids derived from the
batch id, and recorded together with the final status in one transaction; a worker that
dies half-way leaves the batch as it was, and the next one simply writes it again.
"""

from __future__ import annotations

import logging

from batchway.core import clock
from batchway.core.files import BATCH_FILE_TTL
from batchway.core.models import Batch, StoredFile
from batchway.core.results import item_line_id, result_file_id, result_line
from batchway.core.states import BatchStatus, ItemState
from batchway.store.blobs import BlobStore
from batchway.store.sql import SqlStore

__all__ = ["finalize_batch"]

log = logging.getLogger("batchway.worker")

_TIMESTAMP = {
    BatchStatus.COMPLETED: "completed_at",
    BatchStatus.EXPIRED: "expired_at",
    BatchStatus.CANCELLED: "cancelled_at",
}


async def _write_files(
    store: SqlStore, blobs: BlobStore, batch: Batch, now: int
) -> list[tuple[StoredFile, str]]:
    ids = {kind: result_file_id(batch.id, kind) for kind in ("output", "error")}
    writers = {kind: blobs.writer(file_id) for kind, file_id in ids.items()}
    sizes = {"output": 0, "error": 0}
    try:
        async for row in store.item_results(batch.id):
            kind = "output" if row.state is ItemState.SUCCEEDED else "error"
            data = result_line(
                line_id=item_line_id(batch.id, row.line),
                custom_id=row.custom_id,
                state=row.state,
                status_code=row.status_code,
                response=row.response,
                request_id=row.request_id,
                error_code=row.error_code,
                error_message=row.error_message,
            )
            sizes[kind] += len(data)
            await writers[kind].write(data)
    except BaseException:
        for writer in writers.values():
            await writer.abort()
        raise
    ttl = batch.output_expires_after or BATCH_FILE_TTL
    outputs = []
    for kind, writer in writers.items():
        if not sizes[kind]:
            await writer.abort()
            continue
        await writer.commit()
        file = StoredFile(
            id=ids[kind],
            owner=batch.owner,
            filename=f"{batch.id}_{kind}.jsonl",
            purpose="batch_output",
            bytes=sizes[kind],
            created_at=now,
            expires_at=now + ttl,
        )
        outputs.append((file, ids[kind]))
    return outputs


async def finalize_batch(store: SqlStore, blobs: BlobStore, batch_id: str) -> None:
    """Finish a batch whose lines have all ended (or must end now)."""
    batch = await store.get_batch(None, batch_id)
    if batch is None or batch.status.terminal:
        return
    now = clock.now()
    if batch.status is BatchStatus.IN_PROGRESS:
        if not await store.set_batch_status(
            batch_id,
            expected=[BatchStatus.IN_PROGRESS],
            status=BatchStatus.FINALIZING,
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
    outputs = await _write_files(store, blobs, batch, now)
    counts, usage = await store.item_summary(batch_id)
    values: dict[str, object] = {
        _TIMESTAMP[target]: now,
        "output_file_id": next(
            (f.id for f, _ in outputs if f.filename.endswith("_output.jsonl")), None
        ),
        "error_file_id": next(
            (f.id for f, _ in outputs if f.filename.endswith("_error.jsonl")), None
        ),
    }
    if batch.finalizing_at is None and target is not BatchStatus.CANCELLED:
        values["finalizing_at"] = now
    done = await store.finish_batch(
        batch_id,
        expected=batch.status,
        status=target,
        now=now,
        outputs=outputs,
        counts=counts,
        usage=usage,
        values=values,
    )
    if done:
        log.info(
            "batch finished",
            extra={"action": "batch_finished", "batch_id": batch_id, "status": target.value},
        )
