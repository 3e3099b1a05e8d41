"""Alembic environment: runs on the connection ``batchway.store.migrate`` hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from batchway.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # several gateways starting at once: one migrates, the others wait for it
        connection.execute(text("SELECT pg_advisory_xact_lock(7259146032)"))
    context.run_migrations()
