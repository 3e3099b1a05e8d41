"""The ``KeyStore`` and ``FileStore`` contract: keys, files, storage quotas and the expiry
sweep, on every implementation (SQLite, PostgreSQL, memory)."""

from __future__ import annotations

import asyncio

import pytest

from batchway.core.models import StorageUse
from batchway.core.ports import Store
from batchway.core.states import BatchStatus
from tests.contract.conftest import DUPLICATE
from tests.contract.factories import DAY, NOW, OTHER, OWNER, new_batch, new_file, new_key

# -- keys -----------------------------------------------------------------------------------


async def test_keys_are_found_by_hash_and_id_and_listed_oldest_first(store: Store) -> None:
    full = new_key(models=("gpt-4o", "claude"), rpm=60, tpm=10_000, budget_usd=12.5)
    bare = new_key(created_at=NOW - 1)  # older, though stored second
    await store.create_key(full)
    await store.create_key(bare)

    assert await store.key_by_hash(full.key_hash) == full
    assert await store.get_key(bare.id) == bare
    assert await store.key_by_hash("0" * 64) is None
    assert await store.get_key("key_unknown") is None
    assert [k.id for k in await store.list_keys()] == [bare.id, full.id]


async def test_every_key_field_is_kept(store: Store) -> None:
    key = new_key(
        models=(),
        rpm=1,
        tpm=2,
        tph=3,
        rph=4,
        budget_usd=0.5,
        budget_period="month",
        max_storage_bytes=10**12,
        max_files=7,
    )
    await store.create_key(key)
    assert await store.get_key(key.id) == key


async def test_a_key_hash_is_unique(store: Store) -> None:
    key = new_key()
    await store.create_key(key)
    with pytest.raises(DUPLICATE):
        await store.create_key(new_key(key_hash=key.key_hash))
    assert [k.id for k in await store.list_keys()] == [key.id]


async def test_revoke_key(store: Store) -> None:
    key = new_key()
    other = new_key()
    await store.create_key(key)
    await store.create_key(other)

    assert await store.revoke_key(key.id) is True
    revoked = await store.key_by_hash(key.key_hash)
    assert revoked is not None and revoked.revoked
    untouched = await store.get_key(other.id)
    assert untouched is not None and not untouched.revoked
    assert await store.revoke_key("key_unknown") is False


# -- files ----------------------------------------------------------------------------------


async def test_file_round_trip(store: Store) -> None:
    file = new_file(expires_at=NOW + DAY, purpose="batch_output", status="processed")
    await store.create_file(file, "blob/one")

    assert await store.get_file(OWNER, file.id, NOW) == file
    assert await store.get_file(None, file.id, NOW) == file  # internal reads see every owner
    assert await store.file_blob_key(file.id) == "blob/one"
    assert await store.get_file(OWNER, "file-unknown", NOW) is None
    assert await store.file_blob_key("file-unknown") is None


async def test_a_file_id_is_unique(store: Store) -> None:
    file = new_file()
    await store.create_file(file, "blob/first")
    with pytest.raises(DUPLICATE):
        await store.create_file(new_file(id=file.id), "blob/second")
    assert await store.file_blob_key(file.id) == "blob/first"


async def test_list_files_pages_newest_first_by_default(store: Store) -> None:
    ids = []
    for _ in range(5):
        file = new_file()
        await store.create_file(file, file.id)
        ids.append(file.id)
    newest_first = ids[::-1]

    async def page(after: str | None, limit: int = 2) -> tuple[list[str], bool]:
        result = await store.list_files(
            OWNER, NOW, purpose=None, limit=limit, after=after, ascending=False
        )
        return [f.id for f in result.items], result.has_more

    assert await page(None) == (newest_first[:2], True)
    assert await page(newest_first[1]) == (newest_first[2:4], True)
    assert await page(newest_first[3]) == (newest_first[4:], False)
    assert await page(None, limit=5) == (newest_first, False)
    assert await page(None, limit=10) == (newest_first, False)


async def test_list_files_ascending(store: Store) -> None:
    ids = []
    for _ in range(4):
        file = new_file()
        await store.create_file(file, file.id)
        ids.append(file.id)

    first = await store.list_files(OWNER, NOW, purpose=None, limit=3, after=None, ascending=True)
    assert [f.id for f in first.items] == ids[:3] and first.has_more
    rest = await store.list_files(OWNER, NOW, purpose=None, limit=3, after=ids[2], ascending=True)
    assert [f.id for f in rest.items] == ids[3:] and not rest.has_more


async def test_a_cursor_on_a_file_that_expired_since_still_pages_on(store: Store) -> None:
    first, ending, last = new_file(), new_file(expires_at=NOW + 1), new_file()
    for file in (first, ending, last):
        await store.create_file(file, file.id)

    later = await store.list_files(
        OWNER, NOW + 1, purpose=None, limit=10, after=ending.id, ascending=True
    )
    assert [f.id for f in later.items] == [last.id]


