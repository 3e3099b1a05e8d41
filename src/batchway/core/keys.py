"""Gateway keys: creation, and authentication from memory on the request path."""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import Mapping
from typing import Any

from batchway.core import clock
from batchway.core.ids import hash_key, new_api_key, new_id
from batchway.core.models import ApiKey, BudgetPeriod, Principal
from batchway.core.ports import KeyStore
from batchway.errors import AuthError, InvalidRequest, NotFound

__all__ = ["ADMIN", "MAX_KEY_BYTES", "MAX_KEY_LIMIT", "KeyService", "check_key_settings"]

ADMIN = Principal(key_id="admin", name="admin", is_admin=True)
_CACHE_ENTRIES = 10_000
# what ``update`` may change: the key's settings, never its id, hash or revocation
_UPDATABLE = frozenset(
    {
        "name",
        "models",
        "rpm",
        "rph",
        "tpm",
        "tph",
        "budget_usd",
        "budget_period",
        "max_storage_bytes",
        "max_files",
    }
)
_CACHE_SECONDS = 30.0  # how long a process trusts what it knows of a key (revocation delay)
# the largest rate limit or file count a key may carry: the store keeps them in 32-bit columns
MAX_KEY_LIMIT = 2**31 - 1
MAX_KEY_BYTES = 2**63 - 1  # the largest storage quota (a 64-bit column)
_COUNTS = {
    "rpm": MAX_KEY_LIMIT,
    "tpm": MAX_KEY_LIMIT,
    "tph": MAX_KEY_LIMIT,
    "rph": MAX_KEY_LIMIT,
    "max_files": MAX_KEY_LIMIT,
    "max_storage_bytes": MAX_KEY_BYTES,
}


def check_key_settings(settings: Mapping[str, Any]) -> None:
    """Refuse a limit out of what the store can hold, or a budget that is not a finite
    amount, with a 400 naming it (None, no limit, is always fine)."""
    for name, high in _COUNTS.items():
        value = settings.get(name)
        if value is not None and not 1 <= value <= high:
            raise InvalidRequest(f"{name} must be between 1 and {high}.", param=name)
    budget = settings.get("budget_usd")
    if budget is not None and not (math.isfinite(budget) and budget >= 0):
        raise InvalidRequest(
            "budget_usd must be a finite amount of at least 0.", param="budget_usd"
        )


class KeyService:
    """Creates keys and turns a presented key into a ``Principal``."""

    def __init__(self, store: KeyStore, admin_key: str | None) -> None:
        self._store = store
        self._admin_key = admin_key
        self._known: dict[str, tuple[float, Principal | None]] = {}
        self._by_id: dict[str, tuple[float, Principal | None]] = {}
        self._loading_by_id: dict[str, asyncio.Future[Principal | None]] = {}

    async def create(
        self,
        *,
        name: str,
        models: list[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        tph: int | None = None,
        rph: int | None = None,
        budget_usd: float | None = None,
        budget_period: BudgetPeriod | None = None,
        max_storage_bytes: int | None = None,
        max_files: int | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key; returns the record and the key itself (shown once, never stored)."""
        if not name.strip():
            raise InvalidRequest("name must not be empty", param="name")
        check_key_settings(
            {
                "rpm": rpm,
                "tpm": tpm,
                "tph": tph,
                "rph": rph,
                "budget_usd": budget_usd,
                "max_storage_bytes": max_storage_bytes,
                "max_files": max_files,
            }
        )
        secret = new_api_key()
        key = ApiKey(
            id=new_id("key"),
            name=name,
            key_hash=hash_key(secret),
            created_at=clock.now(),
            models=tuple(models) if models is not None else None,
            rpm=rpm,
            tpm=tpm,
            tph=tph,
            rph=rph,
            budget_usd=budget_usd,
            budget_period=budget_period,
            max_storage_bytes=max_storage_bytes,
            max_files=max_files,
        )
        await self._store.create_key(key)
        return key, secret

    async def list(self) -> list[ApiKey]:
        return await self._store.list_keys()

    async def update(self, key_id: str, changes: dict[str, Any]) -> ApiKey:
        """Change a key's name, models, limits, budget or quota (a None value clears a limit)
        and forget what this process knew of keys, so the change holds here at once."""
        unknown = sorted(set(changes) - _UPDATABLE)
        if unknown:
            raise InvalidRequest(f"A key has no setting {unknown[0]!r}.", param=unknown[0])
        if "name" in changes and not (changes["name"] or "").strip():
            raise InvalidRequest("name must not be empty", param="name")
        check_key_settings(changes)
        key = await self._store.update_key(key_id, changes)
        if key is None:
            raise NotFound(f"No key with id {key_id!r}.")
        self._forget()
        return key

    def _forget(self) -> None:
        self._known.clear()
        self._by_id.clear()

    async def revoke(self, key_id: str) -> None:
        """Mark a key revoked and forget what this process knew of keys (other processes
        trust theirs for up to ``_CACHE_SECONDS``). ``AdminService.revoke_key`` also
        cancels the key's batches."""
        if not await self._store.revoke_key(key_id):
            raise NotFound(f"No key with id {key_id!r}.")
        self._forget()

    async def principal_by_id(self, key_id: str) -> Principal | None:
        """The principal of a key id (its limits and budget), trusted for a few seconds."""
        known = self._by_id.get(key_id)
        if known is not None and known[0] > time.monotonic():
            return known[1]
        # many batch lines of one key ask at once when the entry runs out: one read for all
        loading = self._loading_by_id.get(key_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load_principal(key_id))
            self._loading_by_id[key_id] = loading
            loading.add_done_callback(lambda _: self._loading_by_id.pop(key_id, None))
        return await asyncio.shield(loading)

    async def _load_principal(self, key_id: str) -> Principal | None:
        key = await self._store.get_key(key_id)
        principal = key.principal() if key is not None else None
        if len(self._by_id) > _CACHE_ENTRIES:
            self._by_id.clear()
        self._by_id[key_id] = (time.monotonic() + _CACHE_SECONDS, principal)
        return principal

    async def active(self, key_id: str) -> ApiKey | None:
        """A key that is not revoked, read afresh (for sessions that name a key by id)."""
        key = await self._store.get_key(key_id)
        return key if key is not None and not key.revoked else None

    def is_admin(self, token: str) -> bool:
        return self._admin_key is not None and hmac.compare_digest(token, self._admin_key)

    async def authenticate(self, token: str | None) -> Principal:
        """The principal of a gateway key; raises ``AuthError`` for a missing or bad key."""
        if not token:
            raise AuthError(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
            )
        digest = hash_key(token)
        known = self._known.get(digest)
        if known is not None and known[0] > time.monotonic():
            principal = known[1]
        else:
            key = await self._store.key_by_hash(digest)
            principal = key.principal() if key is not None and not key.revoked else None
            if len(self._known) > _CACHE_ENTRIES:  # a flood of bad keys must not grow memory
                self._known.clear()
            self._known[digest] = (time.monotonic() + _CACHE_SECONDS, principal)
        if principal is None:
            raise AuthError("Incorrect API key provided.", code="invalid_api_key")
        return principal
