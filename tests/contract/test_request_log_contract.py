"""The ``RequestLogs`` contract: storing request logs and the questions asked of them
(listings, usage buckets, spending, retention), on every implementation (SQLite,
PostgreSQL, memory), so that bucketing, sums and paging agree everywhere.

Times are fixed epoch milliseconds; nothing here reads the clock.
"""

from __future__ import annotations

from typing import Any

import pytest

from batchway.core.analytics import LogFilter, UsageQuery, UsageReport, UsageTotals
from batchway.core.models import RequestLog, Usage
from batchway.core.ports import RequestLogs, Store
from batchway.core.states import ItemState
from tests.contract.conftest import DUPLICATE, MakeBatch
from tests.contract.factories import (
    DAY_MS,
    HOUR_MS,
    NOW,
    T0,
    claim,
    entry,
    everything,
    line,
    states,
    succeeded,
)


def totals(report: UsageReport) -> dict[tuple[int, str | None, str], UsageTotals]:
    return {(r.bucket_start_ms, r.group, r.kind): r.totals for r in report.series}


# -- insert and query ---------------------------------------------------------------------


async def test_a_stored_log_reads_back_with_every_field(logs: RequestLogs) -> None:
    stored = line(
        T0 + 1,
        upstream_model="gpt-4o-2024-08-06",
        error_code=None,
        retries=2,
        request_body=b'{"messages": []}',
        response_body=b"\xff\x00 not utf-8",
    )
    await logs.insert([stored])

    (read,) = await everything(logs)

    assert read.id is not None
    assert read == RequestLog(
        **{f: getattr(stored, f) for f in RequestLog.__dataclass_fields__ if f != "id"},
        id=read.id,
    )


async def test_bodies_stay_unread_when_not_asked_for(logs: RequestLogs) -> None:
    await logs.insert([entry(request_body=b"prompt", response_body=b"answer")])

    page = await logs.query(LogFilter(), limit=10, before_id=None, bodies=False)

    assert (page.items[0].request_body, page.items[0].response_body) == (None, None)
    assert page.items[0].request_id is not None


async def test_inserting_nothing_does_nothing(logs: RequestLogs) -> None:
    await logs.insert([])
    assert await everything(logs) == []


async def test_a_batch_line_is_logged_once(logs: RequestLogs) -> None:
    await logs.insert([line(item_id=7)])
    with pytest.raises(DUPLICATE):
        await logs.insert([line(item_id=7)])
    assert len(await everything(logs)) == 1


async def test_many_rows_go_in_one_call_and_come_out_newest_first(logs: RequestLogs) -> None:
    await logs.insert([entry(T0 + i, request_id=f"r{i}") for i in range(50)])

    rows = await everything(logs)

    assert [r.request_id for r in rows] == [f"r{i}" for i in reversed(range(50))]
    ids = [r.id for r in rows]
    assert ids == sorted(ids, reverse=True)  # type: ignore[type-var]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (LogFilter(key_id="key_b"), {"b"}),
        (LogFilter(model="claude"), {"claude"}),
        (LogFilter(provider="anthropic"), {"claude"}),
        (LogFilter(batch_id="batch_9"), {"line"}),
        (LogFilter(status="failed"), {"failed"}),
        (LogFilter(kind="batch"), {"line"}),
        (LogFilter(kind="interactive", key_id="key_a"), {"a", "claude", "failed", "late"}),
        (LogFilter(since_ms=T0 + HOUR_MS), {"late"}),
        (LogFilter(until_ms=T0 + HOUR_MS), {"a", "b", "claude", "failed", "line"}),
        (LogFilter(since_ms=T0, until_ms=T0 + 1), {"a", "b", "claude", "failed", "line"}),
        (LogFilter(model="nothing-like-it"), set()),
    ],
)
async def test_filters(logs: RequestLogs, filters: LogFilter, expected: set[str]) -> None:
    await logs.insert(
        [
            entry(request_id="a"),
            entry(request_id="b", key_id="key_b"),
            entry(request_id="claude", model="claude", provider="anthropic"),
            entry(request_id="failed", status="failed", status_code=500),
            line(request_id="line", batch_id="batch_9"),
            entry(T0 + HOUR_MS, request_id="late"),
        ]
    )
    assert {r.request_id for r in await everything(logs, filters)} == expected


