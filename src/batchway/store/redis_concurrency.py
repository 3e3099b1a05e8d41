"""Cluster-wide concurrency pools in Redis: one hash per pool, ``{prefix}:concurrency:{pool}``,
holder → ``count:want:expires_ms:kind``. One Lua script decides and records a renewal
atomically, by the rule of ``batchway.core.concurrency.decide_grant``, on Redis's own clock
(so the hosts' clocks do not matter)."""

from __future__ import annotations

from typing import Any

import redis.asyncio

from batchway.core.ports import HolderKind
from batchway.errors import StoreError

__all__ = ["RedisConcurrencyPool"]

# KEYS[1]: the pool. ARGV: holder, want, busy, limit, ttl in ms, kind ('b' batch or 'i'
# interactive), cap, spare. Returns the grant.
_RENEW = """
local holder = ARGV[1]
local want = tonumber(ARGV[2])
local busy = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local kind = ARGV[6]
local cap = math.min(tonumber(ARGV[7]), limit)
local spare = tonumber(ARGV[8])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local flat = redis.call('HGETALL', KEYS[1])
local held, peers_held, unmet, contenders, starving = 0, 0, 0, 0, false
for i = 1, #flat, 2 do
  local name = flat[i]
  local count, wanted, expires, other = string.match(flat[i + 1], '(%d+):(%d+):(%d+):(%a)')
  count, wanted, expires = tonumber(count), tonumber(wanted), tonumber(expires)
  if expires <= now then
    redis.call('HDEL', KEYS[1], name)
  elseif name ~= holder then
    held = held + count
    if other == 'i' and wanted > count then unmet = unmet + wanted - count end
    if other == kind then
      peers_held = peers_held + count
      if wanted > count then starving = true end
      if wanted > 0 then contenders = contenders + 1 end
    end
  end
end
local free = limit - held
local share = limit
if kind == 'b' then
  free = math.min(free - unmet, cap - peers_held)
  share = cap
else
  local reserve = limit - cap - peers_held - want
  free = math.min(free, want + math.min(spare, math.max(0, reserve)))
end
local grant = math.max(0, math.min(want + spare, free))
if starving then
  if want > 0 then contenders = contenders + 1 end
  grant = math.min(grant, math.max(1, math.floor(share / math.max(contenders, 1))))
end
if want == 0 and busy == 0 and spare == 0 then
  redis.call('HDEL', KEYS[1], holder)
else
  local entry = math.max(grant, busy) .. ':' .. want .. ':' .. (now + ttl) .. ':' .. kind
  redis.call('HSET', KEYS[1], holder, entry)
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
end
return grant
"""

# KEYS[1]: the pool. Returns holder, count pairs of the live holders.
_HOLDERS = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local flat = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #flat, 2 do
  local count, _, expires = string.match(flat[i + 1], '(%d+):(%d+):(%d+)')
  if tonumber(expires) > now then
    out[#out + 1] = flat[i]
    out[#out + 1] = count
  end
end
return out
"""


class RedisConcurrencyPool:
    def __init__(self, url: str, prefix: str, *, timeout_seconds: float = 5.0) -> None:
        self._redis = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )
        self._prefix = prefix
        self._renew = self._redis.register_script(_RENEW)
        self._holders = self._redis.register_script(_HOLDERS)

    def _key(self, pool: str) -> str:
        return f"{self._prefix}:concurrency:{pool}"

    async def renew(
        self,
        pool: str,
        holder: str,
        *,
        want: int,
        busy: int,
        limit: int,
        ttl_seconds: float,
        kind: HolderKind = "interactive",
        cap: int | None = None,
        spare: int = 0,
    ) -> int:
        ttl_ms = max(1, round(ttl_seconds * 1000))
        cap = limit if cap is None else cap
        args = [holder, want, busy, limit, ttl_ms, kind[0], cap, spare]
        return int(await self._run(self._renew, [self._key(pool)], args))

    async def holders(self, pool: str) -> dict[str, int]:
        flat = await self._run(self._holders, [self._key(pool)], [])
        return {flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def close(self) -> None:
        await self._redis.aclose()

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc
