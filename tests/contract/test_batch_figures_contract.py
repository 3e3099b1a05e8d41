"""The figures a batch keeps on its row while it runs (``batch_figures``): after every way
its lines change — stored, recorded (once, under their lease), retried, handed back by a
dead worker, failed unrecorded, cancelled, expired, cleared — they equal what its lines add
up to, on every implementation (SQLite, PostgreSQL, memory)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from batchway.core.listings import BatchFigures, LineFilter, counts_from_states
from batchway.core.models import BatchItem, LineRecord, RequestCounts, Usage
from batchway.core.ports import RequestLogs, Store
from batchway.core.states import BatchStatus, ItemState
from tests.contract.conftest import DUPLICATE, MakeBatch
from tests.contract.factories import (
    NOW,
    claim,
    failed,
    line,
    new_items,
    retry,
    succeeded,
)


def priced(record: LineRecord, cost_usd: float) -> LineRecord:
    return replace(record, cost_usd=cost_usd)


async def from_lines(store: Store, batch_id: str) -> BatchFigures:
    """The figures added up from the batch's lines as the store lists them."""
    views, after = [], None
    while True:
        page = await store.list_lines(batch_id, LineFilter(), limit=100, after_line=after)
        views += page.items
        if not page.has_more:
            break
        after = page.items[-1].line
    by_state: dict[str, int] = {}
    for view in views:
        by_state[view.state] = by_state.get(view.state, 0) + 1
    done = [v.usage for v in views if v.state is ItemState.SUCCEEDED]
    return BatchFigures(
        counts=counts_from_states(len(views), by_state),
        usage=Usage(
            input_tokens=sum(u.input_tokens for u in done),
            cached_tokens=sum(u.cached_tokens for u in done),
            output_tokens=sum(u.output_tokens for u in done),
            reasoning_tokens=sum(u.reasoning_tokens for u in done),
        ),
        cost_usd=sum(v.cost_usd for v in views),
        models=tuple(sorted({v.model for v in views})),
        providers=tuple(sorted({v.provider for v in views})),
    )


async def assert_kept(store: Store, *batch_ids: str) -> dict[str, BatchFigures]:
    figures = await store.batch_figures(list(batch_ids))
    for batch_id in batch_ids:
        assert figures[batch_id] == await from_lines(store, batch_id), batch_id
    return figures


async def test_records_add_up_per_batch_with_retries_and_repeats(
    store: Store, make_batch: MakeBatch
) -> None:
    mixed = new_items(3, model="small") + new_items(2, model="big", first_line=4, provider="p2")
    one = await make_batch(items=mixed)
    two = await make_batch(items=3)
    items = await claim(store, "w1") + await claim(store, "w1", provider="p2")
    a1, a2, a3, a4, a5 = sorted((i for i in items if i.batch_id == one), key=lambda i: i.line)
    b1, b2, b3 = sorted((i for i in items if i.batch_id == two), key=lambda i: i.line)

    await store.record_outcomes(
        "w1",
        [
            priced(succeeded(a1, input_tokens=7, cached_tokens=2, output_tokens=3), 0.25),
            failed(a2, input_tokens=100),
            retry(a3, NOW + 60),
            priced(succeeded(b1, output_tokens=5, reasoning_tokens=4), 0.5),
            # a line named twice in one call is written once: the first time
            replace(succeeded(b2, output_tokens=1), cost_usd=0.125, log=None),
            replace(succeeded(b2, output_tokens=50), cost_usd=8.0, log=None),
        ],
        NOW,
    )
    figures = await assert_kept(store, one, two)
    assert figures[one].counts == RequestCounts(total=5, processing=3, succeeded=1, failed=1)
    assert figures[one].usage == Usage(input_tokens=7, cached_tokens=2, output_tokens=3)
    assert figures[one].cost_usd == 0.25
    assert (figures[one].models, figures[one].providers) == (("big", "small"), ("p2", "sim"))
    assert figures[two].cost_usd == 0.625

    # recorded again (as a recorder retrying a write would): nothing is held, nothing added
    assert await store.record_outcomes("w1", [priced(succeeded(a1), 0.25)], NOW) == []
    (again,) = await claim(store, "w1", now=NOW + 61)
    assert again.id == a3.id
    await store.record_outcomes(
        "w1",
        [priced(succeeded(again, input_tokens=1), 1.0), failed(a4), failed(a5), failed(b3)],
        NOW + 62,
    )
    figures = await assert_kept(store, one, two)
    assert figures[one].counts == RequestCounts(total=5, succeeded=2, failed=3)
    assert figures[one].cost_usd == 1.25


