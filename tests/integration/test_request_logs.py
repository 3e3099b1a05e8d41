"""The request-log statements against a real database: every test runs on SQLite and on
PostgreSQL, so bucketing, sums and paging are checked on both.

Times are fixed epoch milliseconds; nothing here reads the clock.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from batchway.config import Config
from batchway.core.analytics import LogFilter, UsageQuery, UsageReport, UsageTotals
from batchway.core.models import RequestLog, Usage
from batchway.store.logs import SqlRequestLogs
from batchway.store.migrate import migrate
from batchway.store.sql import SqlStore, create_engine

HOUR = 3_600_000
DAY = 24 * HOUR
# midnight UTC, 2023-11-15: every bucket below starts at a whole hour or day after it
T0 = 1_700_006_400_000
assert T0 % DAY == 0

_serial = itertools.count(1)


@pytest.fixture
async def logs(database_url: str) -> AsyncIterator[SqlRequestLogs]:
    engine = create_engine(Config(database=database_url).async_database_url)
    await migrate(engine)
    store = SqlStore(engine)
    try:
        yield SqlRequestLogs(store)
    finally:
        await store.close()


def entry(at: int = T0, **fields: Any) -> RequestLog:
    """A successful interactive call unless told otherwise."""
    n = next(_serial)
    values: dict[str, Any] = {
        "created_at_ms": at,
        "kind": "interactive",
        "key_id": "key_a",
        "model": "gpt-4o",
        "provider": "openai",
        "endpoint": "/v1/chat/completions",
        "status": "succeeded",
        "status_code": 200,
        "usage": Usage(input_tokens=10, cached_tokens=2, output_tokens=5),
        "latency_ms": 12.5,
        "cost_usd": 0.25,
        "request_id": f"req_{n}",
    }
    return RequestLog(**{**values, **fields})


def line(at: int = T0, **fields: Any) -> RequestLog:
    """A batch line that finished."""
    n = next(_serial)
    values: dict[str, Any] = {
        "kind": "batch",
        "batch_id": "batch_1",
        "custom_id": f"line-{n}",
        "item_id": n,
    }
    return entry(at, **{**values, **fields})


async def everything(logs: SqlRequestLogs, filters: LogFilter | None = None) -> list[RequestLog]:
    page = await logs.query(filters or LogFilter(), limit=1000, before_id=None)
    assert not page.has_more
    return page.items


def totals(report: UsageReport) -> dict[tuple[int, str | None, str], UsageTotals]:
    return {(r.bucket_start_ms, r.group, r.kind): r.totals for r in report.series}


# -- insert and query ---------------------------------------------------------------------


async def test_a_stored_log_reads_back_with_every_field(logs: SqlRequestLogs) -> None:
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


async def test_bodies_stay_unread_when_not_asked_for(logs: SqlRequestLogs) -> None:
    await logs.insert([entry(request_body=b"prompt", response_body=b"answer")])

    page = await logs.query(LogFilter(), limit=10, before_id=None, bodies=False)

    assert (page.items[0].request_body, page.items[0].response_body) == (None, None)
    assert page.items[0].request_id is not None


async def test_inserting_nothing_does_nothing(logs: SqlRequestLogs) -> None:
    await logs.insert([])
    assert await everything(logs) == []


async def test_a_batch_line_is_logged_once(logs: SqlRequestLogs) -> None:
    await logs.insert([line(item_id=7)])
    with pytest.raises(IntegrityError):
        await logs.insert([line(item_id=7)])
    assert len(await everything(logs)) == 1


async def test_many_rows_go_in_one_call_and_come_out_newest_first(logs: SqlRequestLogs) -> None:
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
        (LogFilter(since_ms=T0 + HOUR), {"late"}),
        (LogFilter(until_ms=T0 + HOUR), {"a", "b", "claude", "failed", "line"}),
        (LogFilter(since_ms=T0, until_ms=T0 + 1), {"a", "b", "claude", "failed", "line"}),
        (LogFilter(model="nothing-like-it"), set()),
    ],
)
async def test_filters(logs: SqlRequestLogs, filters: LogFilter, expected: set[str]) -> None:
    await logs.insert(
        [
            entry(request_id="a"),
            entry(request_id="b", key_id="key_b"),
            entry(request_id="claude", model="claude", provider="anthropic"),
            entry(request_id="failed", status="failed", status_code=500),
            line(request_id="line", batch_id="batch_9"),
            entry(T0 + HOUR, request_id="late"),
        ]
    )
    assert {r.request_id for r in await everything(logs, filters)} == expected


async def test_since_is_inclusive_and_until_exclusive(logs: SqlRequestLogs) -> None:
    await logs.insert([entry(T0 + i, request_id=str(i)) for i in range(5)])

    rows = await everything(logs, LogFilter(since_ms=T0 + 1, until_ms=T0 + 3))

    assert [r.request_id for r in rows] == ["2", "1"]


async def test_the_cursor_walks_every_row_once(logs: SqlRequestLogs) -> None:
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


async def test_a_full_last_page_says_there_is_no_more(logs: SqlRequestLogs) -> None:
    await logs.insert([entry(T0 + i) for i in range(10)])

    first = await logs.query(LogFilter(), limit=5, before_id=None)
    second = await logs.query(LogFilter(), limit=5, before_id=first.items[-1].id)

    assert (len(first.items), first.has_more) == (5, True)
    assert (len(second.items), second.has_more) == (5, False)


# -- usage --------------------------------------------------------------------------------


async def test_usage_per_day_keeps_batch_and_interactive_apart(logs: SqlRequestLogs) -> None:
    await logs.insert(
        [
            entry(T0),
            entry(T0 + DAY - 1),  # the last millisecond of the first day
            line(T0 + 5 * HOUR, cost_usd=0.125),
            entry(T0 + DAY, status="failed", cost_usd=0.0),
            line(T0 + 2 * DAY + 1, status="rate_limited"),
        ]
    )

    report = await logs.usage(UsageQuery(interval="day"))

    ok = UsageTotals(requests=1, input_tokens=10, cached_tokens=2, output_tokens=5, cost_usd=0.25)
    assert totals(report) == {
        (T0, None, "batch"): UsageTotals(
            requests=1, input_tokens=10, cached_tokens=2, output_tokens=5, cost_usd=0.125
        ),
        (T0, None, "interactive"): ok + ok,
        (T0 + DAY, None, "interactive"): UsageTotals(
            requests=1, input_tokens=10, cached_tokens=2, output_tokens=5, errors=1
        ),
        (T0 + 2 * DAY, None, "batch"): UsageTotals(
            requests=1, input_tokens=10, cached_tokens=2, output_tokens=5, cost_usd=0.25, errors=1
        ),
    }
    assert [r.bucket_start_ms for r in report.series] == [T0, T0, T0 + DAY, T0 + 2 * DAY]
    assert report.batch.requests == 2 and report.batch.errors == 1
    assert report.interactive.requests == 3 and report.interactive.errors == 1
    assert report.overall == report.batch + report.interactive
    assert report.overall.cost_usd == pytest.approx(0.25 * 3 + 0.125)


async def test_usage_per_hour(logs: SqlRequestLogs) -> None:
    await logs.insert(
        [entry(T0 + 59 * 60_000), entry(T0 + HOUR), entry(T0 + HOUR + 1), line(T0 + 26 * HOUR)]
    )

    report = await logs.usage(UsageQuery(interval="hour"))

    assert [(r.bucket_start_ms, r.kind, r.totals.requests) for r in report.series] == [
        (T0, "interactive", 1),
        (T0 + HOUR, "interactive", 2),
        (T0 + 26 * HOUR, "batch", 1),
    ]


@pytest.mark.parametrize(
    ("group_by", "groups"),
    [
        ("key", {"key_a": 3, "key_b": 1}),
        ("model", {"gpt-4o": 3, "claude": 1}),
        ("provider", {"openai": 2, "anthropic": 1, "azure": 1}),
    ],
)
async def test_usage_grouped(logs: SqlRequestLogs, group_by: Any, groups: dict[str, int]) -> None:
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


async def test_usage_grouped_keeps_kinds_apart_within_a_group(logs: SqlRequestLogs) -> None:
    await logs.insert([entry(), line(), line(key_id="key_b")])

    report = await logs.usage(UsageQuery(group_by="key", interval="hour"))

    assert [(r.group, r.kind, r.totals.requests) for r in report.series] == [
        ("key_a", "batch", 1),
        ("key_a", "interactive", 1),
        ("key_b", "batch", 1),
    ]


async def test_usage_of_one_key_in_a_period(logs: SqlRequestLogs) -> None:
    await logs.insert(
        [
            entry(T0 - 1),
            entry(T0),
            entry(T0 + HOUR, key_id="key_b"),
            entry(T0 + 2 * HOUR),
            entry(T0 + 3 * HOUR),
        ]
    )

    report = await logs.usage(
        UsageQuery(interval="hour", key_id="key_a", since_ms=T0, until_ms=T0 + 3 * HOUR)
    )

    assert [r.bucket_start_ms for r in report.series] == [T0, T0 + 2 * HOUR]
    assert report.overall.requests == 2


async def test_usage_of_nothing(logs: SqlRequestLogs) -> None:
    report = await logs.usage(UsageQuery(group_by="model", interval="day"))
    assert report.series == ()
    assert report.overall == report.batch == report.interactive == UsageTotals()


async def test_usage_sums_match_the_rows(logs: SqlRequestLogs) -> None:
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


async def test_spent(logs: SqlRequestLogs) -> None:
    await logs.insert(
        [
            entry(T0 - DAY, cost_usd=1.0),
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


async def test_delete_older_than_goes_in_chunks(logs: SqlRequestLogs) -> None:
    await logs.insert([entry(T0 + i, request_id=str(i)) for i in range(25)])

    deleted = await logs.delete_older_than(T0 + 20, chunk=4)

    assert deleted == 20
    assert sorted(int(r.request_id or "") for r in await everything(logs)) == list(range(20, 25))
    assert await logs.delete_older_than(T0 + 20, chunk=4) == 0


@pytest.mark.parametrize("old", [0, 3, 8])
async def test_delete_older_than_chunk_edges(logs: SqlRequestLogs, old: int) -> None:
    """Fewer, exactly as many and a multiple of a chunk's rows all go."""
    await logs.insert([entry(T0 - 1 - i) for i in range(old)] + [entry(T0)])

    assert await logs.delete_older_than(T0, chunk=4 if old != 3 else 3) == old
    assert [r.created_at_ms for r in await everything(logs)] == [T0]


