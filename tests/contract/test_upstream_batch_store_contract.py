"""The ``UpstreamBatchStore`` contract: batches submitted to providers' native batch APIs
and the lines they carry, on every implementation (SQLite, PostgreSQL, memory)."""

from __future__ import annotations

import pytest

from batchway.core.models import UpstreamBatchRow
from batchway.core.ports import Store, UpstreamBatchStore
from batchway.core.states import BatchStatus, ItemState
from tests.contract.conftest import DUPLICATE, MakeBatch
from tests.contract.factories import NOW, claim, held, new_items, states

CHAT = "/v1/chat/completions"
WEEK = 7 * 24 * 3600  # how long an upstream batch holds its lines


async def open_batch(
    upstream: UpstreamBatchStore, upstream_id: str = "up_1", model: str = "gpt-4o"
) -> UpstreamBatchRow:
    """An upstream batch created now, as the worker that will prepare it sees it."""
    await upstream.create(
        upstream_id, provider="native", endpoint=CHAT, model=model, now=NOW, poll=30
    )
    (row,) = [r for r in await upstream.due("w1", NOW, 60) if r.id == upstream_id]
    return row


async def native_batch(make_batch: MakeBatch, count: int = 3, **fields: object) -> str:
    return await make_batch(new_items(count, provider="native"), native=("native",), **fields)


async def test_a_new_upstream_batch_is_due_at_once_and_leased(
    upstream: UpstreamBatchStore,
) -> None:
    row = await open_batch(upstream)

    assert row == UpstreamBatchRow(
        id="up_1",
        provider="native",
        endpoint=CHAT,
        model="gpt-4o",
        state="preparing",
        lines=0,
        upstream_file_id=None,
        upstream_batch_id=None,
        poll_interval=30,
        failures=0,
    )
    assert row.owner == "native:up_1"
    assert await upstream.due("w2", NOW + 60, 60) == []  # w1 holds it until NOW + 60
    assert [r.id for r in await upstream.due("w1", NOW + 1, 60)] == ["up_1"]  # renewed
    assert [r.id for r in await upstream.due("w2", NOW + 61.5, 60)] == ["up_1"]
    assert await upstream.next_due() == NOW


async def test_an_upstream_batch_id_is_unique(upstream: UpstreamBatchStore) -> None:
    await open_batch(upstream)
    with pytest.raises(DUPLICATE):
        await upstream.create("up_1", provider="x", endpoint=CHAT, model="m", now=NOW, poll=1)


async def test_update_decides_when_it_is_due_again(upstream: UpstreamBatchStore) -> None:
    await open_batch(upstream, "up_1")
    await open_batch(upstream, "up_2")
    await upstream.update(
        "up_1",
        state="submitted",
        upstream_batch_id="batch_abc",
        upstream_file_id="file_abc",
        upstream_status="validating",
        next_poll_at=NOW + 10,
        poll_interval=60,
        failures=2,
        lease_owner=None,
    )
    await upstream.update("up_2", state="collected", lease_owner=None)
    await upstream.update("up_unknown", state="collected")  # nothing to update: harmless

    assert await upstream.due("w2", NOW + 9, 60) == []
    assert await upstream.next_due() == NOW + 10
    (row,) = await upstream.due("w2", NOW + 10, 60)
    assert (row.id, row.state, row.upstream_batch_id, row.upstream_file_id) == (
        "up_1",
        "submitted",
        "batch_abc",
        "file_abc",
    )
    assert (row.poll_interval, row.failures) == (60, 2)
    await upstream.update("up_1", state="collected")
    assert await upstream.next_due() is None
    assert await upstream.due("w3", NOW + 1000, 60) == []


async def test_groups_waiting_are_the_native_lines_that_may_run(
    store: Store, upstream: UpstreamBatchStore, make_batch: MakeBatch
) -> None:
    mixed = [
        *new_items(2, provider="native", model="gpt-4o"),
        *new_items(1, provider="native", first_line=3, model="gpt-4o-mini"),
        *new_items(1, provider="other", first_line=4, model="m"),
    ]
    await make_batch(mixed, native=("native", "other"))
    await make_batch(new_items(1, provider="native", model="as-calls"))  # runs as calls
    await make_batch(new_items(1, provider="native", model="unstarted"), start=False)
    await make_batch(
        new_items(1, provider="native", model="embed"), native=("native",), endpoint="/v1/emb"
    )

    groups = await upstream.groups_waiting("native", NOW)

    assert sorted(groups) == [
        ("/v1/chat/completions", "gpt-4o"),
        ("/v1/chat/completions", "gpt-4o-mini"),
        ("/v1/emb", "embed"),
    ]
    assert await upstream.groups_waiting("nobody", NOW) == []


async def test_claim_lines_takes_lines_of_its_model_for_a_week(
    store: Store, upstream: UpstreamBatchStore, make_batch: MakeBatch
) -> None:
    batch_id = await native_batch(make_batch, 3)
    row = await open_batch(upstream)

    items = await upstream.claim_lines(row, 2, 10**6, NOW)

    assert [(i.line, i.attempts, i.endpoint) for i in items] == [(1, 1, CHAT), (2, 1, CHAT)]
    assert list(await held(store, row.owner, batch_id)) == [i.id for i in items]
    (again,) = await upstream.due("w1", NOW, 60)
    assert again.lines == 2
    assert await upstream.groups_waiting("native", NOW) == [(CHAT, "gpt-4o")]  # line 3
    assert await store.release_expired_leases(NOW + WEEK - 1) == 0
    assert await store.release_expired_leases(NOW + WEEK + 1) == 2


