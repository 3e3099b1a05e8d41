"""What one rate-limit check in Redis costs the gateway's process, with and without hiredis.

With ``rate_limits.backend: redis`` a synchronous request with key limits makes a Redis
call (one Lua script for all of its windows) before it goes upstream. This bench runs
``RedisRateLimiter.acquire`` with a request and a token window, C at a time, in a child
process per arm — redis-py with its hiredis reply parser, and redis-py made to do without it
(a ``hiredis`` module that fails to import, put first on the path) — alternating the arms
over rounds, and reports the child's CPU time per check.

    .venv/bin/python bench/redis_client.py [--redis URL] [--checks 24000]
                                           [--concurrency 16] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


async def _checks(url: str, checks: int, concurrency: int) -> float:
    """CPU seconds per check, after a warm-up."""
    from batchway.core.ratelimit import Limit
    from batchway.store.redis_ratelimit import RedisRateLimiter

    limiter = RedisRateLimiter(url, f"bench-redis-{os.getpid()}")
    charges = [(Limit("requests", 10**9, 60.0), 1), (Limit("tokens", 10**9, 60.0), 30)]

    async def run(count: int) -> None:
        for _ in range(count):
            await limiter.acquire("key", charges)

    try:
        await run(200)
        started = time.process_time()
        await asyncio.gather(*(run(checks // concurrency) for _ in range(concurrency)))
        return (time.process_time() - started) / (checks // concurrency * concurrency)
    finally:
        await limiter.close()


def _child(args: argparse.Namespace) -> None:
    import redis.utils
    import uvloop

    cpu = uvloop.run(_checks(args.redis, args.checks, args.concurrency))
    print(f"{int(redis.utils.HIREDIS_AVAILABLE)} {cpu}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--checks", type=int, default=24_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    without = Path(tempfile.mkdtemp(prefix="bw-nohiredis-"))
    (without / "hiredis.py").write_text('raise ImportError("left out for the bench")\n')
    arms = {"hiredis": {}, "no hiredis": {"PYTHONPATH": str(without)}}
    results: dict[str, list[float]] = {arm: [] for arm in arms}
    for round_ in range(args.rounds):
        order = list(arms) if round_ % 2 == 0 else list(reversed(arms))
        for arm in order:
            output = subprocess.run(
                [sys.executable, __file__, "--child", *sys.argv[1:]],
                env={**os.environ, **arms[arm]},
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            expected = "1" if arm == "hiredis" else "0"
            if output[0] != expected:
                raise SystemExit(f"{arm}: the child ran with hiredis={output[0]}")
            results[arm].append(float(output[1]) * 1e6)
            print(f"round {round_ + 1}  {arm:10}  {results[arm][-1]:6.1f} µs CPU per check")
    print("| arm | µs CPU per check (median) | rounds |")
    print("|---|---:|---|")
    for arm, values in results.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {arm} | {statistics.median(values):.0f} | {rounds} |")


if __name__ == "__main__":
    main()
