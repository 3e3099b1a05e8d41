"""The seams between the domain and storage: what ``core`` may ask of a store.

``SqlStore`` implements all of them; tests may pass anything that has these methods.
"""

from __future__ import annotations

from typing import Protocol

from batchway.core.models import ApiKey, Batch, Page, StorageUse, StoredFile
from batchway.core.states import BatchStatus
from batchway.store.blobs import BlobStore, BlobWriter

__all__ = ["BatchRepository", "BlobStore", "BlobWriter", "FileRepository", "KeyRepository"]


class KeyRepository(Protocol):
    """Gateway keys, found by the hash of the key."""

    async def create_key(self, key: ApiKey) -> None: ...
    async def key_by_hash(self, key_hash: str) -> ApiKey | None: ...
    async def get_key(self, key_id: str) -> ApiKey | None: ...
    async def list_keys(self) -> list[ApiKey]: ...
    async def revoke_key(self, key_id: str) -> bool: ...


class FileRepository(Protocol):
    """File records (their bytes live in a ``BlobStore``)."""

    async def create_file(self, file: StoredFile, blob_key: str) -> None: ...
    async def get_file(self, owner: str | None, file_id: str, now: int) -> StoredFile | None: ...
    async def file_blob_key(self, file_id: str) -> str | None: ...
    async def list_files(
        self,
        owner: str,
        now: int,
        *,
        purpose: str | None,
        limit: int,
        after: str | None,
        ascending: bool,
    ) -> Page[StoredFile]: ...
    async def delete_file(self, owner: str, file_id: str, now: int) -> str | None: ...
    async def storage_use(self, owner: str, now: int) -> StorageUse: ...
    async def create_file_within(
        self,
        file: StoredFile,
        blob_key: str,
        *,
        now: int,
        max_bytes: int | None,
        max_files: int | None,
    ) -> StorageUse | None:
        """Insert ``file`` if its owner's files fit within the limits with it; else change
        nothing and return what the owner's live files take."""
        ...

    async def expired_files(self, now: int, limit: int) -> list[tuple[str, str]]: ...
    async def forget_expired_files(self, file_ids: list[str], now: int) -> int: ...


class BatchRepository(Protocol):
    """Batches as clients see them (lines are the worker's business)."""

    async def create_batch(self, batch: Batch) -> bool:
        """Insert a batch, unless its key was revoked meanwhile (False then)."""
        ...

    async def unfinished_batches(self, owner: str) -> list[str]: ...
    async def get_batch(self, owner: str | None, batch_id: str) -> Batch | None: ...
    async def list_batches(
        self, owner: str, *, limit: int, after: str | None, before: str | None = None
    ) -> Page[Batch]: ...
    async def cancel_batch(self, batch_id: str, *, expected: BatchStatus, now: int) -> bool: ...
    async def delete_batch(self, batch_id: str) -> list[str]: ...
