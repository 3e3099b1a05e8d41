"""Usage read from the totals kept per hour (and from the logs at a period's edges) is what
adding up the logs gives, on every implementation (SQLite, PostgreSQL, memory): after many
writes of every kind, for periods on and off hour boundaries, after retention, and after a
write that is refused."""

from __future__ import annotations

import random
from typing import Any

import pytest

from batchway.core.analytics import INTERVAL_MS, UsageQuery, UsageRow, UsageTotals
from batchway.core.models import RequestLog, Usage
from batchway.core.ports import RequestLogs, Store
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
    succeeded,
)

KEYS = ("key_a", "key_b", "key_c")
MODELS = (("gpt-4o", "openai"), ("claude", "anthropic"), ("gpt-4o", "azure"))
STATUSES = ("succeeded", "succeeded", "succeeded", "failed", "budget_exceeded")


def many_logs(seed: int, count: int, first_item: int = 0) -> list[RequestLog]:
    """Logs spread over three days, every key, model, provider, kind and status; costs are
    whole multiples of 1/64, so that any order of adding them up gives the same sum."""
    rng = random.Random(seed)
    logs = []
    for n in range(count):
        model, provider = rng.choice(MODELS)
        fields: dict[str, Any] = {
            "key_id": rng.choice(KEYS),
            "model": model,
            "provider": provider,
            "status": rng.choice(STATUSES),
            "usage": Usage(
                input_tokens=rng.randint(0, 900),
                cached_tokens=rng.randint(0, 50),
                output_tokens=rng.randint(0, 300),
            ),
            "cost_usd": rng.randint(0, 64) / 64,
        }
        at = T0 + rng.randint(0, 3 * DAY_MS)
        if rng.random() < 0.5:
            logs.append(line(at, item_id=first_item + n, batch_id="batch_x", **fields))
        else:
            logs.append(entry(at, **fields))
    return logs


def expected(logs: list[RequestLog], query: UsageQuery) -> list[UsageRow]:
    """The usage series added up from the logs themselves."""
    width = INTERVAL_MS[query.interval]
    buckets: dict[tuple[int, str, str], UsageTotals] = {}
    for log in logs:
        if query.key_id is not None and log.key_id != query.key_id:
            continue
        if query.since_ms is not None and log.created_at_ms < query.since_ms:
            continue
        if query.until_ms is not None and log.created_at_ms >= query.until_ms:
            continue
        group = {"key": log.key_id, "model": log.model, "provider": log.provider}
        bucket = (
            log.created_at_ms // width * width,
            group[query.group_by] if query.group_by is not None else "",
            log.kind,
        )
        buckets[bucket] = buckets.get(bucket, UsageTotals()) + UsageTotals(
            requests=1,
            errors=int(log.status != "succeeded"),
            input_tokens=log.usage.input_tokens,
            cached_tokens=log.usage.cached_tokens,
            output_tokens=log.usage.output_tokens,
            cost_usd=log.cost_usd,
        )
    return [
        UsageRow(
            bucket_start_ms=start,
            group=group if query.group_by is not None else None,
            kind=kind,  # type: ignore[arg-type]
            totals=totals,
        )
        for (start, group, kind), totals in sorted(buckets.items())
    ]


QUERIES = [
    UsageQuery(),
    UsageQuery(interval="hour", group_by="model"),
    UsageQuery(group_by="key", since_ms=T0 + DAY_MS),
    UsageQuery(group_by="provider", since_ms=T0 + 5 * HOUR_MS + 1234, until_ms=T0 + 2 * DAY_MS),
    UsageQuery(interval="hour", since_ms=T0 + 90_000, until_ms=T0 + 30 * HOUR_MS - 1),
    UsageQuery(key_id="key_b", until_ms=T0 + DAY_MS + 7),
    UsageQuery(interval="hour", since_ms=T0 + HOUR_MS + 5, until_ms=T0 + HOUR_MS + 600_000),
    UsageQuery(interval="hour", since_ms=T0 + HOUR_MS + 5, until_ms=T0 + 2 * HOUR_MS + 9),
    UsageQuery(since_ms=T0 + 3 * HOUR_MS, until_ms=T0 + 9 * HOUR_MS),
    UsageQuery(since_ms=T0 + HOUR_MS, until_ms=T0 + HOUR_MS),
    UsageQuery(group_by="model", since_ms=T0 + 4 * DAY_MS),
]