async def test_claim_lines_keeps_within_max_bytes_and_gives_the_rest_back(
    store: Store, upstream: UpstreamBatchStore, make_batch: MakeBatch
) -> None:
    batch_id = await native_batch(make_batch, 3)
    row = await open_batch(upstream)
    line_size = len(new_items(1)[0].body) + 200  # a body and its envelope

    items = await upstream.claim_lines(row, 10, 2 * line_size, NOW)

    assert [i.line for i in items] == [1, 2]
    assert await states(store, batch_id) == [ItemState.LEASED] * 2 + [ItemState.PENDING]
    (rest,) = await store.claim_items("native:up_2", "native", 10, NOW, 30, execute=False)
    assert (rest.line, rest.attempts) == (3, 1)  # the claim it was given back from not counted


async def test_a_line_larger_than_max_bytes_goes_alone(
    upstream: UpstreamBatchStore, make_batch: MakeBatch
) -> None:
    await native_batch(make_batch, 2)
    row = await open_batch(upstream)

    assert [i.line for i in await upstream.claim_lines(row, 10, 1, NOW)] == [1]


async def test_claim_lines_with_nothing_to_claim_deletes_the_upstream_batch(
    upstream: UpstreamBatchStore, make_batch: MakeBatch
) -> None:
    await make_batch(new_items(2, provider="native"))  # lines run as calls only
    row = await open_batch(upstream)

    assert await upstream.claim_lines(row, 10, 10**6, NOW) == []
    assert await upstream.next_due() is None
    assert await upstream.due("w1", NOW + 100, 60) == []


async def test_lines_are_what_an_upstream_batch_carries(
    store: Store, upstream: UpstreamBatchStore, make_batch: MakeBatch
) -> None:
    await native_batch(make_batch, 3)
    row = await open_batch(upstream)
    claimed = await upstream.claim_lines(row, 2, 10**6, NOW)

    carried = await upstream.lines(row)

    assert [(i.id, i.line, i.custom_id, i.body, i.attempts) for i in carried] == [
        (i.id, i.line, i.custom_id, i.body, i.attempts) for i in claimed
    ]
    assert {(i.endpoint, i.provider) for i in carried} == {(CHAT, "native")}
    other = await open_batch(upstream, "up_other")
    assert await upstream.lines(other) == []


async def test_stopping_batches_and_carries_only(
    store: Store, upstream: UpstreamBatchStore, make_batch: MakeBatch
) -> None:
    one = await native_batch(make_batch, 1)
    two = await native_batch(make_batch, 1)
    row = await open_batch(upstream)
    await upstream.claim_lines(row, 10, 10**6, NOW)

    assert await upstream.stopping_batches(row) == set()
    assert await store.cancel_batch(one, expected=BatchStatus.IN_PROGRESS, now=NOW)
    assert await upstream.stopping_batches(row) == {one}
    assert not await upstream.carries_only(row, {one})
    assert await upstream.carries_only(row, {one, two})
    assert not await upstream.carries_only(row, set())


async def test_release_hands_the_lines_back_to_run_as_calls(
    store: Store, upstream: UpstreamBatchStore, make_batch: MakeBatch
) -> None:
    batch_id = await native_batch(make_batch, 2)
    row = await open_batch(upstream)
    await upstream.claim_lines(row, 10, 10**6, NOW)

    await upstream.release(row, execute=True, now=NOW + 5)

    assert await states(store, batch_id) == [ItemState.PENDING] * 2
    assert await upstream.lines(row) == []
    assert await upstream.groups_waiting("native", NOW + 5) == []  # no longer native lines
    assert await claim(store, provider="native", now=NOW + 4) == []  # not before NOW + 5
    again = await claim(store, provider="native", now=NOW + 5)
    assert [(i.line, i.attempts) for i in again] == [(1, 2), (2, 2)]


async def test_release_without_execute_leaves_them_for_another_upstream_batch(
    store: Store, upstream: UpstreamBatchStore, make_batch: MakeBatch
) -> None:
    await native_batch(make_batch, 2)
    row = await open_batch(upstream)
    await upstream.claim_lines(row, 10, 10**6, NOW)

    await upstream.release(row, execute=False, now=NOW)

    assert await upstream.groups_waiting("native", NOW) == [(CHAT, "gpt-4o")]
    assert await claim(store, provider="native") == []


async def test_batch_states_tell_each_lines_client_batch(
    store: Store, upstream: UpstreamBatchStore, make_batch: MakeBatch
) -> None:
    running = await native_batch(make_batch, 1)
    cancelled = await native_batch(make_batch, 1)
    assert await store.cancel_batch(cancelled, expected=BatchStatus.IN_PROGRESS, now=NOW)
    row = await open_batch(upstream)
    (item,) = await upstream.claim_lines(row, 10, 10**6, NOW)
    (other,) = [r async for r in store.item_results(cancelled)]

    found = await upstream.batch_states([item.id, str(other.id), "999999"])

    assert found == {item.id: ("in_progress", None), str(other.id): ("cancelling", "cancelled")}
    assert item.batch_id == running


async def test_a_stopping_worker_hands_back_its_upstream_batches(
    store: Store, upstream: UpstreamBatchStore
) -> None:
    await open_batch(upstream)  # leased to w1 for a minute

    await store.release_worker("w1")

    assert [r.id for r in await upstream.due("w2", NOW, 60)] == ["up_1"]