async def test_list_files_filters_by_purpose(store: Store) -> None:
    inputs = [new_file(purpose="batch") for _ in range(2)]
    output = new_file(purpose="batch_output")
    for file in [*inputs, output]:
        await store.create_file(file, file.id)

    listed = await store.list_files(
        OWNER, NOW, purpose="batch", limit=10, after=None, ascending=True
    )
    assert [f.id for f in listed.items] == [f.id for f in inputs]
    listed = await store.list_files(
        OWNER, NOW, purpose="batch_output", limit=10, after=None, ascending=True
    )
    assert [f.id for f in listed.items] == [output.id]


async def test_another_owner_sees_none_of_the_files(store: Store) -> None:
    file = new_file(OWNER)
    await store.create_file(file, "blob/mine")

    assert await store.get_file(OTHER, file.id, NOW) is None
    listed = await store.list_files(OTHER, NOW, purpose=None, limit=10, after=None, ascending=True)
    assert listed.items == [] and not listed.has_more
    # a cursor naming someone else's file does not leak it either
    listed = await store.list_files(
        OTHER, NOW, purpose=None, limit=10, after=file.id, ascending=False
    )
    assert listed.items == []
    assert await store.delete_file(OTHER, file.id, NOW) is None
    assert await store.get_file(OWNER, file.id, NOW) == file


async def test_expired_files_are_hidden_from_get_list_and_delete(store: Store) -> None:
    gone = new_file(expires_at=NOW - 1)
    ending = new_file(expires_at=NOW)  # expiry is exclusive: at NOW it is gone
    alive = new_file(expires_at=NOW + 1)
    forever = new_file(expires_at=None)
    for file in (gone, ending, alive, forever):
        await store.create_file(file, file.id)

    for file in (gone, ending):
        assert await store.get_file(OWNER, file.id, NOW) is None
        assert await store.get_file(None, file.id, NOW) is None
        assert await store.delete_file(OWNER, file.id, NOW) is None
    assert await store.get_file(OWNER, alive.id, NOW) == alive
    listed = await store.list_files(OWNER, NOW, purpose=None, limit=10, after=None, ascending=True)
    assert [f.id for f in listed.items] == [alive.id, forever.id]
    later = await store.list_files(
        OWNER, NOW + 1, purpose=None, limit=10, after=None, ascending=True
    )
    assert [f.id for f in later.items] == [forever.id]
    # an expired file's blob key is still known, for the sweep to delete the blob
    assert await store.file_blob_key(gone.id) == gone.id


async def test_delete_file_returns_the_blob_key_once(store: Store) -> None:
    file = new_file()
    keep = new_file()
    await store.create_file(file, "blob/delete-me")
    await store.create_file(keep, "blob/keep")

    assert await store.delete_file(OWNER, file.id, NOW) == "blob/delete-me"
    assert await store.delete_file(OWNER, file.id, NOW) is None
    assert await store.get_file(OWNER, file.id, NOW) is None
    assert await store.file_blob_key(file.id) is None
    assert await store.get_file(OWNER, keep.id, NOW) == keep


# -- storage quotas -------------------------------------------------------------------------


async def test_storage_use_counts_live_files_of_the_key_only(store: Store) -> None:
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


async def test_create_file_within_inserts_only_what_fits(store: Store) -> None:
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


async def test_expired_files_leave_room_within_a_quota(store: Store) -> None:
    key = new_key()
    await store.create_key(key)
    old = new_file(key.id, bytes=900, expires_at=NOW)
    await store.create_file(old, old.id)
    new = new_file(key.id, bytes=900)
    assert await store.create_file_within(new, new.id, now=NOW, max_bytes=1000, max_files=1) is None
    assert await store.storage_use(key.id, NOW) == StorageUse(bytes=900, files=1)


async def test_concurrent_inserts_of_one_key_are_checked_one_after_the_other(
    store: Store,
) -> None:
    key = new_key()
    await store.create_key(key)
    files = [new_file(key.id, bytes=600) for _ in range(4)]
    outcomes = await asyncio.gather(
        *(store.create_file_within(f, f.id, now=NOW, max_bytes=1000, max_files=None) for f in files)
    )
    assert sum(outcome is None for outcome in outcomes) == 1
    assert await store.storage_use(key.id, NOW) == StorageUse(bytes=600, files=1)


# -- the expiry sweep -----------------------------------------------------------------------


async def test_the_sweep_finds_and_forgets_expired_files_only(store: Store) -> None:
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


# -- what keys own --------------------------------------------------------------------------


async def test_a_batch_is_not_created_for_a_revoked_key(store: Store) -> None:
    key = new_key()
    await store.create_key(key)
    assert await store.create_batch(new_batch(key.id)) is True
    await store.revoke_key(key.id)
    refused = new_batch(key.id)
    assert await store.create_batch(refused) is False
    assert await store.get_batch(None, refused.id) is None


async def test_unfinished_batches_of_a_key(store: Store) -> None:
    key = new_key()
    await store.create_key(key)
    mine = [new_batch(key.id, status=status) for status in BatchStatus]
    for batch in [*mine, new_batch("key_other")]:
        await store.create_batch(batch)
    unfinished = [b.id for b in mine if not b.status.terminal]
    assert await store.unfinished_batches(key.id) == unfinished  # oldest first
    assert len(unfinished) == 4  # validating, in_progress, finalizing, cancelling
