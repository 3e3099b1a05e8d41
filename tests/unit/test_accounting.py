"""The accounting of synchronous calls on the in-memory request log: which calls keep a log
row (``logs.sync_sample_rate``), and that usage, spend, budgets and metrics count every call
whatever the sampling."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from batchway.config import Config, LogConfig
from batchway.core.accounting import Accounting
from batchway.core.analytics import LogFilter, UsageQuery
from batchway.core.budgets import Budgets
from batchway.core.call_pricing import CallPricing
from batchway.core.models import Principal, RequestLog
from batchway.core.pricing import PriceTable
from batchway.core.routing import Router
from batchway.metrics import Metrics
from batchway.testing.memory import MemoryRequestLogs
from tests.contract.factories import HOUR_MS, T0, entry, everything

CONFIG = Config.model_validate({})


def accounting(logs: MemoryRequestLogs, rate: float) -> Accounting:
    return Accounting(
        pricing=CallPricing(PriceTable(CONFIG.prices), Router(CONFIG)),
        budgets=Budgets(logs),
        metrics=Metrics(),
        sink=logs,
        settings=LogConfig(sync_sample_rate=rate),
    )


def calls(count: int, **fields: object) -> list[RequestLog]:
    return [entry(T0 + n, request_id=f"req_{n}", **fields) for n in range(count)]


@pytest.mark.parametrize(
    ("rate", "logged"),
    [
        (1.0, list(range(12))),
        (0.5, [1, 3, 5, 7, 9, 11]),
        (0.25, [3, 7, 11]),
        (1 / 3, [2, 5, 8, 11]),
        (0.0, []),
    ],
)
async def test_the_sampled_share_of_successful_calls_keeps_a_row_spread_evenly(
    rate: float, logged: list[int]
) -> None:
    logs = MemoryRequestLogs()
    books = accounting(logs, rate)

    for call in calls(12):
        books.interactive(call)
    await books.flush()

    rows = await everything(logs)
    assert sorted(r.request_id for r in rows) == sorted(f"req_{n}" for n in logged)


async def test_a_tenth_logs_exactly_a_tenth_of_many_calls() -> None:
    logs = MemoryRequestLogs()
    books = accounting(logs, 0.1)

    for call in calls(1000):
        books.interactive(call)
    await books.flush()

    assert len(await everything(logs)) == 100


async def test_failures_are_logged_whatever_the_rate() -> None:
    logs = MemoryRequestLogs()
    books = accounting(logs, 0.0)

    for call in calls(3) + calls(2, status="failed", status_code=500, cost_usd=0.0):
        books.interactive(call)
    await books.flush()

    rows = await everything(logs)
    assert [r.status for r in rows] == ["failed", "failed"]


@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
async def test_usage_spend_budgets_and_metrics_count_every_call(rate: float) -> None:
    logs = MemoryRequestLogs()
    books = accounting(logs, rate)
    key = Principal(key_id="key_a", name="a", budget_usd=10.0)
    assert await books.budgets.remaining(key) == 10.0  # read once, then grown in memory
    made = calls(40, cost_usd=0.125) + calls(4, status="failed", status_code=500, cost_usd=0.0)

    for call in made:
        books.interactive(call)
    await books.flush()

    report = await logs.usage(UsageQuery(interval="hour"))
    assert report.interactive.requests == 44
    assert report.interactive.errors == 4
    assert report.interactive.input_tokens == sum(c.usage.input_tokens for c in made)
    assert report.interactive.output_tokens == sum(c.usage.output_tokens for c in made)
    assert report.interactive.cost_usd == pytest.approx(5.0)
    assert await logs.spent("key_a", None) == pytest.approx(5.0)
    assert await logs.spent("key_a", T0) == pytest.approx(5.0)  # a period's start
    assert await books.budgets.remaining(key) == pytest.approx(5.0)
    assert await Budgets(logs).remaining(key) == pytest.approx(5.0)  # from the store alone
    metrics = books._metrics.render()[0].decode()
    assert 'status="succeeded"} 40.0' in metrics
    assert 'status="failed"} 4.0' in metrics


async def test_retention_takes_the_unlogged_calls_of_the_hours_it_ends() -> None:
    logs = MemoryRequestLogs()
    books = accounting(logs, 0.0)
    for call in calls(5) + [replace(c, created_at_ms=T0 + 2 * HOUR_MS) for c in calls(3)]:
        books.interactive(call)
    await books.flush()
    assert (await logs.usage(UsageQuery(interval="hour"))).interactive.requests == 8

    await logs.delete_older_than(T0 + HOUR_MS)

    assert (await logs.usage(UsageQuery(interval="hour"))).interactive.requests == 3
    assert await logs.spent("key_a", None) == pytest.approx(0.75)
    assert await everything(logs, LogFilter()) == []


class CountedLogs(MemoryRequestLogs):
    """The in-memory request log, counting the reads of a key's spend."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def spent(self, key_id: str, since_ms: int | None) -> float:
        self.reads += 1
        return await super().spent(key_id, since_ms)


async def test_requests_that_find_a_keys_spend_due_share_one_read() -> None:
    logs = CountedLogs()
    await logs.insert(calls(4, cost_usd=0.5))
    budgets = Budgets(logs, refresh_seconds=3600)
    key = Principal(key_id="key_a", name="a", budget_usd=10.0)

    left = await asyncio.gather(*(budgets.remaining(key) for _ in range(20)))

    assert left == [8.0] * 20
    assert logs.reads == 1
    assert await budgets.remaining(key) == 8.0 and logs.reads == 1  # fresh: no read
    other = Principal(key_id="key_b", name="b", budget_usd=1.0)
    assert await asyncio.gather(budgets.remaining(other), budgets.remaining(key)) == [1.0, 8.0]
    assert logs.reads == 2
