"""Files: uploads streamed to blob storage, listing, download and deletion."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

from batchway.config import BatchLimits
from batchway.core import clock
from batchway.core.ids import new_id
from batchway.core.models import Page, Principal, StoredFile
from batchway.errors import InvalidRequest, NotFound, PayloadTooLarge
from batchway.store.repository import BlobStore, BlobWriter, FileRepository

__all__ = ["BATCH_FILE_TTL", "UPLOAD_PURPOSES", "FileService", "Upload", "human_size"]

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
BATCH_FILE_TTL = 30 * 24 * 3600  # batch input and output files expire after 30 days
MIN_EXPIRY, MAX_EXPIRY = 3600, 30 * 24 * 3600


def human_size(size: int) -> str:
    """``200 MB``, ``1.5 MB``, ``800 bytes``: sizes in error messages (1 MB = 2**20 bytes)."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


class Upload:
    """A file being received: bytes go straight to blob storage as they arrive."""

    def __init__(self, file_id: str, writer: BlobWriter, limit: int) -> None:
        self.file_id = file_id
        self.size = 0
        self._writer = writer
        self._limit = limit

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._limit:
            raise PayloadTooLarge(
                f"The file is larger than the {human_size(self._limit)} allowed.", param="file"
            )
        await self._writer.write(data)

    async def commit(self) -> None:
        await self._writer.commit()

    async def abort(self) -> None:
        await self._writer.abort()


class FileService:
    """Owns file ids, purposes, expiry and size limits."""

    def __init__(self, store: FileRepository, blobs: BlobStore, limits: BatchLimits) -> None:
        self._store = store
        self._blobs = blobs
        self._limits = limits

    @staticmethod
    def check_purpose(purpose: str | None) -> str:
        if not purpose:
            raise InvalidRequest(
                "Missing required parameter: 'purpose'.",
                param="purpose",
                code="missing_required_parameter",
            )
        if purpose not in UPLOAD_PURPOSES:
            raise InvalidRequest(
                f"'{purpose}' is not a valid purpose; "
                f"expected one of {', '.join(UPLOAD_PURPOSES)}.",
                param="purpose",
            )
        return purpose

    def begin(self, purpose: str | None = None) -> Upload:
        """Start receiving a file; with the purpose known early, its limit applies at once."""
        limit = self._limits.max_file_bytes
        if purpose == "batch":
            limit = self._limits.max_batch_file_bytes
        file_id = new_id("file")
        return Upload(file_id, self._blobs.writer(file_id), limit)

    async def finish(
        self,
        principal: Principal,
        upload: Upload,
        *,
        filename: str,
        purpose: str | None,
        expires_after: int | None = None,
    ) -> StoredFile:
        """Check the upload as a whole and make it a file; aborts the upload on any error."""
        try:
            purpose = self.check_purpose(purpose)
            if purpose == "batch":
                if not filename.lower().endswith(".jsonl"):
                    raise InvalidRequest(
                        "Invalid file format for Batch API. Must be .jsonl", param="file"
                    )
                if upload.size > self._limits.max_batch_file_bytes:
                    raise PayloadTooLarge(
                        "Batch input files may be at most "
                        f"{human_size(self._limits.max_batch_file_bytes)}.",
                        param="file",
                    )
            if expires_after is not None and not MIN_EXPIRY <= expires_after <= MAX_EXPIRY:
                raise InvalidRequest(
                    f"expires_after.seconds must be between {MIN_EXPIRY} and {MAX_EXPIRY}.",
                    param="expires_after",
                )
        except Exception:
            await upload.abort()
            raise
        created = clock.now()
        if expires_after is None and purpose == "batch":
            expires_after = BATCH_FILE_TTL
        file = StoredFile(
            id=upload.file_id,
            owner=principal.key_id,
            filename=filename,
            purpose=purpose,
            bytes=upload.size,
            created_at=created,
            expires_at=created + expires_after if expires_after is not None else None,
        )
        await upload.commit()
        try:
            await self._store.create_file(file, upload.file_id)
        except BaseException:
            await self._blobs.delete(upload.file_id)  # no blob without its record
            raise
        return file

    def begin_inline(self) -> Upload:
        """Start keeping requests that arrive inline (not as an upload) as a batch input
        file, so that every view of a batch has one. Its size follows from the body the
        requests came in, which is held to ``max_message_batch_bytes``."""
        file_id = new_id("file")
        return Upload(file_id, self._blobs.writer(file_id), sys.maxsize)

    async def store_inline(
        self, principal: Principal, upload: Upload, *, filename: str
    ) -> StoredFile:
        """Make the requests written to ``upload`` a batch input file; aborts it on error."""
        try:
            await upload.commit()
        except BaseException:
            await upload.abort()
            raise
        created = clock.now()
        file = StoredFile(
            id=upload.file_id,
            owner=principal.key_id,
            filename=filename,
            purpose="batch",
            bytes=upload.size,
            created_at=created,
            expires_at=created + BATCH_FILE_TTL,
        )
        try:
            await self._store.create_file(file, upload.file_id)
        except BaseException:
            await self._blobs.delete(upload.file_id)
            raise
        return file

    async def delete_blob(self, blob_key: str) -> None:
        await self._blobs.delete(blob_key)

    async def get(self, principal: Principal, file_id: str) -> StoredFile:
        file = await self._store.get_file(principal.key_id, file_id, clock.now())
        if file is None:
            raise NotFound(f"No such File object: {file_id}", param="file_id")
        return file

    async def content(
        self, principal: Principal, file_id: str
    ) -> tuple[StoredFile, AsyncIterator[bytes]]:
        """A file and its bytes as a stream."""
        file = await self.get(principal, file_id)
        blob_key = await self._store.file_blob_key(file_id)
        if blob_key is None:
            raise NotFound(f"No such File object: {file_id}", param="file_id")
        return file, self._blobs.chunks(blob_key)

    async def list(
        self,
        principal: Principal,
        *,
        purpose: str | None,
        limit: int,
        after: str | None,
        order: str,
    ) -> Page[StoredFile]:
        if order not in ("asc", "desc"):
            raise InvalidRequest("order must be 'asc' or 'desc'.", param="order")
        if not 1 <= limit <= 10_000:
            raise InvalidRequest("limit must be between 1 and 10000.", param="limit")
        return await self._store.list_files(
            principal.key_id,
            clock.now(),
            purpose=purpose,
            limit=limit,
            after=after,
            ascending=order == "asc",
        )

    async def delete(self, principal: Principal, file_id: str) -> None:
        """Delete a file. A batch already running on it keeps its own copy of the lines."""
        blob_key = await self._store.delete_file(principal.key_id, file_id, clock.now())
        if blob_key is None:
            raise NotFound(f"No such File object: {file_id}", param="file_id")
        await self._blobs.delete(blob_key)
