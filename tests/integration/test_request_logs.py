"""Request logs on the SQL store only: the fast insert's column list, and accounting over
a database that refuses a row. On SQLite and on PostgreSQL.

What the ``RequestLogs`` port answers (listings, usage, spending, retention) is in its
contract, tests/contract/test_request_log_contract.py, on every implementation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from batchway.config import Config
from batchway.store.logs import SqlRequestLogs
from batchway.store.migrate import migrate
from batchway.store.sql import SqlStore, create_engine
from tests.contract.factories import entry, everything, line


@pytest.fixture
async def logs(database_url: str) -> AsyncIterator[SqlRequestLogs]:
    engine = create_engine(Config(database=database_url).async_database_url)
    await migrate(engine)
    store = SqlStore(engine)
    try:
        yield SqlRequestLogs(store)
    finally:
        await store.close()


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
    from batchway.providers.registry import simulated_providers

    config = Config()
    return Accounting(
        pricing=CallPricing(PriceTable({}), Router(config), simulated_providers(config)),
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
