"""Periodic upkeep that runs beside the request-log writer (in every gateway process, not in
the batch worker's loops): deleting expired files, their rows and blobs, in chunks.

Expired files are hidden from the moment they expire (retrieve, content, listing and batch
creation treat them as unknown); the sweep only gives their storage back.
"""

from __future__ import annotations

import asyncio
import logging

from batchway.config import FileExpiryConfig
from batchway.core.files import FileService

__all__ = ["Housekeeping"]

log = logging.getLogger("batchway.housekeeping")


class Housekeeping:
    """Sweeps expired files every ``interval_seconds``."""

    def __init__(self, files: FileService, settings: FileExpiryConfig) -> None:
        self._files = files
        self._settings = settings

    async def run(self) -> None:
        """Sweep now, then every interval, until cancelled."""
        while True:
            await self.sweep()
            await asyncio.sleep(self._settings.interval_seconds)

    async def sweep(self) -> int:
        """Delete the files expired by now; returns how many went (0 if the sweep failed:
        it is logged and tried again next time)."""
        try:
            removed = await self._files.delete_expired(chunk=self._settings.chunk)
        except Exception:
            log.exception("cannot delete expired files", extra={"action": "file_expiry_failed"})
            return 0
        if removed:
            log.info("deleted expired files", extra={"action": "file_expiry", "files": removed})
        return removed
