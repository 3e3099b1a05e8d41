"""`MemoryBlobStore`: file contents in a dict, with the rules of
``batchway.store.blobs.LocalBlobStore``: a blob appears whole on ``commit`` (never half
written), an aborted one leaves nothing, keys are names without ``/`` or a leading dot, and
reading a missing blob raises ``FileNotFoundError``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from batchway.core.ports import BlobWriter
from batchway.testing.memory._tables import turn

__all__ = ["CHUNK", "MemoryBlobStore"]

CHUNK = 1 << 20  # chunks read back are as large as the local store's


def _checked(key: str) -> str:
    if not key or "/" in key or key.startswith("."):
        raise ValueError(f"bad blob key {key!r}")
    return key


class _MemoryWriter:
    def __init__(self, store: MemoryBlobStore, key: str) -> None:
        self._store = store
        self._key = key
        self._data = bytearray()
        self._open = True

    async def write(self, data: bytes) -> None:
        await turn()
        self._data += data

    async def commit(self) -> int:
        if not self._open:
            raise ValueError("commit of a blob that was committed or aborted already")
        await turn()
        self._open = False
        self._store.blobs[self._key] = bytes(self._data)
        return len(self._data)

    async def abort(self) -> None:
        self._open = False
        self._data = bytearray()


class MemoryBlobStore:
    """Blobs as bytes in memory; ``blobs`` maps each committed key to its contents."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def writer(self, key: str) -> BlobWriter:
        return _MemoryWriter(self, _checked(key))

    async def chunks(self, key: str) -> AsyncIterator[bytes]:
        await turn()
        data = self.blobs.get(_checked(key))
        if data is None:
            raise FileNotFoundError(f"no blob {key!r}")
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]

    async def delete(self, key: str) -> None:
        await turn()
        self.blobs.pop(_checked(key), None)
