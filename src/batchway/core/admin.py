"""What the operator does with the admin key across keys and batches: revoking a key stops
its work, and any batch may be cancelled."""

from __future__ import annotations

import logging

from batchway.core.batches import BatchService
from batchway.core.keys import ADMIN, KeyService
from batchway.core.models import Batch

__all__ = ["AdminService"]

log = logging.getLogger("batchway.admin")


class AdminService:
    """Revokes keys together with their running batches, and cancels any batch."""

    def __init__(self, keys: KeyService, batches: BatchService) -> None:
        self._keys = keys
        self._batches = batches

    async def revoke_key(self, key_id: str) -> int:
        """Revoke a key, then cancel every batch of it that has not ended (lines not started
        end cancelled, lines in flight finish); returns how many batches began cancelling.

        The key is revoked first, and a batch of it can no longer be created once it is (see
        ``BatchService.create``), so no batch escapes the sweep. Revoking an already revoked
        key sweeps again, which finishes a revocation cut short.
        """
        await self._keys.revoke(key_id)
        cancelled = await self._batches.cancel_owned(key_id)
        log.info(
            "key revoked",
            extra={"action": "key_revoked", "key_id": key_id, "batches_cancelled": cancelled},
        )
        return cancelled

    async def cancel_batch(self, batch_id: str) -> Batch:
        """Cancel any key's batch, as its owner's cancel would."""
        return await self._batches.cancel(ADMIN, batch_id)
