"""File blobs on S3-compatible object storage (AWS S3, MinIO, R2, Ceph), through obstore.

Uploads go up in parts as they are written (``part_size`` held in memory per writer); the
object appears only when the upload completes, so a reader never sees half a file, and an
aborted upload is aborted on the server too. Reads stream the object a chunk at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import S3Store

from batchway.config import S3Config
from batchway.errors import ConfigError, StorageUnavailable

if TYPE_CHECKING:
    from obstore import AsyncWritableFile

__all__ = ["S3BlobStore", "parse_s3_location"]

CHUNK = 1 << 20


@contextmanager
def _reachable() -> Iterator[None]:
    """A failure to reach the storage (after obstore's own retries) as a 503 that names
    neither the endpoint nor the credentials; a missing object stays ``NotFoundError``."""
    try:
        yield
    except (NotFoundError, FileNotFoundError):
        raise
    except (BaseError, OSError) as exc:  # obstore raises a failed request as OSError
        raise StorageUnavailable(
            f"object storage is unavailable ({type(exc).__name__}); try again later"
        ) from exc


class _Aborted(Exception):
    """Handed to the writer's exit, which aborts a multipart upload instead of completing it."""


class _S3Writer:
    def __init__(self, store: S3Store, key: str, part_size: int) -> None:
        self._store = store
        self._key = key
        self._part_size = part_size
        self._file: AsyncWritableFile | None = None
        self._size = 0
        self._ended = False

    async def write(self, data: bytes) -> None:
        if self._ended:
            raise ValueError("the blob was already committed or aborted")
        if not data:
            return
        with _reachable():
            if self._file is None:
                self._file = obstore.open_writer_async(
                    self._store, self._key, buffer_size=self._part_size, max_concurrency=2
                )
                await self._file.__aenter__()
            await self._file.write(data)
        self._size += len(data)

    async def commit(self) -> int:
        if self._ended:
            raise ValueError("the blob was already committed or aborted")
        self._ended = True
        with _reachable():
            if self._file is None:
                await obstore.put_async(self._store, self._key, b"")
            else:
                await self._file.__aexit__(None, None, None)
        return self._size

    async def abort(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self._file is not None:
            # the writer's exit with an error aborts the multipart upload on the server
            await self._file.__aexit__(_Aborted, _Aborted(), None)


class S3BlobStore:
    """Blobs as objects under one bucket and prefix."""

    def __init__(self, bucket: str, prefix: str, config: S3Config) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._part_size = config.part_size
        self._store = S3Store(bucket, prefix=prefix or None, **_options(config))

    def _key(self, key: str) -> str:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"bad blob key {key!r}")
        return key

    def writer(self, key: str) -> _S3Writer:
        return _S3Writer(self._store, self._key(key), self._part_size)

    async def chunks(self, key: str) -> AsyncIterator[bytes]:
        try:
            with _reachable():
                result = await obstore.get_async(self._store, self._key(key))
        except NotFoundError as exc:
            raise FileNotFoundError(f"no blob {key!r}") from exc
        buffer = bytearray()
        parts = aiter(result.stream(min_chunk_size=CHUNK))
        while True:
            with _reachable():
                part = await anext(parts, None)
            if part is None:
                break
            buffer += part
            while len(buffer) >= CHUNK:
                yield bytes(buffer[:CHUNK])
                del buffer[:CHUNK]
        if buffer:
            yield bytes(buffer)

    async def delete(self, key: str) -> None:
        try:
            with _reachable():
                await obstore.delete_async(self._store, self._key(key))
        except NotFoundError:
            pass


def _options(config: S3Config) -> dict[str, Any]:
    """S3Store's keyword arguments; what the config leaves out comes from ``AWS_*``."""
    options: dict[str, Any] = {
        "region": config.region,
        "virtual_hosted_style_request": config.virtual_hosted_style,
        "client_options": {
            "timeout": timedelta(seconds=config.timeout_seconds),
            "allow_http": bool(config.endpoint_url and config.endpoint_url.startswith("http:")),
        },
        "retry_config": {
            "max_retries": config.max_retries,
            "retry_timeout": timedelta(seconds=config.timeout_seconds * (config.max_retries + 1)),
        },
    }
    for name, value in (
        ("endpoint", config.endpoint_url),
        ("access_key_id", config.access_key_id),
        ("secret_access_key", config.secret_access_key),
        ("session_token", config.session_token),
    ):
        if value:
            options[name] = value
    return options


def parse_s3_location(location: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix")``."""
    parts = urlsplit(location)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"files: {location!r} is not an s3://bucket/prefix location")
    return parts.netloc, parts.path.strip("/")
