"""What the gateway adds to a synchronous request.

The fake upstream (zero latency) and ``batchway serve`` each run in their own process; this
process sends the same chat completions straight to the upstream (the baseline) and through
the gateway, with C requests in flight, alternating the two arms over rounds. Reported: the
added median latency (gateway minus direct, at C=1), requests/s of each arm, and the
gateway process's own CPU time per request (read from /proc) — its overhead per request.

    .venv/bin/python bench/proxy.py [--requests 3000] [--concurrency 1,32] [--rounds 2]
                                    [--api-key KEY]

``--api-key`` gives the provider a key (the fake upstream ignores it), so that every answer
is checked for it on its way back (masking); ``none`` (the default) sends no key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import httpx
import orjson
import uvloop
import yaml

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the process exited")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)


@dataclass
class Run:
    arm: str
    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    gateway_cpu_us: float | None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


async def _drive(url: str, headers: dict[str, str], requests: int, concurrency: int) -> Run:
    latencies: list[float] = []
    bodies = [
        orjson.dumps({"model": "fake-ok", "messages": [{"role": "user", "content": f"hello {i}"}]})
        for i in range(requests)
    ]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(body: bytes) -> None:
            started = time.perf_counter()
            async with session.post(url, data=body) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"{url} answered {response.status}")
            latencies.append(time.perf_counter() - started)

        for body in bodies[: min(50, requests)]:  # warm up the connections
            await one(body)
        latencies.clear()
        queue = iter(bodies)

        async def worker() -> None:
            for body in queue:
                await one(body)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return Run(
        arm="",
        concurrency=concurrency,
        requests=len(latencies),
        seconds=elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99) - 1] * 1000,
        gateway_cpu_us=None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--api-key", default="none")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bw-proxy-"))
    upstream_port, gateway_port = _free_port(), _free_port()
    upstream = _start(
        [sys.executable, "-m", "batchway.cli.main", "fake-upstream", "--port", str(upstream_port)],
        tmp / "upstream.log",
    )
    config = {
        "database": f"sqlite:///{tmp}/batchway.db",
        "files": str(tmp / "files"),
        "admin_key": "bench-admin",
        "providers": {
            "fake": {
                "kind": "openai-compatible",
                "base_url": f"http://{HOST}:{upstream_port}/v1",
                "api_key": args.api_key,
                "max_concurrency": 256,
            }
        },
        "models": {"fake-ok": {"provider": "fake", "model": "fake-ok"}},
        "worker": {"enabled": False},
    }
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    gateway = _start(
        [sys.executable, "-m", "batchway.cli.main", "serve", "--config", str(tmp / "config.yaml")]
        + ["--port", str(gateway_port)],
        tmp / "gateway.log",
    )
    try:
        _wait_until_up(f"http://{HOST}:{upstream_port}/v1/models", upstream)
        _wait_until_up(f"http://{HOST}:{gateway_port}/healthz", gateway)
        key = httpx.post(
            f"http://{HOST}:{gateway_port}/admin/keys",
            json={"name": "bench"},
            headers={"authorization": "Bearer bench-admin"},
        ).json()["key"]
        arms = {
            "direct": (f"http://{HOST}:{upstream_port}/v1/chat/completions", {}),
            "gateway": (
                f"http://{HOST}:{gateway_port}/v1/chat/completions",
                {"authorization": f"Bearer {key}"},
            ),
        }
        runs: list[Run] = []
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            for round_ in range(args.rounds):
                order = list(arms) if round_ % 2 == 0 else list(reversed(arms))
                for arm in order:
                    url, headers = arms[arm]
                    before = _cpu_seconds(gateway.pid)
                    run = uvloop.run(_drive(url, headers, args.requests, concurrency))
                    run.arm = arm
                    if arm == "gateway":
                        used = _cpu_seconds(gateway.pid) - before
                        run.gateway_cpu_us = used / (run.requests + 50) * 1e6
                    runs.append(run)
                    cpu = ""
                    if run.gateway_cpu_us is not None:
                        cpu = f"  gateway CPU {run.gateway_cpu_us:.0f} µs/req"
                    print(
                        f"C={concurrency:<3} {arm:8} {run.rps:8,.0f} req/s"
                        f"  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms{cpu}"
                    )
        _summary(runs)
        results = Path(__file__).with_name("results")
        results.mkdir(exist_ok=True)
        (results / "proxy.json").write_text(json.dumps([asdict(r) for r in runs], indent=2))
    finally:
        for process in (gateway, upstream):
            process.terminate()
            process.wait(10)


def _summary(runs: list[Run]) -> None:
    print("\n| C | arm | req/s | p50 ms | p99 ms | gateway CPU µs/req |")
    print("|---:|---|---:|---:|---:|---:|")
    for concurrency in sorted({r.concurrency for r in runs}):
        for arm in ("direct", "gateway"):
            mine = [r for r in runs if r.concurrency == concurrency and r.arm == arm]
            cpu = [r.gateway_cpu_us for r in mine if r.gateway_cpu_us is not None]
            cpu_text = f"{statistics.mean(cpu):.0f}" if cpu else "–"
            print(
                f"| {concurrency} | {arm} | {statistics.mean(r.rps for r in mine):,.0f} | "
                f"{statistics.mean(r.p50_ms for r in mine):.2f} | "
                f"{statistics.mean(r.p99_ms for r in mine):.2f} | {cpu_text} |"
            )
        direct = [r for r in runs if r.concurrency == concurrency and r.arm == "direct"]
        via = [r for r in runs if r.concurrency == concurrency and r.arm == "gateway"]
        added = statistics.mean(r.p50_ms for r in via) - statistics.mean(r.p50_ms for r in direct)
        ratio = statistics.mean(r.rps for r in via) / statistics.mean(r.rps for r in direct)
        print(
            f"C={concurrency}: added p50 latency {added:.3f} ms; gateway/direct req/s {ratio:.2f}"
        )


if __name__ == "__main__":
    main()
