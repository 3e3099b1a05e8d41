"""Files: uploads streamed to blob storage, listing, download, deletion, each key's storage
quota and the deletion of expired files."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

from batchway.config import BatchLimits
from batchway.core import clock
from batchway.core.ids import new_id
from batchway.core.models import Page, Principal, StorageUse, StoredFile
from batchway.core.ports import BlobStore, BlobWriter, FileStore
from batchway.errors import InvalidRequest, NotFound, PayloadTooLarge, StorageQuotaExceeded

__all__ = [
    "BATCH_FILE_TTL",
    "MAX_EXPIRY",
    "MIN_EXPIRY",
    "UPLOAD_PURPOSES",
    "FileService",
    "Upload",
    "human_size",
]

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
    """A file being received: bytes go straight to blob storage as they arrive.

    ``room`` is what the key's storage quota had left when the upload began (None: no
    limit): an upload that outgrows it stops at once. The check that decides is made when
    the file is recorded (``FileService.finish``).
    """

    def __init__(
        self,
        file_id: str,
        writer: BlobWriter,
        limit: int,
        room: int | None = None,
        *,
        param: str = "file",
    ) -> None:
        self.file_id = file_id
        self._param = param
        self.size = 0
        self._writer = writer
        self._limit = limit
        self._room = room

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._limit:
            raise PayloadTooLarge(
                f"The file is larger than the {human_size(self._limit)} allowed.",
                param=self._param,
            )
        if self._room is not None and self.size > self._room:
            raise StorageQuotaExceeded(
                f"The file does not fit in the {human_size(self._room)} left in this key's "
                "storage quota. Delete files, or let them expire, to make room.",
                param=self._param,
            )
        await self._writer.write(data)

    async def commit(self) -> None:
        await self._writer.commit()

    async def abort(self) -> None:
        await self._writer.abort()


class FileService:
    """Owns file ids, purposes, expiry, size limits and storage quotas."""

    def __init__(self, store: FileStore, blobs: BlobStore, limits: BatchLimits) -> None:
        self._store = store
        self._blobs = blobs
        self._limits = limits

    def quota(self, principal: Principal) -> tuple[int | None, int | None]:
        """The bytes and number of live files ``principal`` may hold (None: no limit)."""
        max_bytes = principal.max_storage_bytes
        max_files = principal.max_files
        return (
            max_bytes if max_bytes is not None else self._limits.max_storage_bytes_per_key,
            max_files if max_files is not None else self._limits.max_files_per_key,
        )

    async def _room(self, principal: Principal, param: str) -> int | None:
        """The bytes left in the key's quota for one more file; raises if there is no room."""
        max_bytes, max_files = self.quota(principal)
        if max_bytes is None and max_files is None:
            return None
        use = await self._store.storage_use(principal.key_id, clock.now())
        if max_files is not None and use.files >= max_files:
            raise _over_quota(use, 0, max_bytes, max_files, param)
        if max_bytes is None:
            return None
        if use.bytes > max_bytes:
            raise _over_quota(use, 0, max_bytes, max_files, param)
        return max_bytes - use.bytes

    async def _record(self, principal: Principal, file: StoredFile, param: str) -> None:
        """Record a file whose blob is written, within the key's quota; on any failure the
        blob is deleted, so that nothing is left behind."""
        max_bytes, max_files = self.quota(principal)
        try:
            refused = await self._store.create_file_within(
                file, file.id, now=file.created_at, max_bytes=max_bytes, max_files=max_files
            )
        except BaseException:
            await self._blobs.delete(file.id)  # no blob without its record
            raise
        if refused is not None:
            await self._blobs.delete(file.id)
            raise _over_quota(refused, file.bytes, max_bytes, max_files, param)

    async def storage_use(self, principal: Principal) -> StorageUse:
        """What the key's live files take now."""
        return await self._store.storage_use(principal.key_id, clock.now())

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

    @staticmethod
    def check_expiry(expires_after: int | None) -> int | None:
        """``expires_after.seconds`` must lie in OpenAI's range (1 hour to 30 days)."""
        if expires_after is not None and not MIN_EXPIRY <= expires_after <= MAX_EXPIRY:
            raise InvalidRequest(
                f"expires_after.seconds must be between {MIN_EXPIRY} and {MAX_EXPIRY}.",
                param="expires_after",
            )
        return expires_after

    async def begin(self, principal: Principal, purpose: str | None = None) -> Upload:
        """Start receiving a file; with the purpose known early, its limit applies at once,
        and a key without room in its storage quota is refused before any byte is stored."""
        limit = self._limits.max_file_bytes
        if purpose == "batch":
            limit = self._limits.max_batch_file_bytes
        room = await self._room(principal, "file")
        file_id = new_id("file")
        return Upload(file_id, self._blobs.writer(file_id), limit, room)

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
            self.check_expiry(expires_after)
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
        await self._record(principal, file, "file")
        return file

    async def begin_inline(self, principal: Principal) -> Upload:
        """Start keeping requests that arrive inline (not as an upload) as a batch input
        file, so that every view of a batch has one. Its size follows from the body the
        requests came in, which is held to ``max_message_batch_bytes``; a key without room
        in its storage quota is refused at once, and the requests stop as soon as they
        outgrow the room left (a refusal names ``requests``)."""
        room = await self._room(principal, "requests")
        file_id = new_id("file")
        return Upload(file_id, self._blobs.writer(file_id), sys.maxsize, room, param="requests")

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
        await self._record(principal, file, "requests")
        return file

    async def delete_blob(self, blob_key: str) -> None:
        await self._blobs.delete(blob_key)

    async def get(self, principal: Principal, file_id: str) -> StoredFile:
        """A live file of the principal's key (any key's, for the admin)."""
        owner = None if principal.is_admin else principal.key_id
        file = await self._store.get_file(owner, file_id, clock.now())
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

    async def delete_expired(self, *, chunk: int) -> int:
        """Delete every file expired by now, ``chunk`` at a time; returns how many went.

        Each file's blob goes before its row: a sweep cut short leaves rows (hidden, as
        expired) whose blobs are gone, and the next sweep finishes them; never a blob that
        no row knows of. Several processes may sweep at once: both deletions are idempotent.
        """
        now = clock.now()
        removed = 0
        while True:
            expired = await self._store.expired_files(now, chunk)
            for _, blob_key in expired:
                await self._blobs.delete(blob_key)
            removed += await self._store.forget_expired_files([f for f, _ in expired], now)
            if len(expired) < chunk:
                return removed


def _over_quota(
    use: StorageUse, size: int, max_bytes: int | None, max_files: int | None, param: str
) -> StorageQuotaExceeded:
    """Why one more file of ``size`` bytes does not fit beside the key's files."""
    if max_files is not None and use.files + 1 > max_files:
        return StorageQuotaExceeded(
            f"This key already holds {use.files} files, the most its storage quota allows "
            f"({max_files}). Delete files, or let them expire, to make room.",
            param=param,
        )
    assert max_bytes is not None
    held = f"This key's files take {human_size(use.bytes)} of its {human_size(max_bytes)}"
    what = f"; {human_size(size)} more do not fit" if size else ""
    return StorageQuotaExceeded(
        f"{held} storage quota{what}. Delete files, or let them expire, to make room.",
        param=param,
    )
