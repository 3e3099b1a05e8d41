"""Creating, reading and cancelling batches: the service every dialect goes through."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Sequence
from typing import Any

import orjson

from batchway.config import BatchLimits
from batchway.core import clock
from batchway.core.budgets import BatchCostCheck, jsonl_lines
from batchway.core.endpoints import BATCH_ENDPOINTS, Endpoint
from batchway.core.engine.lifecycle import Lifecycle
from batchway.core.files import FileService, human_size
from batchway.core.ids import new_id
from batchway.core.keys import ADMIN
from batchway.core.models import Batch, BatchError, Page, Principal, RequestCounts
from batchway.core.ports import BatchStore, FileStore
from batchway.core.routing import Router
from batchway.core.states import BatchStatus
from batchway.core.validation import InputValidator, RefusedLine
from batchway.errors import (
    AuthError,
    GatewayError,
    InvalidRequest,
    InvalidTransition,
    NotFound,
    PayloadTooLarge,
)

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
        batches: BatchStore,
        files: FileStore,
        limits: BatchLimits,
        *,
        file_service: FileService,
        router: Router,
        wake_worker: Callable[[], None] = lambda: None,
        cost_check: BatchCostCheck | None = None,
    ) -> None:
        self._batches = batches
        self._lifecycle = Lifecycle(batches)
        self._files = files
        self._limits = limits
        self._file_service = file_service
        self._router = router
        self._wake_worker = wake_worker
        self._cost_check = cost_check

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
        normalized = Endpoint.parse(endpoint)
        if normalized is None:
            raise InvalidRequest(
                f"endpoint {endpoint!r} is not supported; use one of {', '.join(BATCH_ENDPOINTS)}.",
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
        if self._cost_check is not None and principal.budget_usd is not None:
            _, chunks = await self._file_service.content(principal, input_file_id)
            await self._cost_check.check(
                principal, normalized, jsonl_lines(chunks, self._limits.max_batch_line_bytes)
            )
        return await self._start(
            principal,
            batch_id=new_id("batch"),
            input_file_id=input_file_id,
            endpoint=normalized,
            metadata=checked_metadata,
            output_expires_after=output_expires_after,
        )

    async def create_inline(
        self,
        principal: Principal,
        requests: AsyncIterable[dict[str, Any] | RefusedLine],
        *,
        endpoint: str = Endpoint.MESSAGES,
        id_kind: str = "msgbatch",
        refuse: Callable[[Sequence[BatchError], int], GatewayError],
        shape: str | None = None,
    ) -> Batch:
        """A batch from requests sent in the body (``{custom_id, params}`` each).

        The requests are taken as they arrive, checked at once and written one a line to
        the batch's input file, so that no more than one is held at a time. Bad requests are
        refused with the dialect's ``refuse`` error for the problems found (all of them, up
        to a cap), and then nothing is kept. ``shape`` is kept on the batch for the routes
        (see ``Batch.shape``).
        """
        validator = InputValidator(
            endpoint=endpoint, router=self._router, principal=principal, limits=self._limits
        )
        priced = self._cost_check is not None and principal.budget_usd is not None
        cost = 0.0
        upload = await self._file_service.begin_inline(principal)
        try:
            number = 0
            async for request in requests:
                number += 1
                if isinstance(request, RefusedLine):
                    validator.check(number, request)
                    continue
                line = orjson.dumps(
                    {
                        "custom_id": request.get("custom_id"),
                        "method": "POST",
                        "url": endpoint,
                        "body": request.get("params"),
                    }
                )
                if validator.check(number, line) is not None and validator.ok:
                    await upload.write(line + b"\n")
                    if priced:
                        assert self._cost_check is not None
                        cost += self._cost_check.body_cost(endpoint, request.get("params"))
            validator.finish()
            if not validator.ok:
                raise refuse(validator.errors, validator.error_count)
            if priced:
                assert self._cost_check is not None
                await self._cost_check.check_cost(principal, cost)
        except BaseException:
            await upload.abort()
            raise
        batch_id = new_id(id_kind)
        file = await self._file_service.store_inline(
            principal, upload, filename=f"{batch_id}_requests.jsonl"
        )
        try:
            return await self._start(
                principal,
                batch_id=batch_id,
                input_file_id=file.id,
                endpoint=endpoint,
                metadata=None,
                output_expires_after=None,
                total=validator.requests,
                shape=shape,
            )
        except AuthError:  # the key was revoked meanwhile: keep nothing of the batch
            await self._file_service.delete(principal, file.id)
            raise

    async def _start(
        self,
        principal: Principal,
        *,
        batch_id: str,
        input_file_id: str,
        endpoint: str,
        metadata: dict[str, str] | None,
        output_expires_after: int | None,
        total: int = 0,
        shape: str | None = None,
    ) -> Batch:
        now = clock.now()
        batch = Batch(
            id=batch_id,
            owner=principal.key_id,
            endpoint=endpoint,
            input_file_id=input_file_id,
            completion_window="24h",
            status=BatchStatus.VALIDATING,
            created_at=now,
            expires_at=now + COMPLETION_WINDOW_SECONDS,
            metadata=metadata,
            output_expires_after=output_expires_after,
            counts=RequestCounts(total=total, processing=total),
            shape=shape,
        )
        if not await self._batches.create_batch(batch):
            # authenticated from a cache just before the key was revoked
            raise AuthError("This API key has been revoked.", code="invalid_api_key")
        self._wake_worker()
        return batch

    async def get(self, principal: Principal, batch_id: str) -> Batch:
        """A batch of the principal's key (any batch for the admin)."""
        owner = None if principal.is_admin else principal.key_id
        batch = await self._batches.get_batch(owner, batch_id)
        if batch is None:
            raise NotFound(f"No batch found with id '{batch_id}'.", param="batch_id")
        return batch

    async def list(
        self,
        principal: Principal,
        *,
        limit: int,
        after: str | None,
        before: str | None = None,
        max_limit: int = 100,
    ) -> Page[Batch]:
        """A key's batches, newest first: ``after`` pages to older ones, ``before`` to newer."""
        if not 1 <= limit <= max_limit:
            raise InvalidRequest(f"limit must be between 1 and {max_limit}.", param="limit")
        if after and before:
            raise InvalidRequest("Give at most one of after and before.", param="before")
        return await self._batches.list_batches(
            principal.key_id, limit=limit, after=after, before=before
        )

    async def delete(self, principal: Principal, batch_id: str) -> None:
        """Delete an ended batch, its lines and its result files."""
        batch = await self.get(principal, batch_id)
        if not batch.status.terminal:
            raise InvalidTransition(
                f"Batch {batch_id} is still {batch.status.value}; cancel it and wait for it to end."
            )
        for blob_key in await self._batches.delete_batch(batch_id):
            await self._file_service.delete_blob(blob_key)

    async def cancel(self, principal: Principal, batch_id: str) -> Batch:
        """Ask a batch to stop (any batch, for the admin). Lines not started end cancelled at
        once, lines in flight finish. Cancelling a batch that is already cancelling is a
        no-op; one that has ended (or is finalizing) is an ``InvalidTransition``."""
        for _ in range(5):  # the batch may move on between our read and our write
            batch = await self.get(principal, batch_id)
            if batch.status is BatchStatus.CANCELLING:
                return batch
            if await self._lifecycle.cancel(batch, clock.now()):
                self._wake_worker()
                return await self.get(principal, batch_id)
        raise InvalidRequest("The batch changed while it was being cancelled; try again.")

    async def cancel_owned(self, owner: str) -> int:
        """Cancel every batch of the key ``owner`` that has not ended, each as ``cancel``
        does. Returns how many began cancelling; a batch already finalizing, or that ends
        meanwhile, finishes as it would."""
        started = 0
        for batch_id in await self._batches.unfinished_batches(owner):
            try:
                before = await self.get(ADMIN, batch_id)
                if before.status is BatchStatus.CANCELLING:
                    continue
                await self.cancel(ADMIN, batch_id)
            except (InvalidTransition, NotFound):
                continue
            started += 1
        return started