async def assert_usage_is_the_logs(logs: RequestLogs) -> None:
    rows = await everything(logs)
    for query in QUERIES:
        assert list((await logs.usage(query)).series) == expected(rows, query), query


async def test_usage_after_many_writes_is_the_logs_added_up(logs: RequestLogs) -> None:
    written = many_logs(1, 600, first_item=1)
    for start in range(0, len(written), 37):
        await logs.insert(written[start : start + 37])
    await logs.insert([])

    await assert_usage_is_the_logs(logs)
    assert len(await everything(logs)) == 600


@pytest.mark.parametrize("cutoff", [T0 + DAY_MS, T0 + DAY_MS + 1_800_000, T0 + 9 * DAY_MS])
async def test_usage_after_retention_is_the_logs_left(logs: RequestLogs, cutoff: int) -> None:
    await logs.insert(many_logs(2, 300, first_item=1000))

    await logs.delete_older_than(cutoff, chunk=40)

    await assert_usage_is_the_logs(logs)
    await logs.insert(many_logs(3, 50, first_item=5000))
    await assert_usage_is_the_logs(logs)


async def test_recorded_lines_count_once_and_a_refused_write_not_at_all(
    store: Store, logs: RequestLogs, make_batch: MakeBatch
) -> None:
    await make_batch(items=3)
    first, second, third = await claim(store, "w1")
    await store.record_outcomes("w1", [succeeded(first, input_tokens=3)], NOW)
    await store.record_outcomes("w1", [succeeded(first, input_tokens=3)], NOW)  # not held
    await logs.insert([line(item_id=int(third.id))])  # logged already, somehow
    before = await logs.usage(UsageQuery(interval="hour"))

    with pytest.raises(DUPLICATE):
        await store.record_outcomes("w1", [succeeded(second), succeeded(third)], NOW)
    with pytest.raises(DUPLICATE):
        await logs.insert([entry(), line(item_id=int(first.id))])

    assert await logs.usage(UsageQuery(interval="hour")) == before
    assert before.batch.requests == 2 and before.interactive.requests == 0
    await assert_usage_is_the_logs(logs)


async def test_calls_without_a_row_count_in_whole_hours_and_spend(logs: RequestLogs) -> None:
    calls = [c for c in many_logs(4, 200) if c.kind == "interactive"]
    rows, counted = calls[::5], [c for n, c in enumerate(calls) if n % 5]

    await logs.insert(rows, usage_only=counted)
    await logs.insert([], usage_only=counted[:0])

    assert len(await everything(logs)) == len(rows)
    for query in (
        UsageQuery(),
        UsageQuery(interval="hour", group_by="key"),
        UsageQuery(group_by="model", since_ms=T0 + DAY_MS, until_ms=T0 + 2 * DAY_MS),
    ):
        assert list((await logs.usage(query)).series) == expected(calls, query), query
    for key in KEYS:
        mine = [c for c in calls if c.key_id == key]
        assert await logs.spent(key, None) == sum(c.cost_usd for c in mine)
        since = T0 + DAY_MS
        assert await logs.spent(key, since) == sum(
            c.cost_usd for c in mine if c.created_at_ms >= since
        )
    for since in (None, T0 + DAY_MS, T0 + DAY_MS + 1_800_000):
        by_key = await logs.spent_by_key(since)
        assert by_key == pytest.approx({key: await logs.spent(key, since) for key in by_key})
        assert set(by_key) == {c.key_id for c in calls if since is None or c.created_at_ms >= since}

    cutoff = T0 + DAY_MS + 1_800_000
    await logs.delete_older_than(cutoff)

    left = [c for c in calls if c.created_at_ms // HOUR_MS * HOUR_MS >= cutoff - 1_800_000]
    assert list((await logs.usage(UsageQuery(since_ms=cutoff + 1_800_000))).series) == expected(
        left, UsageQuery(since_ms=cutoff + 1_800_000)
    )
    assert (await logs.usage(UsageQuery(until_ms=cutoff - 1_800_000))).overall.requests == 0
