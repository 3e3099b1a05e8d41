"""Benchmark async HTTP clients for the gateway's upstream calls: httpx vs aiohttp.

A minimal, very fast upstream (raw ASGI app under uvicorn with httptools + uvloop) runs in a
separate process on 127.0.0.1 and answers ``POST /v1/chat/completions`` with a fixed ~400-byte
``chat.completion`` body. The main process drives it with one pooled client at a time, in a
bounded closed loop of C concurrent tasks, and records throughput, per-request latency and the
client process's CPU time per request (the gateway's own overhead per upstream call).

The machine this runs on is shared and noisy, so every figure is reported next to the other
client's figure measured in the same run (ratio aiohttp/httpx); rounds alternate the client
order so neither client always runs first.

Usage::

    .venv/bin/python bench/http_clients.py [--seconds N] [--concurrency 1,16,64,256]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import http.client
import json
import multiprocessing as mp
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import httpx
import orjson
import uvicorn
import uvloop

HOST = "127.0.0.1"
PATH = "/v1/chat/completions"
REQUEST_TIMEOUT_S = 30.0
MAX_REQUESTS_PER_WORKER = 5_000_000
STARTUP_TIMEOUT_S = 15.0
JSON_HEADERS = {"content-type": "application/json"}
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "http_clients.json"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


# --------------------------------------------------------------------------- payloads


def response_body() -> bytes:
    """A fixed ~400-byte OpenAI ``chat.completion`` response."""
    return orjson.dumps(
        {
            "id": "chatcmpl-bench0000000000000000000000",
            "object": "chat.completion",
            "created": 1795132800,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Paris has been the capital of France since the 10th century.",
                        "refusal": None,
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 24, "completion_tokens": 19, "total_tokens": 43},
            "system_fingerprint": "fp_bench000",
        }
    )


def request_body() -> bytes:
    """A pre-serialised ~300-byte chat completion request."""
    return orjson.dumps(
        {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are a concise assistant for batch jobs."},
                {
                    "role": "user",
                    "content": "What is the capital of France? Answer in one short sentence "
                    "and mention since when it has been the capital.",
                },
            ],
            "temperature": 0.2,
            "max_tokens": 64,
            "user": "bench-request-000001",
        }
    )


# --------------------------------------------------------------------------- upstream


def make_upstream_app(delay_s: float) -> Asgi:
    """A raw ASGI app: POST /v1/chat/completions -> fixed JSON body, after ``delay_s``."""
    body = response_body()
    ok_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    not_found_headers = [(b"content-type", b"text/plain"), (b"content-length", b"9")]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        more_body = True
        while more_body:
            message = await receive()
            more_body = bool(message.get("more_body", False))
        if scope["method"] != "POST" or scope["path"] != PATH:
            await send({"type": "http.response.start", "status": 404, "headers": not_found_headers})
            await send({"type": "http.response.body", "body": b"not found"})
            return
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        await send({"type": "http.response.start", "status": 200, "headers": ok_headers})
        await send({"type": "http.response.body", "body": body})

    return app


def serve_upstream(delay_s: float, port_out: Any) -> None:
    """Child-process entry point: bind a free loopback port, report it, serve forever."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(2048)
    port_out.send(sock.getsockname()[1])
    port_out.close()
    config = uvicorn.Config(
        make_upstream_app(delay_s),
        http="httptools",
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=2048,
    )
    uvicorn.Server(config).run(sockets=[sock])


@dataclass
class Upstream:
    """A running upstream server process."""

    process: mp.process.BaseProcess
    port: int
    delay_s: float

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{PATH}"

    def cpu_seconds(self) -> float | None:
        """User+system CPU time of the upstream process (Linux /proc), or None."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
        return ticks / os.sysconf("SC_CLK_TCK")


def wait_until_ready(port: int) -> None:
    """Poll the upstream with a real request until it answers 200 (bounded)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    for _ in range(300):
        conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
        try:
            conn.request("POST", PATH, body=request_body(), headers=JSON_HEADERS)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise RuntimeError(f"upstream on port {port} did not become ready")


def start_upstream(delay_s: float) -> Upstream:
    """Start the upstream in a separate (spawned) process and wait until it serves."""
    ctx = mp.get_context("spawn")
    parent_end, child_end = ctx.Pipe(duplex=False)
    process = ctx.Process(target=serve_upstream, args=(delay_s, child_end), daemon=True)
    process.start()
    child_end.close()
    if not parent_end.poll(STARTUP_TIMEOUT_S):
        stop_upstream_process(process)
        raise RuntimeError("upstream process did not report its port")
    port = int(parent_end.recv())
    parent_end.close()
    wait_until_ready(port)
    return Upstream(process=process, port=port, delay_s=delay_s)