async def test_since_is_inclusive_and_until_exclusive(logs: RequestLogs) -> None:
    await logs.insert([entry(T0 + i, request_id=str(i)) for i in range(5)])

    rows = await everything(logs, LogFilter(since_ms=T0 + 1, until_ms=T0 + 3))

    assert [r.request_id for r in rows] == ["2", "1"]


async def test_the_cursor_walks_every_row_once(logs: RequestLogs) -> None:
    await logs.insert([entry(T0 + i, key_id="key_a" if i % 3 else "key_b") for i in range(23)])
    wanted = LogFilter(key_id="key_a")
    seen: list[int] = []
    before: int | None = None
    pages = 0
    while True:
        page = await logs.query(wanted, limit=5, before_id=before)
        pages += 1
        assert len(page.items) <= 5
        seen += [r.id for r in page.items if r.id is not None]
        if not page.has_more:
            break
        before = page.items[-1].id

    assert pages == 3  # 15 rows: no empty page at the end
    assert seen == sorted(seen, reverse=True)
    assert seen == [r.id for r in await everything(logs, wanted)]
    assert len(seen) == len(set(seen)) == 15


@pytest.mark.parametrize(
    "filters",
    [
        LogFilter(batch_id="batch_old"),
        LogFilter(key_id="key_old"),
        LogFilter(model="old-model"),
        LogFilter(batch_id="batch_old", key_id="key_old", model="old-model"),
        LogFilter(key_id="key_old", status="failed"),
    ],
)
async def test_old_logs_of_a_batch_key_or_model_page_past_newer_ones(
    logs: RequestLogs, filters: LogFilter
) -> None:
    # the stores bound the walk by the newest log of the value: a page, a cursor between
    # and past its logs, and one of a value with no logs must all still be exact
    old = [
        line(
            T0 + i,
            batch_id="batch_old",
            key_id="key_old",
            model="old-model",
            status="failed" if i % 2 else "succeeded",
            request_id=f"old-{i}",
        )
        for i in range(12)
    ]
    await logs.insert(old[:6])
    await logs.insert([entry(T0 + 100 + i) for i in range(30)])
    await logs.insert(old[6:])
    await logs.insert([line(T0 + 200 + i, batch_id="batch_new") for i in range(30)])
    expected = [r.id for r in await everything(logs) if _matches(r, filters)]

    seen: list[int] = []
    before: int | None = None
    while True:
        page = await logs.query(filters, limit=4, before_id=before)
        seen += [r.id for r in page.items if r.id is not None]
        if not page.has_more:
            break
        before = page.items[-1].id

    assert seen == expected and len(seen) in (6, 12)
    newest = (await everything(logs))[0].id
    assert newest is not None
    past_all = await logs.query(filters, limit=4, before_id=newest + 1)
    assert [r.id for r in past_all.items] == expected[:4]
    assert (await logs.query(filters, limit=4, before_id=expected[-1])).items == []
    other = LogFilter(batch_id="batch_none", key_id=filters.key_id, model=filters.model)
    assert (await logs.query(other, limit=4, before_id=None)).items == []


def _matches(log: RequestLog, filters: LogFilter) -> bool:
    return all(
        wanted is None or value == wanted
        for value, wanted in (
            (log.batch_id, filters.batch_id),
            (log.key_id, filters.key_id),
            (log.model, filters.model),
            (log.status, filters.status),
        )
    ) and (
        (filters.since_ms is None or log.created_at_ms >= filters.since_ms)
        and (filters.until_ms is None or log.created_at_ms < filters.until_ms)
    )


