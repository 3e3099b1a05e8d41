"""The listing contract behind the console and the admin API: key updates, batches of every
key with filters and their figures, a batch's lines a page at a time, and single request
logs, on every implementation (SQLite, PostgreSQL, memory)."""

from __future__ import annotations

import pytest

from batchway.core.listings import BatchFilter, LineFilter
from batchway.core.models import RequestCounts, Usage
from batchway.core.ports import RequestLogs, Store
from batchway.core.states import BatchStatus, ItemState
from tests.contract.conftest import MakeBatch
from tests.contract.factories import (
    NOW,
    OTHER,
    OWNER,
    claim,
    everything,
    failed,
    line,
    new_items,
    new_key,
    succeeded,
)

# -- keys -----------------------------------------------------------------------------------


async def test_update_key_sets_and_clears_settings(store: Store) -> None:
    key = new_key(rpm=10, tpm=1000, budget_usd=5.0, models=("gpt-4o",))
    await store.create_key(key)

    updated = await store.update_key(
        key.id, {"name": "renamed", "rph": 100, "tpm": None, "models": ["a", "b"]}
    )

    assert updated is not None
    assert (updated.name, updated.rpm, updated.rph, updated.tpm) == ("renamed", 10, 100, None)
    assert updated.models == ("a", "b")
    assert updated.budget_usd == 5.0 and updated.key_hash == key.key_hash
    assert await store.get_key(key.id) == updated
    assert await store.key_by_hash(key.key_hash) == updated


async def test_update_key_of_no_key_is_none(store: Store) -> None:
    assert await store.update_key("key_unknown", {"rpm": 1}) is None


async def test_update_key_with_nothing_to_change_reads_the_key(store: Store) -> None:
    key = new_key()
    await store.create_key(key)
    assert await store.update_key(key.id, {}) == key


# -- batches of every key -------------------------------------------------------------------


async def test_find_batches_lists_every_key_newest_first_and_pages(
    store: Store, make_batch: MakeBatch
) -> None:
    made = [await make_batch(items=1, owner=OWNER if n % 2 else OTHER) for n in range(5)]

    first = await store.find_batches(BatchFilter(), limit=2, after=None)
    second = await store.find_batches(BatchFilter(), limit=2, after=first.items[-1].id)
    third = await store.find_batches(BatchFilter(), limit=2, after=second.items[-1].id)

    assert [b.id for b in first.items + second.items + third.items] == made[::-1]
    assert first.has_more and second.has_more and not third.has_more


async def test_find_batches_filters_by_owner_status_and_model(
    store: Store, make_batch: MakeBatch
) -> None:
    mine = await make_batch(items=new_items(2, model="small"))
    theirs = await make_batch(items=new_items(1, model="big"), owner=OTHER)
    waiting = await make_batch(items=new_items(1, model="big"), start=False)

    async def ids(**filters: object) -> list[str]:
        page = await store.find_batches(BatchFilter(**filters), limit=10, after=None)  # type: ignore[arg-type]
        return [b.id for b in page.items]

    assert await ids(owner=OWNER) == [waiting, mine]
    assert await ids(owner=OTHER) == [theirs]
    assert await ids(status=BatchStatus.VALIDATING) == [waiting]
    assert await ids(model="big") == [waiting, theirs]
    assert await ids(model="big", owner=OWNER, status=BatchStatus.IN_PROGRESS) == []
    assert await ids(model="none") == []


async def test_find_batches_counts_running_batches_from_their_lines(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=3)
    first, second, _ = await claim(store, "w1")
    await store.record_outcomes("w1", [succeeded(first), failed(second)], NOW)

    (batch,) = (await store.find_batches(BatchFilter(), limit=1, after=None)).items

    assert batch.id == batch_id
    assert batch.counts == RequestCounts(total=3, processing=1, succeeded=1, failed=1)


async def test_a_cursor_on_an_unknown_batch_starts_from_the_newest(
    store: Store, make_batch: MakeBatch
) -> None:
    newest = await make_batch(items=1)
    page = await store.find_batches(BatchFilter(), limit=5, after="batch_gone")
    assert [b.id for b in page.items] == [newest]


# -- figures and lines ----------------------------------------------------------------------


async def test_batch_figures_add_up_the_lines_of_each_batch(
    store: Store, make_batch: MakeBatch
) -> None:
    mixed = new_items(2, model="small") + new_items(1, model="big", first_line=3, provider="p2")
    one = await make_batch(items=mixed)
    two = await make_batch(items=1)
    empty = await make_batch(items=0)
    items = await claim(store, "w1") + await claim(store, "w1", provider="p2")
    lines_of_one = [i for i in items if i.batch_id == one]
    good, bad, _ = sorted(lines_of_one, key=lambda i: i.line)
    await store.record_outcomes(
        "w1",
        [succeeded(good, input_tokens=7, output_tokens=3), failed(bad, input_tokens=100)],
        NOW,
    )

    figures = await store.batch_figures([one, two, empty])

    assert set(figures) == {one, two}
    assert figures[one].counts == RequestCounts(total=3, processing=1, succeeded=1, failed=1)
    assert figures[one].usage == Usage(input_tokens=7, output_tokens=3)
    assert figures[one].models == ("big", "small")
    assert figures[one].providers == ("p2", "sim")
    assert figures[two].counts == RequestCounts(total=1, processing=1)
    assert await store.batch_figures([]) == {}


async def test_a_batch_given_up_keeps_what_its_lines_added_up_to(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=new_items(2, model="small") + new_items(1, first_line=3))
    first, *_ = await claim(store, "w1")
    await store.record_outcomes("w1", [succeeded(first, output_tokens=5)], NOW)

    assert await store.end_batch(
        batch_id,
        expected=BatchStatus.IN_PROGRESS,
        status=BatchStatus.FAILED,
        lines=ItemState.FAILED,
        values={"failed_at": NOW},
    )

    figures = (await store.batch_figures([batch_id]))[batch_id]
    assert figures.counts == RequestCounts(total=3, succeeded=1, failed=2)
    assert figures.usage == Usage(output_tokens=5)
    assert figures.models == ("gpt-4o", "small") and figures.providers == ("sim",)


async def test_list_lines_pages_in_input_order(store: Store, make_batch: MakeBatch) -> None:
    batch_id = await make_batch(items=5)

    first = await store.list_lines(batch_id, LineFilter(), limit=2, after_line=None)
    rest = await store.list_lines(batch_id, LineFilter(), limit=10, after_line=2)

    assert [v.line for v in first.items] == [1, 2] and first.has_more
    assert [v.line for v in rest.items] == [3, 4, 5] and not rest.has_more
    assert first.items[0].custom_id == "req-1"
    assert first.items[0].state is ItemState.PENDING and first.items[0].attempts == 0


async def test_list_lines_shows_results_and_filters(store: Store, make_batch: MakeBatch) -> None:
    batch_id = await make_batch(items=3)
    first, second, _ = await claim(store, "w1")
    await store.record_outcomes(
        "w1", [succeeded(first, input_tokens=2, output_tokens=1), failed(second)], NOW
    )

    failures = await store.list_lines(
        batch_id, LineFilter(state=ItemState.FAILED), limit=10, after_line=None
    )
    (view,) = failures.items
    assert (view.line, view.custom_id, view.status_code) == (2, "req-2", 400)
    assert (view.error_code, view.error_message) == ("invalid_request", "bad request")
    assert view.attempts == 1 and view.finished_at is not None
    (one,) = (
        await store.list_lines(batch_id, LineFilter(custom_id="req-1"), limit=10, after_line=None)
    ).items
    assert one.state is ItemState.SUCCEEDED and one.usage == Usage(input_tokens=2, output_tokens=1)
    assert one.id == first.id
    assert (
        await store.list_lines("batch_gone", LineFilter(), limit=5, after_line=None)
    ).items == []


# -- single logs ----------------------------------------------------------------------------


async def test_get_reads_one_log_with_its_bodies(logs: RequestLogs) -> None:
    await logs.insert([line(request_body=b"in", response_body=b"out"), line()])
    second, first = await everything(logs)
    read = await logs.get(first.id or 0)

    assert read is not None and read.request_body == b"in" and read.response_body == b"out"
    assert await logs.get(second.id or 0) == second
    assert await logs.get(10**9) is None


async def test_for_items_finds_the_logs_of_batch_lines(
    store: Store, logs: RequestLogs, make_batch: MakeBatch
) -> None:
    await make_batch(items=3)
    first, second, third = await claim(store, "w1")
    await store.record_outcomes("w1", [succeeded(first), failed(second)], NOW)

    found = await logs.for_items([first.id, second.id, third.id, "not-a-line"])

    assert set(found) == {first.id, second.id}
    assert found[first.id].status == "succeeded" and found[second.id].status == "failed"
    assert found[first.id].custom_id == "req-1"
    assert await logs.for_items([]) == {}


@pytest.mark.parametrize("ids", [["x"], ["-1"], [""]])
async def test_for_items_ignores_ids_that_name_no_line(logs: RequestLogs, ids: list[str]) -> None:
    assert await logs.for_items(ids) == {}