def stop_upstream_process(process: mp.process.BaseProcess) -> None:
    """Terminate, then kill if needed; always bounded."""
    if process.is_alive():
        process.terminate()
        process.join(timeout=5)
    if process.is_alive():
        process.kill()
        process.join(timeout=5)


# --------------------------------------------------------------------------- clients


class Client(Protocol):
    """One pooled client, reused for every request of a run."""

    name: str

    async def post(self, url: str, body: bytes) -> int:
        """POST ``body``, read the full response body, return the status code."""
        ...

    async def aclose(self) -> None: ...


class HttpxClient:
    name = "httpx"

    def __init__(self, concurrency: int) -> None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT_S)

    async def post(self, url: str, body: bytes) -> int:
        resp = await self._client.post(url, content=body, headers=JSON_HEADERS)
        resp.content  # noqa: B018 - body is already read by post(); touch it like a caller would
        return resp.status_code

    async def aclose(self) -> None:
        await self._client.aclose()


class AiohttpClient:
    name = "aiohttp"

    def __init__(self, concurrency: int) -> None:
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def post(self, url: str, body: bytes) -> int:
        async with self._session.post(url, data=body, headers=JSON_HEADERS) as resp:
            await resp.read()
            return resp.status

    async def aclose(self) -> None:
        await self._session.close()


CLIENTS: dict[str, Callable[[int], Client]] = {
    "httpx": HttpxClient,
    "aiohttp": AiohttpClient,
}


# --------------------------------------------------------------------------- closed loop


@dataclass
class LoopStats:
    requests: int = 0
    errors: int = 0
    latencies_s: list[float] = field(default_factory=list)


async def worker(
    client: Client, url: str, body: bytes, deadline: float, min_requests: int, stats: LoopStats
) -> None:
    """Send requests back to back until the deadline (and at least ``min_requests``).

    Bounded by the per-worker cap here and by the caller's overall timeout.
    """
    clock = time.perf_counter
    for done in range(MAX_REQUESTS_PER_WORKER):
        start = clock()
        if start >= deadline and done >= min_requests:
            return
        try:
            status = await client.post(url, body)
        except (TimeoutError, httpx.HTTPError, aiohttp.ClientError, OSError):
            stats.errors += 1
            continue
        stats.latencies_s.append(clock() - start)
        if status == 200:
            stats.requests += 1
        else:
            stats.errors += 1


async def closed_loop(
    client: Client,
    url: str,
    body: bytes,
    concurrency: int,
    seconds: float,
    min_requests: int = 0,
) -> tuple[LoopStats, float]:
    """Run C workers for ``seconds``; return stats and the wall time until all finished."""
    stats = LoopStats()
    start = time.perf_counter()
    deadline = start + seconds
    tasks = [worker(client, url, body, deadline, min_requests, stats) for _ in range(concurrency)]
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 2 * REQUEST_TIMEOUT_S)
    return stats, time.perf_counter() - start


@dataclass
class RunResult:
    round: int
    client: str
    concurrency: int
    upstream_delay_ms: float
    requests: int
    errors: int
    wall_s: float
    req_per_s: float
    p50_ms: float
    p99_ms: float
    client_cpu_s: float
    client_cpu_us_per_req: float
    client_cpu_pct: float
    upstream_cpu_pct: float | None


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 if empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def measure(
    client_name: str,
    upstream: Upstream,
    concurrency: int,
    seconds: float,
    warmup: float,
    round_no: int,
) -> RunResult:
    """Warm up, then measure one (client, concurrency) cell with a fresh pooled client."""
    body = request_body()
    client = CLIENTS[client_name](concurrency)
    try:
        # Warm-up also makes every worker finish one request, so all C connections are open.
        await closed_loop(client, upstream.url, body, concurrency, warmup, min_requests=1)
        gc.collect()
        up_cpu0 = upstream.cpu_seconds()
        cpu0 = time.process_time()
        stats, wall = await closed_loop(client, upstream.url, body, concurrency, seconds)
        cpu = time.process_time() - cpu0
        up_cpu1 = upstream.cpu_seconds()
    finally:
        await client.aclose()
    return summarise(
        client_name, upstream, concurrency, round_no, stats, wall, cpu, up_cpu0, up_cpu1
    )


def summarise(
    client_name: str,
    upstream: Upstream,
    concurrency: int,
    round_no: int,
    stats: LoopStats,
    wall: float,
    cpu: float,
    up_cpu0: float | None,
    up_cpu1: float | None,
) -> RunResult:
    lat = sorted(stats.latencies_s)
    up_pct = None if up_cpu0 is None or up_cpu1 is None else 100 * (up_cpu1 - up_cpu0) / wall
    return RunResult(
        round=round_no,
        client=client_name,
        concurrency=concurrency,
        upstream_delay_ms=upstream.delay_s * 1000,
        requests=stats.requests,
        errors=stats.errors,
        wall_s=wall,
        req_per_s=stats.requests / wall,
        p50_ms=percentile(lat, 50) * 1000,
        p99_ms=percentile(lat, 99) * 1000,
        client_cpu_s=cpu,
        client_cpu_us_per_req=cpu / max(stats.requests, 1) * 1e6,
        client_cpu_pct=100 * cpu / wall,
        upstream_cpu_pct=up_pct,
    )


