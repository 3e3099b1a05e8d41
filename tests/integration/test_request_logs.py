"""Request logs on the SQL store only: the fast insert's column list, accounting over a
database that refuses a row, and the usage kept per hour (``usage_hourly``) equal to the
logs grouped, as written and as migration 0012 fills it. On SQLite and on PostgreSQL.

What the ``RequestLogs`` port answers (listings, usage, spending, retention) is in its
contract, tests/contract/test_request_log_contract.py, on every implementation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from alembic import command
from sqlalchemy import select, text

from batchway.config import Config
from batchway.store.logs import SqlRequestLogs
from batchway.store.migrate import alembic_config, migrate
from batchway.store.sql import SqlStore, create_engine
from batchway.store.tables import usage_hourly
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


_GROUPED = text(
    "SELECT created_at_ms / 3600000 * 3600000, key_id, model, provider, kind, count(*),"
    " sum(CASE WHEN status != 'succeeded' THEN 1 ELSE 0 END), sum(input_tokens),"
    " sum(cached_tokens), sum(output_tokens), sum(cost_usd) FROM request_logs"
    " GROUP BY 1, 2, 3, 4, 5"
)


async def _hours(logs: SqlRequestLogs) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    """The rows of ``usage_hourly``, and the same grouped from the logs themselves."""
    async with logs._store._read() as conn:
        kept = await conn.execute(select(usage_hourly))
        grouped = await conn.execute(_GROUPED)
        return (
            {tuple(int(v) if isinstance(v, Decimal) else v for v in row) for row in kept},
            {tuple(int(v) if isinstance(v, Decimal) else v for v in row) for row in grouped},
        )


async def test_the_hours_kept_are_the_logs_grouped(logs: SqlRequestLogs) -> None:
    from tests.contract.test_usage_hours_contract import many_logs

    written = many_logs(4, 500, first_item=1)
    for start in range(0, len(written), 23):
        await logs.insert(written[start : start + 23])
    kept, grouped = await _hours(logs)
    assert kept == grouped and len(kept) > 100

    await logs.delete_older_than(written[0].created_at_ms + 36 * 3_600_000 + 1, chunk=50)
    kept, grouped = await _hours(logs)
    assert kept == grouped  # hours whose logs all went are gone too


async def test_the_migration_fills_the_hours_from_the_logs(database_url: str) -> None:
    from tests.contract.test_usage_hours_contract import many_logs

    engine = create_engine(Config(database=database_url).async_database_url)
    await migrate(engine)
    store = SqlStore(engine)
    logs = SqlRequestLogs(store)
    try:

        def to(revision: str) -> Any:
            def step(connection: Any) -> None:
                config = alembic_config(connection)
                if revision == "head":
                    command.upgrade(config, revision)
                else:
                    command.downgrade(config, revision)

            return step

        async with engine.connect() as conn:
            await conn.run_sync(to("0011"))
            await conn.commit()
        async with engine.begin() as conn:
            await insert_logs_only(conn, many_logs(5, 300, first_item=1))
        async with engine.connect() as conn:
            await conn.run_sync(to("head"))
            await conn.commit()

        kept, grouped = await _hours(logs)
        assert kept == grouped and len(grouped) > 50
    finally:
        await store.close()


async def insert_logs_only(conn: Any, rows: list[Any]) -> None:
    """Logs written as the code before migration 0012 wrote them: no hours kept."""
    from batchway.store.sql_items import _log_insert, _log_values

    await conn.exec_driver_sql(
        _log_insert(conn.dialect.paramstyle), [_log_values(log) for log in rows]
    )
