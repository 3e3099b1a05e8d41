"""A batch against an upstream that enforces a rate limit: completion time and 429s.

The fake upstream runs in this process (in its own thread, with its own event loop) and
refuses, with a 429 and ``retry-after``, every request past ``R`` per rolling ``W`` seconds;
it counts what it served and what it refused. Two arms send the same N chat requests:

- ``gateway``: the gateway opened in-process on a fresh SQLite database, its provider told
  the same limit (``rpm: R``, ``rate_window_seconds: W``) and leaving ``interactive_share`` of
  it free; the N lines uploaded as a batch and ``worker.drain()`` timed.
- ``naive``: ``AsyncOpenAI`` with C concurrent tasks and the SDK's own retries (it honours
  ``retry-after``), as a hand-written client would do it.

Reported: completion time, its ratio to the ideal ``N / R × W`` (every slot of the limit
used) and to the ideal for the batch's share ``N / (R × (1 - share)) × W``; the upstream's 429
count; the most requests the upstream saw in any window of W.

Usage::

    .venv/bin/python bench/ratelimited.py [--lines 600] [--limit 200] [--window 2]
        [--share 0.2] [--concurrency 64] [--output PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import openai

from batchway.config import Config
from batchway.core.states import BatchStatus
from batchway.gateway import open_gateway
from batchway.server import serve_in_thread
from batchway.testing import FakeUpstream

MODEL = "fake-ok"


@dataclass
class ArmResult:
    arm: str
    lines: int
    seconds: float
    upstream_429s: int
    served: int
    max_in_window: int
    vs_ideal: float  # seconds / (N / R × W)
    vs_share_ideal: float | None  # seconds / (N / (R × (1 - share)) × W), gateway only


def chat_body(index: int) -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"line {index}"}]}


async def run_gateway(args: argparse.Namespace, base_url: str, workdir: Path) -> float:
    config = Config.model_validate(
        {
            "database": f"sqlite:///{workdir}/bench.db",
            "files": str(workdir / "files"),
            "providers": {
                "fake": {
                    "kind": "openai-compatible",
                    "base_url": base_url,
                    "api_key": "x",
                    "max_concurrency": args.concurrency,
                    "rpm": args.limit,
                    "rate_window_seconds": args.window,
                    "interactive_share": args.share,
                }
            },
            "models": {MODEL: {"provider": "fake", "model": MODEL}},
            "worker": {"enabled": False},
        }
    )
    data = b"".join(
        json.dumps(
            {"custom_id": f"l{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
        ).encode()
        + b"\n"
        for i, body in enumerate(map(chat_body, range(args.lines)))
    )
    async with open_gateway(config) as gateway:
        key, _ = await gateway.keys.create(name="bench")
        principal = key.principal()
        upload = await gateway.files.begin(principal, "batch")
        await upload.write(data)
        file = await gateway.files.finish(principal, upload, filename="b.jsonl", purpose="batch")
        started = time.perf_counter()
        batch = await gateway.batches.create(
            principal,
            input_file_id=file.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        await gateway.worker.drain()
        seconds = time.perf_counter() - started
        done = await gateway.batches.get(principal, batch.id)
        if done.status is not BatchStatus.COMPLETED or done.counts.succeeded != args.lines:
            raise RuntimeError(f"the batch ended {done.status.value}: {done.counts} {done.errors}")
    return seconds


async def run_naive(args: argparse.Namespace, base_url: str) -> float:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=10)
    indices = iter(range(args.lines))

    async def worker() -> None:
        for index in indices:
            await client.chat.completions.create(**chat_body(index))  # type: ignore[call-overload]

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    seconds = time.perf_counter() - started
    await client.close()
    return seconds


def measure(arm: str, args: argparse.Namespace, fake: FakeUpstream, base_url: str) -> ArmResult:
    fake.clear()
    with tempfile.TemporaryDirectory() as workdir:
        if arm == "gateway":
            seconds = asyncio.run(run_gateway(args, base_url, Path(workdir)))
        else:
            seconds = asyncio.run(run_naive(args, base_url))
    ideal = args.lines / args.limit * args.window
    share_ideal = args.lines / (args.limit * (1 - args.share)) * args.window
    return ArmResult(
        arm=arm,
        lines=args.lines,
        seconds=round(seconds, 3),
        upstream_429s=fake.rejected_429,
        served=fake.arrivals,
        max_in_window=fake.max_in_window(args.window),
        vs_ideal=round(seconds / ideal, 3),
        vs_share_ideal=round(seconds / share_ideal, 3) if arm == "gateway" else None,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=600)
    parser.add_argument("--limit", type=int, default=200, help="requests per window (R)")
    parser.add_argument("--window", type=float, default=2.0, help="window in seconds (W)")
    parser.add_argument("--share", type=float, default=0.2, help="left to interactive traffic")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--output", type=Path, default=Path("bench/results/ratelimited.json"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    fake = FakeUpstream(rate_limit=(args.limit, args.window))
    with serve_in_thread(fake) as handle:
        results = [measure(arm, args, fake, handle.url) for arm in ("gateway", "naive")]
    ideal = args.lines / args.limit * args.window
    print(
        f"N={args.lines} lines, upstream limit R={args.limit} per {args.window:g} s, "
        f"interactive share {args.share:g}, C={args.concurrency}; ideal N/R×W = {ideal:.2f} s"
    )
    print("| arm | seconds | × ideal | × ideal for its share | upstream 429s | max in a window |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        share = f"{r.vs_share_ideal:.2f}" if r.vs_share_ideal is not None else "–"
        print(
            f"| {r.arm} | {r.seconds:.2f} | {r.vs_ideal:.2f} | {share} | {r.upstream_429s} "
            f"| {r.max_in_window} |"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "results": [asdict(r) for r in results],
            },
            indent=2,
        )
    )
    if math.isfinite(ideal):
        print(f"results: {args.output}")


if __name__ == "__main__":
    main()