def test_the_fast_insert_writes_every_column():
    from batchway.store.sql_items import _LOG_COLUMNS
    from batchway.store.tables import request_logs

    assert sorted(_LOG_COLUMNS) == sorted(c.name for c in request_logs.c if c.name != "id")


def _accounting(logs: SqlRequestLogs) -> Any:
    from batchway.config import LogConfig
    from batchway.core.accounting import Accounting
    from batchway.core.budgets import Budgets
    from batchway.core.call_pricing import CallPricing
    from batchway.core.pricing import PriceTable
    from batchway.core.routing import Router
    from batchway.metrics import Metrics

    config = Config()
    return Accounting(
        pricing=CallPricing(PriceTable({}), Router(config), config),
        budgets=Budgets(logs),
        metrics=Metrics(),
        sink=logs,
        settings=LogConfig(),
    )


async def test_a_log_row_the_database_refuses_is_dropped_alone(logs: SqlRequestLogs) -> None:
    accounting = _accounting(logs)
    taken = line(custom_id="first")
    await logs.insert([taken])
    queued = [entry(request_id="before"), line(item_id=taken.item_id), entry(request_id="after")]
    for log in queued:
        accounting.interactive(log)

    await accounting.flush()  # the write fails whole; each row is tried alone

    stored = {log.request_id for log in await everything(logs)}
    assert {"before", "after"} <= stored
    assert len(await everything(logs)) == 3  # the refused row is gone, not queued again
    await accounting.flush()
    assert len(await everything(logs)) == 3