async def _pages(logs: RequestLogs, filters: LogFilter, before: int | None = None) -> list[int]:
    seen: list[int] = []
    while True:
        page = await logs.query(filters, limit=4, before_id=before)
        seen += [r.id for r in page.items if r.id is not None]
        if not page.has_more:
            return seen
        before = page.items[-1].id


@pytest.mark.parametrize(
    "filters",
    [
        LogFilter(since_ms=T0, until_ms=T0 + 10),  # old: far more logs are newer
        LogFilter(since_ms=T0 + 3, until_ms=T0 + 8, key_id="key_b"),
        LogFilter(until_ms=T0 + 10),
        LogFilter(since_ms=T0 + HOUR_MS),  # recent
        LogFilter(since_ms=T0 + HOUR_MS + 5, until_ms=T0 + 2 * HOUR_MS + 1),
        LogFilter(since_ms=T0 + 20, until_ms=T0 + 30),  # no log in it
        LogFilter(since_ms=T0 + 3 * HOUR_MS),
        LogFilter(until_ms=T0),
    ],
)
async def test_a_time_window_pages_exactly_whatever_the_order_logs_came_in(
    logs: RequestLogs, filters: LogFilter
) -> None:
    # ids follow the order logs are written in, which is only roughly their time order:
    # "late" is numbered after every other log but ended inside the old window
    await logs.insert([entry(T0 + i, key_id="key_b" if i % 2 else "key_a") for i in range(10)])
    await logs.insert([entry(T0 + HOUR_MS + i) for i in range(40)])
    await logs.insert([entry(T0 + 5, key_id="key_b", request_id="late")])
    await logs.insert([entry(T0 + 2 * HOUR_MS) for i in range(5)])
    expected = [r.id for r in await everything(logs) if _matches(r, filters)]

    assert await _pages(logs, filters) == expected
    if len(expected) > 2:
        assert await _pages(logs, filters, before=expected[1]) == expected[2:]


async def test_a_full_last_page_says_there_is_no_more(logs: RequestLogs) -> None:
    await logs.insert([entry(T0 + i) for i in range(10)])

    first = await logs.query(LogFilter(), limit=5, before_id=None)
    second = await logs.query(LogFilter(), limit=5, before_id=first.items[-1].id)

    assert (len(first.items), first.has_more) == (5, True)
    assert (len(second.items), second.has_more) == (5, False)


# -- usage --------------------------------------------------------------------------------


async def test_usage_per_day_keeps_batch_and_interactive_apart(logs: RequestLogs) -> None:
    await logs.insert(
        [
            entry(T0),
            entry(T0 + DAY_MS - 1),  # the last millisecond of the first day
            line(T0 + 5 * HOUR_MS, cost_usd=0.125),
            entry(T0 + DAY_MS, status="failed", cost_usd=0.0),
            line(T0 + 2 * DAY_MS + 1, status="rate_limited"),
        ]
    )

    report = await logs.usage(UsageQuery(interval="day"))

    ok = UsageTotals(requests=1, input_tokens=10, cached_tokens=2, output_tokens=5, cost_usd=0.25)
    assert totals(report) == {
        (T0, None, "batch"): UsageTotals(
            requests=1, input_tokens=10, cached_tokens=2, output_tokens=5, cost_usd=0.125
        ),
        (T0, None, "interactive"): ok + ok,
        (T0 + DAY_MS, None, "interactive"): UsageTotals(
            requests=1, input_tokens=10, cached_tokens=2, output_tokens=5, errors=1
        ),
        (T0 + 2 * DAY_MS, None, "batch"): UsageTotals(
            requests=1, input_tokens=10, cached_tokens=2, output_tokens=5, cost_usd=0.25, errors=1
        ),
    }
    assert [r.bucket_start_ms for r in report.series] == [T0, T0, T0 + DAY_MS, T0 + 2 * DAY_MS]
    assert report.batch.requests == 2 and report.batch.errors == 1
    assert report.interactive.requests == 3 and report.interactive.errors == 1
    assert report.overall == report.batch + report.interactive
    assert report.overall.cost_usd == pytest.approx(0.25 * 3 + 0.125)


