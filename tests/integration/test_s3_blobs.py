"""The S3 blob store against a real S3-compatible server (moto's server mode on loopback):
what the blob contract cannot see — parts, the prefix, uploads left on the server."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from batchway.config import Config, S3Config, load_config
from batchway.errors import ConfigError
from batchway.providers.registry import KINDS
from batchway.store.blobs import LocalBlobStore, open_blob_store
from batchway.store.blobs_s3 import S3BlobStore, parse_s3_location
from tests.conftest import S3Bucket

PART = 5 << 20


def _store(bucket: S3Bucket, prefix: str = "team/files") -> S3BlobStore:
    return S3BlobStore(bucket.bucket, prefix, S3Config(**bucket.config(), part_size=PART))


def _object_keys(bucket: S3Bucket) -> list[str]:
    listing = httpx.get(f"{bucket.endpoint}/{bucket.bucket}?list-type=2").text
    return re.findall(r"<Key>([^<]+)</Key>", listing)


def _pending_uploads(bucket: S3Bucket) -> int:
    listing = httpx.get(f"{bucket.endpoint}/{bucket.bucket}?uploads").text
    return len(re.findall(r"<UploadId>", listing))


async def test_a_blob_larger_than_a_part_goes_up_in_parts_under_the_prefix(
    s3_bucket: S3Bucket,
) -> None:
    blobs = _store(s3_bucket)
    data = os.urandom(2 * PART + 12345)
    writer = blobs.writer("file-big")
    for start in range(0, len(data), 1 << 20):
        await writer.write(data[start : start + (1 << 20)])
    assert _object_keys(s3_bucket) == []  # not visible before the commit
    assert _pending_uploads(s3_bucket) == 1
    assert await writer.commit() == len(data)

    assert _object_keys(s3_bucket) == ["team/files/file-big"]
    assert _pending_uploads(s3_bucket) == 0
    assert b"".join([chunk async for chunk in blobs.chunks("file-big")]) == data


async def test_an_aborted_upload_leaves_no_parts_on_the_server(s3_bucket: S3Bucket) -> None:
    blobs = _store(s3_bucket)
    writer = blobs.writer("file-big")
    await writer.write(os.urandom(PART + 1))
    await writer.write(os.urandom(PART + 1))
    await writer.abort()

    assert _pending_uploads(s3_bucket) == 0
    assert _object_keys(s3_bucket) == []


async def test_an_unreachable_server_is_an_error_not_a_hang(s3_bucket: S3Bucket) -> None:
    config = S3Config(
        endpoint_url="http://127.0.0.1:9",
        access_key_id="x",
        secret_access_key="x",
        max_retries=1,
        timeout_seconds=2,
    )
    blobs = S3BlobStore(s3_bucket.bucket, "", config)
    with pytest.raises(Exception, match="(?i)connect|error"):
        await anext(blobs.chunks("file-1"))


@pytest.mark.parametrize(
    ("location", "bucket", "prefix"),
    [("s3://b1/", "b1", ""), ("s3://b1", "b1", ""), ("s3://b1/a/b/", "b1", "a/b")],
)
def test_an_s3_location(location: str, bucket: str, prefix: str) -> None:
    assert parse_s3_location(location) == (bucket, prefix)
    store = open_blob_store(location, S3Config(endpoint_url="http://127.0.0.1:9"))
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == (bucket, prefix)


@pytest.mark.parametrize("location", ["s3://", "s3:///prefix", "s3://b1/p?x=1", "gs://b1/p"])
def test_a_location_that_is_not_one(location: str) -> None:
    with pytest.raises(ConfigError, match="files"):
        open_blob_store(location)


def test_a_folder_is_a_local_store(tmp_path: Path) -> None:
    assert isinstance(open_blob_store(f"{tmp_path}/files"), LocalBlobStore)


def test_the_s3_section_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("S3_SECRET", "sekrit")
    path = tmp_path / "batchway.yaml"
    path.write_text(
        "files: s3://bucket/prefix\n"
        "s3: {endpoint_url: 'http://127.0.0.1:9000', secret_access_key: '${S3_SECRET}'}\n"
    )
    config: Config = load_config(path, kinds=KINDS)
    assert config.files == "s3://bucket/prefix"
    assert config.s3.secret_access_key == "sekrit"
    assert config.s3.part_size == 8 << 20
