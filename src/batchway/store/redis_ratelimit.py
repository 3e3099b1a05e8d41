"""Rate-limit windows in Redis, shared by every gateway process on the same Redis and prefix.

Each window is one hash, ``{prefix}:ratelimit:{subject}:{unit}:{seconds}``, mapping bucket
index to units charged. One Lua script per operation reads, decides and charges atomically.
Time arithmetic stays in Python (``batchway.core.ratelimit``): the script only sees bucket
indices, so both backends decide alike and no float crosses into Lua.

Time comes from each gateway host's clock. Hosts whose clocks are roughly in sync (NTP)
are fine. A host running behind charges the newest bucket already present, which counts for
longest. A host running ahead stops counting old buckets a little early (it may let through
what the last ``skew`` seconds of a window would have refused), but buckets are only deleted
``SKEW_MS`` after they left the window, so that it never erases what slower hosts still count.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio

from batchway.core.ratelimit import (
    BUCKETS,
    Decision,
    Limit,
    Ticket,
    WindowView,
    bucket_index,
    charge_cap,
    decide,
)
from batchway.errors import StoreError

__all__ = ["RedisRateLimiter"]

SKEW_MS = 1000  # buckets and keys outlive their window by this much, for skewed clocks

# KEYS: one window hash per charge. ARGV: per charge, the current bucket, the oldest bucket
# still in the window, the oldest bucket kept (older ones are deleted), the cap, the amount
# and the key's TTL in ms. Returns per charge: the bucket charged, units in the window
# before, has-newest, newest bucket, fits, frees-at.
_ACQUIRE = """
local out = {}
local allowed = true
local fields = {}
for i = 1, #KEYS do
  local a = (i - 1) * 6
  local field = ARGV[a + 1]
  local bucket = tonumber(field)
  local low = tonumber(ARGV[a + 2])
  local keep = tonumber(ARGV[a + 3])
  local cap = tonumber(ARGV[a + 4])
  local amount = tonumber(ARGV[a + 5])
  local flat = redis.call('HGETALL', KEYS[i])
  local live = {}
  local used = 0
  local newest = nil
  local newest_field = nil
  for j = 1, #flat, 2 do
    local b = tonumber(flat[j])
    if b < keep then
      redis.call('HDEL', KEYS[i], flat[j])
    elseif b >= low then
      local v = tonumber(flat[j + 1])
      used = used + v
      live[#live + 1] = {b, v}
      if newest == nil or b > newest then
        newest = b
        newest_field = flat[j]
      end
    end
  end
  -- a clock running behind charges the newest bucket, which stays longest
  if newest ~= nil and newest > bucket then
    bucket = newest
    field = newest_field
  end
  fields[i] = field
  local fits = 1
  local frees = 0
  if not (amount == 0 or used <= 0 or used + amount <= cap) then
    fits = 0
    allowed = false
    table.sort(live, function(x, y) return x[1] < y[1] end)
    local left = used
    for k = 1, #live do
      left = left - live[k][2]
      if left <= 0 or left + amount <= cap then
        frees = live[k][1]
        break
      end
    end
  end
  local has_newest = 1
  if newest == nil then
    has_newest = 0
    newest = 0
  end
  local o = (i - 1) * 6
  out[o + 1] = bucket
  out[o + 2] = used
  out[o + 3] = has_newest
  out[o + 4] = newest
  out[o + 5] = fits
  out[o + 6] = frees
end
if allowed then
  for i = 1, #KEYS do
    local a = (i - 1) * 6
    redis.call('HINCRBY', KEYS[i], fields[i], ARGV[a + 5])
    redis.call('PEXPIRE', KEYS[i], ARGV[a + 6])
  end
end
return out
"""

# KEYS: the window hash of each tokens charge. ARGV: per charge, its bucket and correction.
# A bucket that already left its window (and was deleted) stays deleted.
_SETTLE = """
for i = 1, #KEYS do
  if redis.call('HEXISTS', KEYS[i], ARGV[2 * i - 1]) == 1 then
    redis.call('HINCRBY', KEYS[i], ARGV[2 * i - 1], ARGV[2 * i])
  end
end
return 0
"""


class RedisRateLimiter:
    """Windows in Redis: one atomic script per acquire or settle (``EVALSHA``).

    ``clock`` is the production wall clock unless a test drives it. The keys of one acquire
    may belong to several subjects, so under Redis Cluster put them in one slot with a
    hash-tag prefix such as ``{batchway}``.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        clock: Callable[[], float] = time.time,
        timeout_seconds: float = 5.0,
    ) -> None:
        # every command bounded: a Redis that stops answering is an error, not a hang
        self._redis = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )
        self._prefix = prefix
        self._clock = clock
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._settle = self._redis.register_script(_SETTLE)

    def _key(self, subject: str, limit: Limit) -> str:
        # float(): a window of 60 and one of 60.0 are the same window
        return f"{self._prefix}:ratelimit:{subject}:{limit.unit}:{float(limit.seconds)!r}"

    async def acquire(
        self, subject: str, charges: Sequence[tuple[Limit, int]], *, share: float = 1.0
    ) -> Decision:
        """See :meth:`batchway.core.ratelimit.RateLimiter.acquire`."""
        if not 0.0 < share <= 1.0:
            raise ValueError(f"share must be in (0, 1], not {share!r}")
        now = self._clock()
        keys: list[str] = []
        args: list[int] = []
        for limit, amount in charges:
            if amount < 0:
                raise ValueError(f"a charge amount must be >= 0, not {amount}")
            bucket = bucket_index(limit, now)
            width_ms = limit.seconds / BUCKETS * 1000
            keep = bucket - BUCKETS - math.ceil(SKEW_MS / width_ms)
            ttl_ms = math.ceil(width_ms * (BUCKETS + 1)) + SKEW_MS
            keys.append(self._key(subject, limit))
            args += [bucket, bucket - BUCKETS, keep, charge_cap(limit, share), amount, ttl_ms]
        reply = await self._run(self._acquire, keys, args) if keys else []
        views: list[WindowView] = []
        for i in range(0, len(reply), 6):
            bucket, used, has_newest, newest, fits, frees = reply[i : i + 6]
            views.append(
                (
                    int(bucket),
                    int(used),
                    int(newest) if has_newest else None,
                    None if fits else int(frees),
                )
            )
        return decide(subject, charges, now, views)

    async def settle(self, ticket: Ticket, tokens: int) -> None:
        """See :meth:`batchway.core.ratelimit.RateLimiter.settle`."""
        keys: list[str] = []
        args: list[int] = []
        for limit, charged, bucket in ticket.charges:
            if limit.unit == "tokens" and tokens != charged:
                keys.append(self._key(ticket.subject, limit))
                args += [bucket, tokens - charged]
        if keys:
            await self._run(self._settle, keys, args)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()

    async def _run(self, script: Any, keys: list[str], args: list[int]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise StoreError(f"rate limiter: Redis failed: {exc}") from exc
