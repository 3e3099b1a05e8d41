"""The ``BlobStore`` contract: file contents written, committed whole, read back in chunks
and deleted, on the disk (``LocalBlobStore`` in a temporary folder) and in memory
(``MemoryBlobStore``) and on S3 (``S3BlobStore``, against moto's server on loopback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchway.config import S3Config
from batchway.core.ports import BlobStore
from batchway.store.blobs import CHUNK, LocalBlobStore
from batchway.store.blobs_s3 import S3BlobStore
from batchway.testing.memory import MemoryBlobStore
from tests.conftest import S3Bucket


@pytest.fixture(params=["local", "memory", "s3"])
def blobs(request: pytest.FixtureRequest) -> BlobStore:
    if request.param == "memory":
        return MemoryBlobStore()
    if request.param == "s3":
        bucket: S3Bucket = request.getfixturevalue("s3_bucket")
        return S3BlobStore(bucket.bucket, "gateway/files", S3Config(**bucket.config()))
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return LocalBlobStore(tmp_path / "blobs")


async def read(blobs: BlobStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in blobs.chunks(key)])


async def put(blobs: BlobStore, key: str, *parts: bytes) -> int:
    writer = blobs.writer(key)
    for part in parts:
        await writer.write(part)
    return await writer.commit()


async def test_a_blob_is_written_in_parts_and_read_back(blobs: BlobStore) -> None:
    assert await put(blobs, "file-1", b"hello ", b"", b"world\n") == 12
    assert await read(blobs, "file-1") == b"hello world\n"


async def test_a_missing_blob_cannot_be_read(blobs: BlobStore) -> None:
    with pytest.raises(FileNotFoundError):
        await read(blobs, "file-missing")


async def test_a_blob_is_invisible_until_committed(blobs: BlobStore) -> None:
    writer = blobs.writer("file-1")
    await writer.write(b"half of it")
    with pytest.raises(FileNotFoundError):
        await read(blobs, "file-1")
    await writer.write(b", the rest")
    assert await writer.commit() == 20
    assert await read(blobs, "file-1") == b"half of it, the rest"


async def test_an_aborted_blob_leaves_nothing_and_keeps_what_was_there(blobs: BlobStore) -> None:
    writer = blobs.writer("file-new")
    await writer.write(b"never")
    await writer.abort()
    with pytest.raises(FileNotFoundError):
        await read(blobs, "file-new")

    await put(blobs, "file-old", b"kept")
    writer = blobs.writer("file-old")
    await writer.write(b"replacement")
    await writer.abort()
    await writer.abort()  # twice is harmless
    assert await read(blobs, "file-old") == b"kept"


async def test_a_writer_commits_once(blobs: BlobStore) -> None:
    writer = blobs.writer("file-1")
    await writer.write(b"data")
    await writer.commit()
    with pytest.raises(ValueError):
        await writer.commit()
    aborted = blobs.writer("file-2")
    await aborted.abort()
    with pytest.raises(ValueError):
        await aborted.commit()


async def test_a_commit_replaces_the_blob_whole(blobs: BlobStore) -> None:
    await put(blobs, "file-1", b"a" * 100)
    first, second = blobs.writer("file-1"), blobs.writer("file-1")
    await first.write(b"first")
    await second.write(b"second")
    await second.commit()
    assert await read(blobs, "file-1") == b"second"
    await first.commit()  # the last commit wins
    assert await read(blobs, "file-1") == b"first"


async def test_an_empty_blob(blobs: BlobStore) -> None:
    assert await put(blobs, "file-empty") == 0
    assert [chunk async for chunk in blobs.chunks("file-empty")] == []


async def test_a_large_blob_comes_back_in_chunks(blobs: BlobStore) -> None:
    data = bytes(range(256)) * (CHUNK // 256) * 2 + b"tail"
    assert await put(blobs, "file-big", data[:1000], data[1000:]) == len(data)

    chunks = [chunk async for chunk in blobs.chunks("file-big")]

    assert b"".join(chunks) == data
    assert [len(chunk) for chunk in chunks] == [CHUNK, CHUNK, 4]


async def test_a_reader_keeps_the_blob_it_started_reading(blobs: BlobStore) -> None:
    old = b"o" * (CHUNK + 10)
    await put(blobs, "file-1", old)
    reader = blobs.chunks("file-1")
    first = await anext(reader)

    await put(blobs, "file-1", b"new")
    rest = [chunk async for chunk in reader]

    assert first + b"".join(rest) == old
    assert await read(blobs, "file-1") == b"new"


async def test_delete(blobs: BlobStore) -> None:
    await put(blobs, "file-1", b"x")
    await put(blobs, "file-2", b"y")
    await blobs.delete("file-1")
    await blobs.delete("file-1")  # already gone: harmless
    await blobs.delete("file-never")
    with pytest.raises(FileNotFoundError):
        await read(blobs, "file-1")
    assert await read(blobs, "file-2") == b"y"


@pytest.mark.parametrize("key", ["", "a/b", "../up", ".hidden"])
async def test_a_key_is_a_plain_name(blobs: BlobStore, key: str) -> None:
    with pytest.raises(ValueError, match="bad blob key"):
        blobs.writer(key)
    with pytest.raises(ValueError, match="bad blob key"):
        await read(blobs, key)
    with pytest.raises(ValueError, match="bad blob key"):
        await blobs.delete(key)
