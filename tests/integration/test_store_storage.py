"""The store's statements on what keys hold: files within a quota, the expiry sweep's
queries, batches refused for a revoked key, a key's unfinished batches. On SQLite and
PostgreSQL, with time passed in explicitly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from batchway.config import Config
from batchway.core.models import StorageUse
from batchway.core.states import BatchStatus
from batchway.store.migrate import migrate
from batchway.store.sql import SqlStore, create_engine
from tests.integration.test_store import DAY, NOW, new_batch, new_file, new_key


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    engine = create_engine(Config(database=database_url).async_database_url)
    await migrate(engine)
    sql_store = SqlStore(engine)
    try:
        yield sql_store
    finally:
        await sql_store.close()


async def test_storage_use_counts_live_files_of_the_key_only(store: SqlStore) -> None:
    key = new_key()
    await store.create_key(key)
    for file in (
        new_file(key.id, bytes=100),
        new_file(key.id, bytes=50, expires_at=NOW + 1),
        new_file(key.id, bytes=7, expires_at=NOW),  # expired at NOW
        new_file("key_someone_else", bytes=1000),
    ):
        await store.create_file(file, file.id)
    assert await store.storage_use(key.id, NOW) == StorageUse(bytes=150, files=2)
    assert await store.storage_use(key.id, NOW + 1) == StorageUse(bytes=100, files=1)
    assert await store.storage_use("key_nobody", NOW) == StorageUse()


async def test_create_file_within_inserts_only_what_fits(store: SqlStore) -> None:
    key = new_key()
    await store.create_key(key)
    first = new_file(key.id, bytes=600)
    assert (
        await store.create_file_within(first, first.id, now=NOW, max_bytes=1000, max_files=None)
        is None
    )
    too_big = new_file(key.id, bytes=401)
    refused = await store.create_file_within(
        too_big, too_big.id, now=NOW, max_bytes=1000, max_files=None
    )
    assert refused == StorageUse(bytes=600, files=1)
    assert await store.get_file(key.id, too_big.id, NOW) is None
    fits = new_file(key.id, bytes=400)
    assert (
        await store.create_file_within(fits, fits.id, now=NOW, max_bytes=1000, max_files=2) is None
    )
    one_more = new_file(key.id, bytes=0)
    assert await store.create_file_within(
        one_more, one_more.id, now=NOW, max_bytes=None, max_files=2
    ) == StorageUse(bytes=1000, files=2)
    unlimited = new_file(key.id, bytes=10**9)
    assert (
        await store.create_file_within(
            unlimited, unlimited.id, now=NOW, max_bytes=None, max_files=None
        )
        is None
    )


async def test_concurrent_inserts_of_one_key_are_checked_one_after_the_other(
    store: SqlStore,
) -> None:
    key = new_key()
    await store.create_key(key)
    files = [new_file(key.id, bytes=600) for _ in range(4)]
    outcomes = await asyncio.gather(
        *(store.create_file_within(f, f.id, now=NOW, max_bytes=1000, max_files=None) for f in files)
    )
    assert sum(outcome is None for outcome in outcomes) == 1
    assert await store.storage_use(key.id, NOW) == StorageUse(bytes=600, files=1)


async def test_the_sweep_finds_and_forgets_expired_files_only(store: SqlStore) -> None:
    old = new_file(expires_at=NOW - DAY)
    ending = new_file(expires_at=NOW)
    live = new_file(expires_at=NOW + 1)
    forever = new_file(expires_at=None)
    for file in (old, ending, live, forever):
        await store.create_file(file, f"blob-{file.id}")

    assert await store.expired_files(NOW, 10) == [
        (old.id, f"blob-{old.id}"),
        (ending.id, f"blob-{ending.id}"),
    ]
    assert await store.expired_files(NOW, 1) == [(old.id, f"blob-{old.id}")]
    # a live file named by mistake is kept
    assert await store.forget_expired_files([old.id, live.id], NOW) == 1
    assert await store.forget_expired_files([old.id], NOW) == 0  # already gone: harmless
    assert await store.forget_expired_files([], NOW) == 0
    assert await store.expired_files(NOW, 10) == [(ending.id, f"blob-{ending.id}")]
    assert await store.get_file(None, live.id, NOW) == live


async def test_a_batch_is_not_created_for_a_revoked_key(store: SqlStore) -> None:
    key = new_key()
    await store.create_key(key)
    assert await store.create_batch(new_batch(key.id)) is True
    await store.revoke_key(key.id)
    refused = new_batch(key.id)
    assert await store.create_batch(refused) is False
    assert await store.get_batch(None, refused.id) is None


async def test_unfinished_batches_of_a_key(store: SqlStore) -> None:
    key = new_key()
    await store.create_key(key)
    mine = [new_batch(key.id, status=status) for status in BatchStatus]
    for batch in [*mine, new_batch("key_other")]:
        await store.create_batch(batch)
    unfinished = {b.id for b in mine if not b.status.terminal}
    assert set(await store.unfinished_batches(key.id)) == unfinished
    assert len(unfinished) == 4  # validating, in_progress, finalizing, cancelling