async def test_a_line_recorded_once_across_a_lost_lease(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=4)
    lost, *_ = await claim(store, "slow", now=NOW, lease=5)
    assert await store.release_expired_leases(NOW + 6) == 4
    taken = {i.id: i for i in await claim(store, "fast", now=NOW + 6, lease=5)}

    # the dead worker's result comes too late: it is not counted, before or after the new
    # holder records the line
    assert await store.record_outcomes("slow", [priced(succeeded(lost), 9.0)], NOW + 7) == []
    await store.record_outcomes(
        "fast", [priced(succeeded(taken[lost.id], output_tokens=3), 0.5)], NOW + 8
    )
    assert await store.record_outcomes("slow", [priced(succeeded(lost), 9.0)], NOW + 9) == []
    figures = await assert_kept(store, batch_id)
    assert figures[batch_id].counts == RequestCounts(total=4, processing=3, succeeded=1)
    assert figures[batch_id].cost_usd == 0.5

    # lines whose workers keep dying fail; one whose result the database refuses too
    assert await store.release_expired_leases(NOW + 20, max_attempts=3) == 3
    await claim(store, "w3", limit=1, now=NOW + 20, lease=5)
    await claim(store, "w4", limit=1, now=NOW + 20, lease=5)
    assert await store.release_expired_leases(NOW + 30, max_attempts=3) == 0
    (last,) = await claim(store, "w5", now=NOW + 30)
    assert await store.fail_unrecorded("w5", last.id, "refused", NOW + 31)
    assert not await store.fail_unrecorded("w5", last.id, "refused", NOW + 31)
    figures = await assert_kept(store, batch_id)
    assert figures[batch_id].counts == RequestCounts(total=4, succeeded=1, failed=3)


async def test_a_record_refused_adds_nothing(
    store: Store, logs: RequestLogs, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=2)
    first, second = await claim(store, "w1")
    await logs.insert([line(item_id=int(second.id))])  # logged already, somehow
    before = await assert_kept(store, batch_id)

    with pytest.raises(DUPLICATE):
        await store.record_outcomes(
            "w1", [priced(succeeded(first), 1.0), priced(succeeded(second), 1.0)], NOW
        )

    assert await assert_kept(store, batch_id) == before
    assert before[batch_id].counts == RequestCounts(total=2, processing=2)


@pytest.mark.parametrize("stop", ["cancel", "expire"])
async def test_stopping_a_batch_counts_its_unstarted_lines(
    store: Store, make_batch: MakeBatch, stop: str
) -> None:
    batch_id = await make_batch(items=5)
    running: list[BatchItem] = await claim(store, "w1", limit=2)
    await store.record_outcomes("w1", [priced(succeeded(running[0]), 0.25)], NOW)

    if stop == "cancel":
        assert await store.cancel_batch(batch_id, expected=BatchStatus.IN_PROGRESS, now=NOW)
        ended, state = RequestCounts(total=5, processing=1, succeeded=1, cancelled=3), "cancelled"
    else:
        assert await store.expire_batch(batch_id, NOW)
        ended, state = RequestCounts(total=5, processing=1, succeeded=1, expired=3), "expired"
    assert (await assert_kept(store, batch_id))[batch_id].counts == ended

    # the line still running comes back to a dead worker's sweep, then is settled
    assert await store.release_expired_leases(NOW + 100) == 1
    await store.settle_unfinished(batch_id, ItemState(state), NOW + 101)
    figures = await assert_kept(store, batch_id)
    assert figures[batch_id].counts.processing == 0
    counts, usage = await store.item_summary(batch_id)
    assert figures[batch_id].counts == counts and figures[batch_id].usage == usage


async def test_lines_stored_in_chunks_and_cleared(store: Store, make_batch: MakeBatch) -> None:
    batch_id = await make_batch(items=new_items(2, model="b"), start=False)
    await store.insert_items(batch_id, new_items(2, first_line=3, model="a", provider="p2"))
    # while it is validating its lines are added up
    figures = await store.batch_figures([batch_id])
    assert figures[batch_id].models == ("a", "b") and figures[batch_id].counts.total == 4

    await store.clear_items(batch_id)
    assert await store.batch_figures([batch_id]) == {}
    await store.insert_items(batch_id, new_items(1, model="c"))
    await store.insert_items(batch_id, new_items(1, first_line=2, model="c"))
    assert await store.set_batch_status(
        batch_id,
        expected=[BatchStatus.VALIDATING],
        status=BatchStatus.IN_PROGRESS,
        total=2,
    )
    figures = await assert_kept(store, batch_id)
    assert (figures[batch_id].models, figures[batch_id].providers) == (("c",), ("sim",))


async def test_figures_kept_when_the_batch_ends_are_the_running_ones(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=3)
    items = await claim(store, "w1")
    await store.record_outcomes(
        "w1",
        [priced(succeeded(i, input_tokens=2, output_tokens=1), 0.25) for i in items[:2]]
        + [failed(items[2])],
        NOW,
    )
    running = await assert_kept(store, batch_id)
    counts, usage = await store.item_summary(batch_id)

    assert await store.finish_batch(
        batch_id,
        expected=BatchStatus.IN_PROGRESS,
        status=BatchStatus.COMPLETED,
        now=NOW,
        outputs=[],
        counts=counts,
        usage=usage,
        values={"completed_at": NOW},
    )

    assert await assert_kept(store, batch_id) == running
    batch = await store.get_batch(None, batch_id)
    assert batch is not None and batch.usage == running[batch_id].usage