async def test_usage_per_hour(logs: RequestLogs) -> None:
    await logs.insert(
        [
            entry(T0 + 59 * 60_000),
            entry(T0 + HOUR_MS),
            entry(T0 + HOUR_MS + 1),
            line(T0 + 26 * HOUR_MS),
        ]
    )

    report = await logs.usage(UsageQuery(interval="hour"))

    assert [(r.bucket_start_ms, r.kind, r.totals.requests) for r in report.series] == [
        (T0, "interactive", 1),
        (T0 + HOUR_MS, "interactive", 2),
        (T0 + 26 * HOUR_MS, "batch", 1),
    ]


@pytest.mark.parametrize(
    ("group_by", "groups"),
    [
        ("key", {"key_a": 3, "key_b": 1}),
        ("model", {"gpt-4o": 3, "claude": 1}),
        ("provider", {"openai": 2, "anthropic": 1, "azure": 1}),
    ],
)
async def test_usage_grouped(logs: RequestLogs, group_by: Any, groups: dict[str, int]) -> None:
    await logs.insert(
        [
            entry(),
            entry(key_id="key_b"),
            entry(model="claude", provider="anthropic"),
            entry(provider="azure"),
        ]
    )

    report = await logs.usage(UsageQuery(group_by=group_by, interval="day"))

    assert {r.group: r.totals.requests for r in report.series} == groups
    assert all(r.bucket_start_ms == T0 and r.kind == "interactive" for r in report.series)
    assert [r.group for r in report.series] == sorted(groups)
    assert report.overall.requests == 4


async def test_usage_grouped_keeps_kinds_apart_within_a_group(logs: RequestLogs) -> None:
    await logs.insert([entry(), line(), line(key_id="key_b")])

    report = await logs.usage(UsageQuery(group_by="key", interval="hour"))

    assert [(r.group, r.kind, r.totals.requests) for r in report.series] == [
        ("key_a", "batch", 1),
        ("key_a", "interactive", 1),
        ("key_b", "batch", 1),
    ]


async def test_usage_of_one_key_in_a_period(logs: RequestLogs) -> None:
    await logs.insert(
        [
            entry(T0 - 1),
            entry(T0),
            entry(T0 + HOUR_MS, key_id="key_b"),
            entry(T0 + 2 * HOUR_MS),
            entry(T0 + 3 * HOUR_MS),
        ]
    )

    report = await logs.usage(
        UsageQuery(interval="hour", key_id="key_a", since_ms=T0, until_ms=T0 + 3 * HOUR_MS)
    )

    assert [r.bucket_start_ms for r in report.series] == [T0, T0 + 2 * HOUR_MS]
    assert report.overall.requests == 2


async def test_usage_of_nothing(logs: RequestLogs) -> None:
    report = await logs.usage(UsageQuery(group_by="model", interval="day"))
    assert report.series == ()
    assert report.overall == report.batch == report.interactive == UsageTotals()