# --------------------------------------------------------------------------- orchestration


@dataclass
class Scenario:
    delay_s: float
    concurrencies: list[int]


def client_order(round_no: int) -> list[str]:
    """Alternate which client goes first, so neither always gets the 'fresh' machine."""
    names = list(CLIENTS)
    return names if round_no % 2 == 1 else names[::-1]


def run_scenario(scenario: Scenario, args: argparse.Namespace) -> list[RunResult]:
    """Start the upstream for this scenario and measure every cell, for every round."""
    upstream = start_upstream(scenario.delay_s)
    results: list[RunResult] = []
    try:
        for round_no in range(1, args.rounds + 1):
            for concurrency in scenario.concurrencies:
                for name in client_order(round_no):
                    result = run_cell(name, upstream, concurrency, args, round_no)
                    print_progress(result)
                    results.append(result)
    finally:
        stop_upstream_process(upstream.process)
    return results


def run_cell(
    name: str, upstream: Upstream, concurrency: int, args: argparse.Namespace, round_no: int
) -> RunResult:
    """One cell in its own event loop, so no state leaks between clients."""
    coro = measure(name, upstream, concurrency, args.seconds, args.warmup, round_no)
    if args.loop == "uvloop":
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    return asyncio.run(coro)


def print_progress(r: RunResult) -> None:
    print(
        f"  round {r.round} delay={r.upstream_delay_ms:g}ms {r.client:>7} C={r.concurrency:<4}"
        f" {r.req_per_s:9.0f} req/s  p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms"
        f"  cpu {r.client_cpu_us_per_req:6.1f} us/req  errors {r.errors}",
        file=sys.stderr,
        flush=True,
    )


# --------------------------------------------------------------------------- reporting


@dataclass
class Cell:
    """Mean over rounds of one (delay, concurrency, client) cell."""

    delay_ms: float
    concurrency: int
    client: str
    req_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_req: float
    cpu_pct: float
    upstream_cpu_pct: float | None
    errors: int


def group(results: list[RunResult]) -> dict[tuple[float, int, str], list[RunResult]]:
    groups: dict[tuple[float, int, str], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.upstream_delay_ms, r.concurrency, r.client), []).append(r)
    return groups


def mean_cell(key: tuple[float, int, str], runs: list[RunResult]) -> Cell:
    ups = [r.upstream_cpu_pct for r in runs if r.upstream_cpu_pct is not None]
    return Cell(
        delay_ms=key[0],
        concurrency=key[1],
        client=key[2],
        req_per_s=statistics.fmean(r.req_per_s for r in runs),
        p50_ms=statistics.fmean(r.p50_ms for r in runs),
        p99_ms=statistics.fmean(r.p99_ms for r in runs),
        cpu_us_per_req=statistics.fmean(r.client_cpu_us_per_req for r in runs),
        cpu_pct=statistics.fmean(r.client_cpu_pct for r in runs),
        upstream_cpu_pct=statistics.fmean(ups) if ups else None,
        errors=sum(r.errors for r in runs),
    )


def cells(results: list[RunResult]) -> list[Cell]:
    return [mean_cell(key, runs) for key, runs in group(results).items()]


def ratio(numerator: float, denominator: float) -> float:
    """numerator/denominator, NaN when the baseline is zero (e.g. no request completed)."""
    return numerator / denominator if denominator else float("nan")


def per_round_ratios(
    results: list[RunResult], delay_ms: float, c: int
) -> list[tuple[float, float]]:
    """(req/s ratio, CPU/req ratio) aiohttp/httpx for each round of one level."""
    by_round: dict[int, dict[str, RunResult]] = {}
    for r in results:
        if r.upstream_delay_ms == delay_ms and r.concurrency == c:
            by_round.setdefault(r.round, {})[r.client] = r
    out = []
    for pair in by_round.values():
        a, h = pair["aiohttp"], pair["httpx"]
        out.append(
            (
                ratio(a.req_per_s, h.req_per_s),
                ratio(a.client_cpu_us_per_req, h.client_cpu_us_per_req),
            )
        )
    return out


def fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def results_table(all_cells: list[Cell]) -> str:
    lines = [
        "| upstream delay | client | concurrency | req/s | p50 ms | p99 ms "
        "| client CPU µs/req | client CPU % | upstream CPU % |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in sorted(all_cells, key=lambda x: (x.delay_ms, x.concurrency, x.client != "httpx")):
        lines.append(
            f"| {c.delay_ms:g} ms | {c.client} | {c.concurrency} | {c.req_per_s:,.0f} "
            f"| {c.p50_ms:.2f} | {c.p99_ms:.2f} | {c.cpu_us_per_req:.0f} "
            f"| {c.cpu_pct:.0f} | {fmt_pct(c.upstream_cpu_pct)} |"
        )
    return "\n".join(lines)


def ratio_rows(results: list[RunResult], all_cells: list[Cell]) -> list[dict[str, Any]]:
    index = {(c.delay_ms, c.concurrency, c.client): c for c in all_cells}
    rows = []
    for delay_ms, conc in sorted({(c.delay_ms, c.concurrency) for c in all_cells}):
        a, h = index[(delay_ms, conc, "aiohttp")], index[(delay_ms, conc, "httpx")]
        per_round = per_round_ratios(results, delay_ms, conc)
        rows.append(
            {
                "upstream_delay_ms": delay_ms,
                "concurrency": conc,
                "rps_ratio": ratio(a.req_per_s, h.req_per_s),
                "cpu_per_req_ratio": ratio(a.cpu_us_per_req, h.cpu_us_per_req),
                "rps_ratio_rounds": [p[0] for p in per_round],
                "cpu_per_req_ratio_rounds": [p[1] for p in per_round],
            }
        )
    return rows


def fmt_range(values: list[float]) -> str:
    return f"{min(values):.3g}–{max(values):.3g}" if len(values) > 1 else f"{values[0]:.3g}"


def ratio_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| upstream delay | concurrency | aiohttp/httpx req/s | (per-round range) "
        "| aiohttp/httpx CPU µs/req | (per-round range) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['upstream_delay_ms']:g} ms | {row['concurrency']} "
            f"| **{row['rps_ratio']:.3g}** | {fmt_range(row['rps_ratio_rounds'])} "
            f"| **{row['cpu_per_req_ratio']:.3g}** | {fmt_range(row['cpu_per_req_ratio_rounds'])} |"
        )
    return "\n".join(lines)


def write_json(
    path: Path, args: argparse.Namespace, results: list[RunResult], rows: list[dict[str, Any]]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "meta": {
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "httpx": httpx.__version__,
            "aiohttp": aiohttp.__version__,
            "uvicorn": uvicorn.__version__,
            "uvloop": uvloop.__version__,
            "args": vars(args),
        },
        "runs": [asdict(r) for r in results],
        "ratios": rows,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per cell")
    p.add_argument("--concurrency", default="1,16,64,256", help="comma-separated levels")
    p.add_argument("--rounds", type=int, default=2, help="rounds; client order alternates")
    p.add_argument("--latency-ms", type=float, default=50.0, help="delay of the latency upstream")
    p.add_argument("--latency-concurrency", type=int, default=256, help="C for the latency run")
    p.add_argument("--no-latency", action="store_true", help="skip the latency upstream")
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop", help="client loop")
    p.add_argument("--json", type=Path, default=RESULTS_PATH, help="where to write JSON")
    p.add_argument("--no-json", action="store_true", help="do not write JSON")
    args = p.parse_args(argv)
    args.concurrency = [int(x) for x in args.concurrency.split(",") if x.strip()]
    if not (0 < args.seconds <= 60 and 0 <= args.warmup <= 30 and 1 <= args.rounds <= 10):
        p.error("--seconds must be in (0, 60], --warmup in [0, 30], --rounds in [1, 10]")
    if any(not 1 <= c <= 1024 for c in [*args.concurrency, args.latency_concurrency]):
        p.error("concurrency levels must be in [1, 1024]")
    return args


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    out = [Scenario(delay_s=0.0, concurrencies=args.concurrency)]
    if not args.no_latency:
        out.append(Scenario(args.latency_ms / 1000, [args.latency_concurrency]))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"httpx {httpx.__version__}, aiohttp {aiohttp.__version__}, client loop {args.loop}, "
        f"{os.cpu_count()} CPUs, {args.rounds} round(s) x {args.seconds:g}s "
        f"(+{args.warmup:g}s warm-up) per cell",
        file=sys.stderr,
    )
    results: list[RunResult] = []
    for scenario in scenarios(args):
        results.extend(run_scenario(scenario, args))
    all_cells = cells(results)
    rows = ratio_rows(results, all_cells)
    print("\nMean over rounds:\n")
    print(results_table(all_cells))
    print(
        "\nRatio aiohttp/httpx (same run; req/s >1 = aiohttp faster, CPU <1 = aiohttp cheaper):\n"
    )
    print(ratio_table(rows))
    if any(c.errors for c in all_cells):
        print("\nWARNING: some requests failed; see the errors column in the JSON.")
    if not args.no_json:
        write_json(args.json, args, results, rows)
        print(f"\nJSON written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
