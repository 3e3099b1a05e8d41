"""The statements on what keys store: inserting a file within its key's quota, what a key's
live files take, and finding and forgetting expired files.

A quota check and the insert it allows run in one write transaction that first locks the
key's row (``FOR UPDATE`` on PostgreSQL; SQLite serialises writers anyway), so two uploads
of one key at once are checked one after the other and never both pass a quota that fits
only one.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from batchway.core.models import StorageUse, StoredFile
from batchway.store._sql_base import SqlBase
from batchway.store.tables import api_keys, files

__all__ = ["SqlStorageStatements", "lock_key"]


async def lock_key(conn: AsyncConnection, key_id: str, *, exclusive: bool) -> bool | None:
    """Lock a key's row until the transaction ends: ``exclusive`` to serialise the key's
    quota checks, shared to keep it from being revoked meanwhile. Returns whether the key is
    revoked (None if there is no such key)."""
    row = (
        await conn.execute(
            select(api_keys.c.revoked)
            .where(api_keys.c.id == key_id)
            .with_for_update(read=not exclusive)
        )
    ).first()
    return bool(row.revoked) if row is not None else None


class SqlStorageStatements(SqlBase):
    """Files within quotas, and the expiry sweep."""

    @staticmethod
    def _live_files(owner: str | None, now: int) -> Any:
        clause = or_(files.c.expires_at.is_(None), files.c.expires_at > now)
        return clause if owner is None else and_(clause, files.c.owner == owner)

    @staticmethod
    async def _insert_file(conn: AsyncConnection, file: StoredFile, blob_key: str) -> None:
        await conn.execute(
            insert(files).values(
                id=file.id,
                owner=file.owner,
                filename=file.filename,
                purpose=file.purpose,
                bytes=file.bytes,
                created_at=file.created_at,
                expires_at=file.expires_at,
                status=file.status,
                blob_key=blob_key,
                sort_key=time.time_ns(),
            )
        )

    async def _storage_use(self, conn: AsyncConnection, owner: str, now: int) -> StorageUse:
        row = (
            await conn.execute(
                select(func.coalesce(func.sum(files.c.bytes), 0), func.count()).where(
                    self._live_files(owner, now)
                )
            )
        ).one()
        return StorageUse(bytes=int(row[0]), files=int(row[1]))

    async def storage_use(self, owner: str, now: int) -> StorageUse:
        """What the live files of ``owner`` take at ``now``."""
        async with self._read() as conn:
            return await self._storage_use(conn, owner, now)

    async def create_file_within(
        self,
        file: StoredFile,
        blob_key: str,
        *,
        now: int,
        max_bytes: int | None,
        max_files: int | None,
    ) -> StorageUse | None:
        """Insert ``file`` if its owner's live files still fit within ``max_bytes`` and
        ``max_files`` with it (None: no such limit). Returns None once inserted, or what the
        owner's files take when it did not fit (nothing is inserted then)."""
        async with self._write() as conn:
            if max_bytes is not None or max_files is not None:
                await lock_key(conn, file.owner, exclusive=True)
                use = await self._storage_use(conn, file.owner, now)
                over_bytes = max_bytes is not None and use.bytes + file.bytes > max_bytes
                over_files = max_files is not None and use.files + 1 > max_files
                if over_bytes or over_files:
                    return use
            await self._insert_file(conn, file, blob_key)
        return None

    async def expired_files(self, now: int, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` files expired at ``now``, oldest expiry first: (id, blob key)."""
        async with self._read() as conn:
            rows = await conn.execute(
                select(files.c.id, files.c.blob_key)
                .where(files.c.expires_at <= now)
                .order_by(files.c.expires_at, files.c.id)
                .limit(limit)
            )
            return [(row.id, row.blob_key) for row in rows]

    async def forget_expired_files(self, file_ids: list[str], now: int) -> int:
        """Delete the rows of these files if they are expired at ``now``; returns how many."""
        if not file_ids:
            return 0
        async with self._write() as conn:
            result = await conn.execute(
                delete(files).where(files.c.id.in_(file_ids), files.c.expires_at <= now)
            )
        return result.rowcount
