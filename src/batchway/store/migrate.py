"""Apply the Alembic migrations; run on every start (a no-op when the schema is current)."""

from __future__ import annotations

import asyncio
import fcntl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from batchway.errors import StoreError

__all__ = ["alembic_config", "migrate"]

_SCRIPTS = Path(__file__).with_name("migrations")
LOCK_WAIT_SECONDS = 300.0


def alembic_config(connection: Connection) -> AlembicConfig:
    """An Alembic config bound to an open connection (there is no alembic.ini)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["connection"] = connection
    return config


async def migrate(engine: AsyncEngine) -> None:
    """Bring the database schema up to the newest revision."""

    def upgrade(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), "head")

    async with _sqlite_file_lock(engine):
        async with engine.connect() as conn:
            # SQLite: take the write lock before reading the schema's revision as well;
            # PostgreSQL takes an advisory lock in env.py
            await conn.execution_options(sqlite_immediate=True)
            await conn.run_sync(upgrade)
            await conn.commit()


@asynccontextmanager
async def _sqlite_file_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Processes migrating one SQLite file take turns (``serve &`` then ``keys create`` on
    a new folder): Alembic runs SQLite's DDL outside a transaction, so the database's own
    lock does not cover a whole migration. An exclusive lock on ``<file>.migrate-lock``
    does; it is waited for at most ``LOCK_WAIT_SECONDS``."""
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.migrate-lock", "a+b") as lock:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"another process has been migrating {path} for over "
                        f"{LOCK_WAIT_SECONDS:.0f} s"
                    ) from None
                await asyncio.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