async def test_usage_sums_match_the_rows(logs: RequestLogs) -> None:
    rows = [
        (line if i % 2 else entry)(
            T0 + i * 7 * 60_000,
            usage=Usage(input_tokens=i, cached_tokens=i // 2, output_tokens=3 * i),
            cost_usd=i / 100,
            status="succeeded" if i % 5 else "failed",
            model=f"m{i % 3}",
        )
        for i in range(60)
    ]
    await logs.insert(rows)

    for group_by in (None, "key", "model", "provider"):
        report = await logs.usage(UsageQuery(group_by=group_by, interval="hour"))  # type: ignore[arg-type]
        assert report.overall.requests == 60
        assert report.overall.input_tokens == sum(r.usage.input_tokens for r in rows)
        assert report.overall.cached_tokens == sum(r.usage.cached_tokens for r in rows)
        assert report.overall.output_tokens == sum(r.usage.output_tokens for r in rows)
        assert report.overall.cost_usd == pytest.approx(sum(r.cost_usd for r in rows))
        assert report.overall.errors == sum(r.status != "succeeded" for r in rows)
        assert report.batch.requests == 30 == report.interactive.requests


# -- spending and retention ---------------------------------------------------------------


async def test_spent(logs: RequestLogs) -> None:
    await logs.insert(
        [
            entry(T0 - DAY_MS, cost_usd=1.0),
            entry(T0, cost_usd=0.5),
            line(T0 + 1, cost_usd=0.25),
            entry(T0, key_id="key_b", cost_usd=8.0),
        ]
    )

    assert await logs.spent("key_a", None) == pytest.approx(1.75)
    assert await logs.spent("key_a", T0) == pytest.approx(0.75)
    assert await logs.spent("key_a", T0 + 2) == 0.0
    assert await logs.spent("key_b", None) == pytest.approx(8.0)
    assert await logs.spent("key_nobody", None) == 0.0
    # every key in one read: the same figures
    assert await logs.spent_by_key(None) == pytest.approx({"key_a": 1.75, "key_b": 8.0})
    assert await logs.spent_by_key(T0) == pytest.approx({"key_a": 0.75, "key_b": 8.0})
    assert await logs.spent_by_key(T0 + 2) == {}


async def test_delete_older_than_goes_in_chunks(logs: RequestLogs) -> None:
    await logs.insert([entry(T0 + i, request_id=str(i)) for i in range(25)])

    deleted = await logs.delete_older_than(T0 + 20, chunk=4)

    assert deleted == 20
    assert sorted(int(r.request_id or "") for r in await everything(logs)) == list(range(20, 25))
    assert await logs.delete_older_than(T0 + 20, chunk=4) == 0


@pytest.mark.parametrize("old", [0, 3, 8])
async def test_delete_older_than_chunk_edges(logs: RequestLogs, old: int) -> None:
    """Fewer, exactly as many and a multiple of a chunk's rows all go."""
    await logs.insert([entry(T0 - 1 - i) for i in range(old)] + [entry(T0)])

    assert await logs.delete_older_than(T0, chunk=4 if old != 3 else 3) == old
    assert [r.created_at_ms for r in await everything(logs)] == [T0]


# -- the logs of batch lines ----------------------------------------------------------------


async def test_recorded_lines_are_logged_with_their_results(
    store: Store, logs: RequestLogs, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=2)
    first, second = await claim(store, "w1")
    await store.record_outcomes("w1", [succeeded(first, output_tokens=4)], NOW)
    await store.record_outcomes("w1", [succeeded(first), succeeded(second)], NOW + 1)

    rows = await everything(logs, LogFilter(batch_id=batch_id))

    assert [(r.item_id, r.custom_id, r.status, r.kind) for r in rows] == [
        (int(second.id), "req-2", "succeeded", "batch"),
        (int(first.id), "req-1", "succeeded", "batch"),
    ]
    assert rows[1].usage == Usage(output_tokens=4)
    assert rows[1].created_at_ms == NOW * 1000
    assert rows[1].key_id == "key_owner"


async def test_a_line_whose_log_is_refused_is_not_written_either(
    store: Store, logs: RequestLogs, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=1)
    (item,) = await claim(store, "w1")
    await logs.insert([line(item_id=int(item.id))])  # logged already, somehow

    with pytest.raises(DUPLICATE):
        await store.record_outcomes("w1", [succeeded(item)], NOW)

    assert await states(store, batch_id) == [ItemState.LEASED]
    assert len(await everything(logs)) == 1


async def test_a_log_keeps_no_reasoning_tokens(logs: RequestLogs) -> None:
    usage = Usage(input_tokens=1, cached_tokens=0, output_tokens=2, reasoning_tokens=3)
    await logs.insert([entry(usage=usage, id=12345)])

    (read,) = await everything(logs)

    assert read.usage == Usage(input_tokens=1, output_tokens=2)
    assert read.id is not None and read.id != 12345  # the store numbers logs itself
