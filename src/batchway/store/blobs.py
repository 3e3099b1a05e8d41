"""File blobs: uploaded inputs and written results, streamed in and out in chunks.

A blob is written to a temporary name and renamed into place on ``commit``, so a reader
never sees half a file and an aborted upload leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from batchway.config import S3Config
from batchway.core.ports import BlobStore, BlobWriter
from batchway.errors import ConfigError

__all__ = ["LocalBlobStore", "open_blob_store"]

CHUNK = 1 << 20  # 1 MiB: large enough to amortise the thread hop, small enough to stay flat


class _LocalWriter:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in commit/abort
        self._buffer = bytearray()
        self._size = 0

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self._size += len(data)
        if len(self._buffer) >= CHUNK:
            await self._flush()

    async def _flush(self) -> None:
        if self._buffer:
            chunk, self._buffer = bytes(self._buffer), bytearray()
            await asyncio.to_thread(self._file.write, chunk)

    async def commit(self) -> int:
        await self._flush()
        await asyncio.to_thread(self._close_and_rename)
        return self._size

    def _close_and_rename(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self._path)

    async def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


class LocalBlobStore:
    """Blobs as files in one local folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"bad blob key {key!r}")
        return self.root / key

    def writer(self, key: str) -> BlobWriter:
        return _LocalWriter(self._path(key))

    async def chunks(self, key: str) -> AsyncIterator[bytes]:
        with open(self._path(key), "rb") as file:
            while chunk := await asyncio.to_thread(file.read, CHUNK):
                yield chunk

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def open_blob_store(location: str, s3: S3Config | None = None) -> BlobStore:
    """The blob store for the config's ``files`` setting: ``s3://bucket/prefix`` or a
    local folder."""
    if location.startswith("s3://"):
        # imported here: its client library costs ~5 MB of memory a folder never needs
        from batchway.store.blobs_s3 import S3BlobStore, parse_s3_location

        bucket, prefix = parse_s3_location(location)
        return S3BlobStore(bucket, prefix, s3 or S3Config())
    if "://" in location:
        raise ConfigError(f"files: {location!r} is not supported; give s3://… or a folder path")
    return LocalBlobStore(location)
