"""Quotas: the rate limits of gateway keys and of providers, over one ``RateLimiter``.

Keys limit synchronous traffic (requests and tokens per minute, tokens per hour). Providers
limit everything sent to them: interactive requests may use all of a provider's limit,
batch lines only ``1 - interactive_share`` of it, so a big batch fills spare capacity
without starving live users. Token charges are estimates, settled to the real usage after
the call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from batchway.config import Config
from batchway.core.models import Principal
from batchway.core.ports import RateLimiter
from batchway.core.ratelimit import Decision, Limit, Ticket, hold
from batchway.errors import StoreError

T = TypeVar("T")

__all__ = ["Quotas"]

_MINUTE = 60.0
_HOUR = 3600.0

Charges = Sequence[tuple[Limit, int]]

log = logging.getLogger("batchway.quotas")
_WARN_EVERY_SECONDS = 30.0


class Quotas:
    """Checks and charges keys' and providers' rate limits."""

    def __init__(self, limiter: RateLimiter, config: Config) -> None:
        self._limiter = limiter
        self._warned_at = -_WARN_EVERY_SECONDS
        self._providers: dict[str, tuple[Limit | None, Limit | None, float]] = {
            name: (
                Limit("requests", p.rpm, p.rate_window_seconds) if p.rpm else None,
                Limit("tokens", p.tpm, p.rate_window_seconds) if p.tpm else None,
                1.0 - p.interactive_share,
            )
            for name, p in config.providers.items()
        }

    @property
    def counts_tokens(self) -> bool:
        """Whether any provider has a token limit (requests then need a token estimate)."""
        return any(tpm is not None for _, tpm, _ in self._providers.values())

    def provider_counts_tokens(self, provider: str) -> bool:
        limits = self._providers.get(provider)
        return limits is not None and limits[1] is not None

    def provider_limited(self, provider: str) -> bool:
        limits = self._providers.get(provider)
        return limits is not None and (limits[0] is not None or limits[1] is not None)

    def _provider_charges(self, provider: str, tokens: int) -> list[tuple[Limit, int]]:
        rpm, tpm, _ = self._providers[provider]
        charges = [(rpm, 1)] if rpm is not None else []
        if tpm is not None:
            charges.append((tpm, tokens))
        return charges

    async def check_key(self, principal: Principal, tokens: int) -> Decision | None:
        """Charge a synchronous request to its key; None when the key has no limits."""
        charges: list[tuple[Limit, int]] = []
        if principal.rpm is not None:
            charges.append((Limit("requests", principal.rpm, _MINUTE), 1))
        if principal.rph is not None:
            charges.append((Limit("requests", principal.rph, _HOUR), 1))
        if principal.tpm is not None:
            charges.append((Limit("tokens", principal.tpm, _MINUTE), tokens))
        if principal.tph is not None:
            charges.append((Limit("tokens", principal.tph, _HOUR), tokens))
        if not charges:
            return None
        return await self._open_on_failure(
            self._limiter.acquire(f"key:{principal.key_id}", charges), None
        )

    async def check_provider(self, provider: str, tokens: int) -> Decision | None:
        """Charge an interactive request to its provider (all of its limit is open to it)."""
        if not self.provider_limited(provider):
            return None
        return await self._open_on_failure(
            self._limiter.acquire(f"provider:{provider}", self._provider_charges(provider, tokens)),
            None,
        )

    async def hold_provider(self, provider: str, tokens: int) -> Ticket | None:
        """Wait until a batch line may go to its provider, within the batch share."""
        if not self.provider_limited(provider):
            return None
        share = self._providers[provider][2]
        return await self._open_on_failure(
            hold(
                self._limiter,
                f"provider:{provider}",
                self._provider_charges(provider, tokens),
                share=share,
            ),
            None,
        )

    async def settle(self, ticket: Ticket | None, tokens: int) -> None:
        """Correct the token charges of a call to what it really used."""
        if ticket is not None and any(limit.unit == "tokens" for limit, _, _ in ticket.charges):
            await self._open_on_failure(self._limiter.settle(ticket, tokens), None)

    async def _open_on_failure(self, step: Awaitable[T], fallback: T) -> T:
        """Run a limiter step; if the limiter's store (Redis) fails, let traffic through
        rather than fail it, and say so in the log now and then."""
        try:
            return await step
        except StoreError as exc:
            if time.monotonic() - self._warned_at >= _WARN_EVERY_SECONDS:
                self._warned_at = time.monotonic()
                log.warning(
                    "rate limiter unavailable: letting traffic through",
                    extra={"action": "limiter_failed", "error": exc.message},
                )
            return fallback
