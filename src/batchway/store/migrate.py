"""Apply the Alembic migrations; run on every start (a no-op when the schema is current)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["alembic_config", "migrate"]

_SCRIPTS = Path(__file__).with_name("migrations")


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

    async with engine.connect() as conn:
        # SQLite: take the write lock before reading the schema's revision, so that two
        # processes starting on one new file (`serve &` then `keys create`) take turns
        # instead of one failing with "database is locked"; PostgreSQL locks in env.py
        await conn.execution_options(sqlite_immediate=True)
        await conn.run_sync(upgrade)
        await conn.commit()
