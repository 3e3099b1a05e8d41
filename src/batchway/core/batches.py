"""Creating, reading and cancelling batches: the service every dialect goes through."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batchway.config import BatchLimits
from batchway.core import clock
from batchway.core.files import human_size
from batchway.core.ids import new_id
from batchway.core.models import Batch, Page, Principal
from batchway.core.states import BatchStatus, transition
from batchway.core.validation import SUPPORTED_ENDPOINTS, normalize_endpoint
from batchway.errors import InvalidRequest, NotFound, PayloadTooLarge
from batchway.store.repository import BatchRepository, FileRepository

__all__ = ["COMPLETION_WINDOW_SECONDS", "BatchService"]

COMPLETION_WINDOW_SECONDS = 24 * 3600


def _check_metadata(metadata: Any) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > 16:
        raise InvalidRequest("metadata must be an object of at most 16 pairs.", param="metadata")
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) > 64 or len(value) > 512:
            raise InvalidRequest(
                "metadata keys must be at most 64 characters and values strings of at most 512.",
                param="metadata",
            )
    return metadata


class BatchService:
    """Owns batch ids, timestamps and the rules a new batch must meet."""

    def __init__(
        self,
        batches: BatchRepository,
        files: FileRepository,
        limits: BatchLimits,
        wake_worker: Callable[[], None] = lambda: None,
    ) -> None:
        self._batches = batches
        self._files = files
        self._limits = limits
        self._wake_worker = wake_worker

    async def create(
        self,
        principal: Principal,
        *,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: Any = None,
        output_expires_after: int | None = None,
    ) -> Batch:
        """A new batch in ``validating``; its lines are checked by a worker."""
        normalized = normalize_endpoint(endpoint)
        if normalized is None:
            raise InvalidRequest(
                f"endpoint {endpoint!r} is not supported; use one of "
                f"{', '.join(SUPPORTED_ENDPOINTS)}.",
                param="endpoint",
            )
        if completion_window != "24h":
            raise InvalidRequest("completion_window must be '24h'.", param="completion_window")
        if output_expires_after is not None and not 3600 <= output_expires_after <= 2_592_000:
            raise InvalidRequest(
                "output_expires_after.seconds must be between 3600 and 2592000.",
                param="output_expires_after",
            )
        checked_metadata = _check_metadata(metadata)
        now = clock.now()
        file = await self._files.get_file(principal.key_id, input_file_id, now)
        if file is None:
            raise InvalidRequest(f"Cannot find file {input_file_id}.", param="input_file_id")
        if file.purpose != "batch":
            raise InvalidRequest(
                f"File {input_file_id} has purpose {file.purpose!r}; "
                "a batch needs purpose 'batch'.",
                param="input_file_id",
            )
        if file.bytes > self._limits.max_batch_file_bytes:
            raise PayloadTooLarge(
                f"File {input_file_id} is larger than the "
                f"{human_size(self._limits.max_batch_file_bytes)} a batch may read.",
                param="input_file_id",
            )
        batch = Batch(
            id=new_id("batch"),
            owner=principal.key_id,
            endpoint=normalized,
            input_file_id=input_file_id,
            completion_window=completion_window,
            status=BatchStatus.VALIDATING,
            created_at=now,
            expires_at=now + COMPLETION_WINDOW_SECONDS,
            metadata=checked_metadata,
            output_expires_after=output_expires_after,
        )
        await self._batches.create_batch(batch)
        self._wake_worker()
        return batch

    async def get(self, principal: Principal, batch_id: str) -> Batch:
        batch = await self._batches.get_batch(principal.key_id, batch_id)
        if batch is None:
            raise NotFound(f"No batch found with id '{batch_id}'.", param="batch_id")
        return batch

    async def list(self, principal: Principal, *, limit: int, after: str | None) -> Page[Batch]:
        if not 1 <= limit <= 100:
            raise InvalidRequest("limit must be between 1 and 100.", param="limit")
        return await self._batches.list_batches(principal.key_id, limit=limit, after=after)

    async def cancel(self, principal: Principal, batch_id: str) -> Batch:
        """Ask a batch to stop. Cancelling a batch that is already cancelling is a no-op."""
        for _ in range(5):  # the batch may move on between our read and our write
            batch = await self.get(principal, batch_id)
            if batch.status is BatchStatus.CANCELLING:
                return batch
            transition(batch.status, BatchStatus.CANCELLING)
            if await self._batches.cancel_batch(batch_id, expected=batch.status, now=clock.now()):
                self._wake_worker()
                return await self.get(principal, batch_id)
        raise InvalidRequest("The batch changed while it was being cancelled; try again.")
