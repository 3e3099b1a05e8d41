"""Scale-out: batch lines/s with 1, 2 and 4 worker processes on one PostgreSQL database.

The requirement: against a 200 ms upstream, 4 workers run at least 3.6× the lines/s of one.

Setup. The fake upstream runs in its own process and answers ``fake-slow`` after 200 ms
(``--latency``). For each worker count W (``--workers``, default 1,2,4) and each round:
a fresh PostgreSQL database; ``batchway serve --no-worker`` (the API) and W ``batchway
worker`` processes, as an operator runs them (each provider lane ``--concurrency`` calls
wide, no cluster-wide cap: the upstream's concurrency is not what is measured); a batch of
``--lines`` lines created over HTTP once every worker is up; then the batch's
``request_counts`` polled every 0.1 s. Lines/s is measured between the first poll that sees
a line done and the one that sees the last; the workers' start and the batch's validation
and finalization are outside it. Every process is stopped and the database dropped after
each run. Rounds alternate the order of W.

Usage::

    .venv/bin/python bench/scale.py [--workers 1,2,4] [--lines 6000] [--latency 0.2]
        [--concurrency 32] [--rounds 2] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import yaml
from _serve import HOST, free_port

ADMIN = "bench-admin"


def _serve_fake(port: int, latency: float) -> None:
    from batchway.server import serve_forever
    from batchway.testing import FakeUpstream

    fake = FakeUpstream(slow_seconds=latency, record_bodies=False, record_limit=1000)
    serve_forever(fake, host=HOST, port=port, shutdown_timeout=1)


def _wait_http(url: str, process: Any, what: str) -> None:
    for _ in range(600):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if not (process.is_alive() if hasattr(process, "is_alive") else process.poll() is None):
                break
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start")


async def _admin_sql(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _config(database: str, files: Path, upstream: str, concurrency: int) -> dict[str, Any]:
    return {
        "database": database,
        "files": str(files),
        "admin_key": ADMIN,
        "providers": {
            "fake": {
                "kind": "openai-compatible",
                "base_url": upstream,
                "api_key": "none",
                "max_concurrency": concurrency,
                "timeout_seconds": 30,
            }
        },
        "models": {"fake-slow": {"provider": "fake", "model": "fake-slow"}},
        "worker": {"enabled": True},
        "metrics": False,
    }


def _batch_lines(count: int) -> bytes:
    tag = secrets.token_hex(4)
    return b"".join(
        json.dumps(
            {
                "custom_id": f"line-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "fake-slow",
                    "messages": [{"role": "user", "content": f"{tag} {i}"}],
                },
            }
        ).encode()
        + b"\n"
        for i in range(count)
    )


def run_once(args: argparse.Namespace, workers: int, upstream: str) -> float:
    """Lines/s of one batch run by ``workers`` worker processes."""
    admin_url = args.postgres
    name = f"bw_scale_{secrets.token_hex(5)}"
    asyncio.run(_admin_sql(admin_url, f'CREATE DATABASE "{name}"'))
    database = admin_url.rsplit("/", 1)[0] + f"/{name}"
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = Path(folder) / "batchway.yaml"
            path.write_text(
                yaml.safe_dump(
                    _config(database, Path(folder) / "files", upstream, args.concurrency)
                )
            )
            port = free_port()
            command = [sys.executable, "-m", "batchway.cli.main"]
            log = open(Path(folder) / "processes.log", "ab")  # noqa: SIM115 - closed below
            api = subprocess.Popen(
                [*command, "serve", "-c", str(path), "--port", str(port), "--no-worker"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            processes.append(api)
            base = f"http://{HOST}:{port}"
            _wait_http(f"{base}/healthz", api, "the API")
            for _ in range(workers):
                processes.append(
                    subprocess.Popen(
                        [*command, "worker", "-c", str(path)], stdout=log, stderr=subprocess.STDOUT
                    )
                )
            time.sleep(2.0)  # the workers connect and go idle before the batch arrives
            key = httpx.post(
                f"{base}/admin/keys",
                json={"name": "bench"},
                headers={"authorization": f"Bearer {ADMIN}"},
            ).json()["key"]
            auth = {"authorization": f"Bearer {key}"}
            file_id = httpx.post(
                f"{base}/v1/files",
                headers=auth,
                files={"file": ("b.jsonl", _batch_lines(args.lines))},
                data={"purpose": "batch"},
                timeout=60,
            ).json()["id"]
            batch_id = httpx.post(
                f"{base}/v1/batches",
                headers=auth,
                json={
                    "input_file_id": file_id,
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                },
            ).json()["id"]
            first: tuple[float, int] | None = None
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                batch = httpx.get(f"{base}/v1/batches/{batch_id}", headers=auth).json()
                done = batch["request_counts"]["completed"] + batch["request_counts"]["failed"]
                now = time.monotonic()
                if done and first is None:
                    first = (now, done)
                if done >= args.lines:
                    assert batch["request_counts"]["failed"] == 0, batch
                    assert first is not None
                    return (done - first[1]) / (now - first[0])
                time.sleep(0.1)
            raise SystemExit("the batch did not finish in 30 minutes")
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
            asyncio.run(_admin_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if args.logs:
                Path(args.logs).mkdir(parents=True, exist_ok=True)
                target = Path(args.logs) / f"{name}-{workers}-workers.log"
                target.write_bytes((Path(folder) / "processes.log").read_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--lines", type=int, default=6000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--logs", help="keep the processes' logs in this folder")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "BATCHWAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]

    port = free_port()
    fake = mp.get_context("spawn").Process(
        target=_serve_fake, args=(port, args.latency), daemon=True
    )
    fake.start()
    _wait_http(f"http://{HOST}:{port}/v1/models", fake, "the fake upstream")
    results: dict[int, list[float]] = {w: [] for w in counts}
    try:
        for round_number in range(args.rounds):
            order = counts if round_number % 2 == 0 else list(reversed(counts))
            for workers in order:
                rate = run_once(args, workers, f"http://{HOST}:{port}/v1")
                results[workers].append(rate)
                print(
                    f"round {round_number + 1}: {workers} worker(s) {rate:8.1f} lines/s", flush=True
                )
    finally:
        fake.terminate()
        fake.join(10)
    base = statistics.median(results[counts[0]])
    ideal = args.concurrency / args.latency
    print(
        f"\n{args.lines} lines, {args.latency * 1000:.0f} ms upstream, "
        f"{args.concurrency} calls per worker (ideal {ideal:.0f} lines/s per worker)"
    )
    print("| workers | lines/s (median) | × one worker | of ideal |")
    print("|---:|---:|---:|---:|")
    for workers in counts:
        rate = statistics.median(results[workers])
        print(f"| {workers} | {rate:,.0f} | {rate / base:.2f} | {rate / (ideal * workers):.0%} |")


if __name__ == "__main__":
    main()
