"""What the gateway adds to a synchronous request.

The fake upstream (zero latency) and ``batchway serve`` each run in their own process; this
process sends the same chat completions straight to the upstream (the baseline) and through
the gateway, with C requests in flight, alternating the two arms over rounds. Reported: the
added median latency (gateway minus direct, at C=1), requests/s of each arm, and the
gateway process's own CPU time per request (read from /proc) — its overhead per request —
and the part of it spent in threads other than the event loop's (on SQLite, the driver's
thread, which writes the request-log rows).

    .venv/bin/python bench/proxy.py [--requests 3000] [--concurrency 1,32] [--rounds 2]
                                    [--api-key KEY] [--client aiohttp|wrk] [--seconds 10]
                                    [--pin] [--sample-rate R] [--upstream-delay S]
                                    [--max-concurrency N] [--limits] [--redis URL]

``--api-key`` gives the provider a key (the fake upstream ignores it), so that every answer
is checked for it on its way back (masking); ``none`` (the default) sends no key.

``--client wrk`` sends the requests with wrk (Debian's ``wrk`` package; one thread, a Lua
script POSTing the chat completion) for ``--seconds`` per run after a 2 s warm-up, instead
of this process's aiohttp client: the client then costs far less CPU than the gateway.
``--pin`` pins the client to CPU 0 and the gateway to CPU 1 (taskset; the upstream runs
anywhere), as one measures on a two-core machine. ``--sample-rate`` sets the gateway's
``logs.sync_sample_rate`` (left out of the config when not given, so older code runs too).
``--upstream-delay`` makes every upstream answer take that many seconds (the fake's
``fake-slow``), and ``--max-concurrency`` sets the provider's ``max_concurrency`` (the
default, when not given). ``--limits`` gives the bench's key rate limits (requests and
tokens per minute) and a budget, all far above what the run uses, so that every request
passes the checks without being refused. ``--redis`` counts rate limits and the provider's
shared concurrency in that Redis (``rate_limits.backend: redis``), as a replica of a cluster
does: every call then holds room in the provider's cluster-wide pool.

``--floor`` adds a third arm, ``floor``: a bare relay on the gateway's own stack (uvicorn with
httptools and uvloop, one aiohttp session; ``bench/_relay.py``), pinned as the gateway is. It
does nothing of its own, so gateway minus floor is what the gateway's own work costs: its
CPU per request and its added median, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
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
from _serve import HOST, cpu_seconds, free_port


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


def _start(command: list[str], log: Path, pin: int | None) -> subprocess.Popen[bytes]:
    """Start ``command``; ``pin``: on that CPU only (the pid is the command's own: taskset
    execs it)."""
    if pin is not None:
        command = ["taskset", "-c", str(pin), *command]
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)


@dataclass
class Run:
    arm: str
    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float | None
    off_loop_cpu_us: float | None = None  # of it, in threads other than the event loop's

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


async def _drive(
    url: str, headers: dict[str, str], requests: int, concurrency: int, model: str
) -> Run:
    latencies: list[float] = []
    bodies = [
        orjson.dumps({"model": model, "messages": [{"role": "user", "content": f"hello {i}"}]})
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
        server_cpu_us=None,
    )


_WRK_SCRIPT = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
{headers}
"""


def _wrk_script(tmp: Path, arm: str, headers: dict[str, str], model: str) -> Path:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hello wrk"}]})
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    script = tmp / f"{arm}.lua"
    script.write_text(_WRK_SCRIPT.format(body=body, headers=lines))
    return script


def _wrk_ms(value: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * factor
    raise ValueError(value)


def _cpu(pid: int) -> tuple[float, float]:
    """A server's CPU seconds: the whole process's, and its main thread's (the event loop)."""
    return cpu_seconds(pid), cpu_seconds(pid, main_thread=True)


def _minus(after: tuple[float, float], before: tuple[float, float]) -> tuple[float, float]:
    return after[0] - before[0], after[1] - before[1]


def _drive_wrk(
    url: str, script: Path, seconds: int, concurrency: int, pin: bool, server: int
) -> tuple[Run, tuple[float, float]]:
    """One run of wrk (after a 2 s warm-up run whose figures are dropped), and the CPU
    seconds the process ``server`` used during it (all of it, its main thread's)."""
    taskset = ["taskset", "-c", "0"] if pin else []
    command = [*taskset, "wrk", "-t1", f"-c{concurrency}", "--latency", "-s", str(script)]
    subprocess.run([*command, "-d2s", url], check=True, capture_output=True)
    before = _cpu(server)
    started = time.perf_counter()
    output = subprocess.run(
        [*command, f"-d{seconds}s", url], check=True, capture_output=True, text=True
    ).stdout
    elapsed = time.perf_counter() - started
    used = _minus(_cpu(server), before)
    if "Non-2xx" in output or "Socket errors" in output:
        raise SystemExit(f"{url}: wrk saw failures\n{output}")
    percentiles = {}
    requests = 0
    wrk_seconds = elapsed
    for line in output.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] in ("50%", "99%"):
            percentiles[fields[0]] = _wrk_ms(fields[1])
        if "requests in" in line:
            requests = int(fields[0])
            wrk_seconds = _wrk_ms(fields[3].rstrip(",")) / 1000
    run = Run(
        arm="",
        concurrency=concurrency,
        requests=requests,
        seconds=wrk_seconds,
        p50_ms=percentiles["50%"],
        p99_ms=percentiles["99%"],
        server_cpu_us=None,
    )
    return run, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--api-key", default="none")
    parser.add_argument("--client", choices=("aiohttp", "wrk"), default="aiohttp")
    parser.add_argument("--seconds", type=int, default=10)  # per run, with wrk
    parser.add_argument("--pin", action="store_true")
    parser.add_argument("--sample-rate", type=float)
    parser.add_argument("--upstream-delay", type=float)
    parser.add_argument("--max-concurrency", type=int)
    parser.add_argument("--limits", action="store_true")
    parser.add_argument("--redis")
    parser.add_argument("--floor", action="store_true")
    args = parser.parse_args()
    if args.client == "wrk" and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    if args.pin:
        os.sched_setaffinity(0, {0})  # this process (the aiohttp client) on CPU 0

    tmp = Path(tempfile.mkdtemp(prefix="bw-proxy-"))
    upstream_port, gateway_port = free_port(), free_port()
    upstream_command = [sys.executable, "-m", "batchway.cli.main", "fake-upstream"]
    upstream_model = "fake-ok"
    if args.upstream_delay is not None:
        upstream_command += ["--slow-seconds", str(args.upstream_delay)]
        upstream_model = "fake-slow"
    upstream = _start(
        [*upstream_command, "--port", str(upstream_port)],
        tmp / "upstream.log",
        pin=None,
    )
    provider: dict[str, object] = {
        "kind": "openai-compatible",
        "base_url": f"http://{HOST}:{upstream_port}/v1",
        "api_key": args.api_key,
    }
    if args.max_concurrency is not None:
        provider["max_concurrency"] = args.max_concurrency
    config: dict[str, object] = {
        "database": f"sqlite:///{tmp}/batchway.db",
        "files": str(tmp / "files"),
        "admin_key": "bench-admin",
        "providers": {"fake": provider},
        "models": {"fake-ok": {"provider": "fake", "model": upstream_model}},
        "worker": {"enabled": False},
    }
    if args.sample_rate is not None:
        config["logs"] = {"sync_sample_rate": args.sample_rate}
    if args.redis is not None:
        prefix = f"bench-proxy-{os.getpid()}"
        config["rate_limits"] = {"backend": "redis", "redis_url": args.redis, "prefix": prefix}
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    gateway = _start(
        [sys.executable, "-m", "batchway.cli.main", "serve", "--config", str(tmp / "config.yaml")]
        + ["--port", str(gateway_port)],
        tmp / "gateway.log",
        pin=1 if args.pin else None,
    )
    servers = {"gateway": gateway}
    if args.floor:
        relay_port = free_port()
        upstream_url = f"http://{HOST}:{upstream_port}/v1/chat/completions"
        servers["floor"] = _start(
            [sys.executable, str(Path(__file__).with_name("_relay.py"))]
            + ["--port", str(relay_port), "--upstream", upstream_url],
            tmp / "relay.log",
            pin=1 if args.pin else None,
        )
    try:
        _wait_until_up(f"http://{HOST}:{upstream_port}/v1/models", upstream)
        _wait_until_up(f"http://{HOST}:{gateway_port}/healthz", gateway)
        limits = {"rpm": 10**9, "tpm": 2 * 10**9, "budget_usd": 10**6} if args.limits else {}
        key = httpx.post(
            f"http://{HOST}:{gateway_port}/admin/keys",
            json={"name": "bench", **limits},
            headers={"authorization": "Bearer bench-admin"},
        ).json()["key"]
        arms = {
            "direct": (f"http://{HOST}:{upstream_port}/v1/chat/completions", {}),
            "gateway": (
                f"http://{HOST}:{gateway_port}/v1/chat/completions",
                {"authorization": f"Bearer {key}"},
            ),
        }
        models = {"direct": upstream_model, "gateway": "fake-ok"}
        if args.floor:
            arms["floor"] = (f"http://{HOST}:{relay_port}/", {})
            models["floor"] = upstream_model
            _wait_until_up(arms["floor"][0], servers["floor"])
        scripts = {arm: _wrk_script(tmp, arm, arms[arm][1], models[arm]) for arm in arms}
        runs: list[Run] = []
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            for round_ in range(args.rounds):
                order = list(arms) if round_ % 2 == 0 else list(reversed(arms))
                for arm in order:
                    url, headers = arms[arm]
                    server = servers.get(arm, gateway).pid  # direct: the gateway idles
                    if args.client == "wrk":
                        run, used = _drive_wrk(
                            url, scripts[arm], args.seconds, concurrency, args.pin, server
                        )
                        handled = run.requests
                    else:
                        before = _cpu(server)
                        run = uvloop.run(
                            _drive(url, headers, args.requests, concurrency, models[arm])
                        )
                        used = _minus(_cpu(server), before)
                        handled = run.requests + 50  # the warm-up's too
                    run.arm = arm
                    if arm in servers:
                        run.server_cpu_us = used[0] / handled * 1e6
                        run.off_loop_cpu_us = (used[0] - used[1]) / handled * 1e6
                    runs.append(run)
                    cpu = ""
                    if run.server_cpu_us is not None:
                        cpu = (
                            f"  {arm} CPU {run.server_cpu_us:.0f} µs/req"
                            f" (off the event loop {run.off_loop_cpu_us:.0f})"
                        )
                    print(
                        f"C={concurrency:<3} {arm:8} {run.rps:8,.0f} req/s"
                        f"  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms{cpu}"
                    )
        _summary(runs)
        results = Path(__file__).with_name("results")
        results.mkdir(exist_ok=True)
        (results / "proxy.json").write_text(json.dumps([asdict(r) for r in runs], indent=2))
    finally:
        for process in (*servers.values(), upstream):
            process.terminate()
            process.wait(10)


def _summary(runs: list[Run]) -> None:
    print("\n| C | arm | req/s | p50 ms | p99 ms | server CPU µs/req | off the event loop |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for concurrency in sorted({r.concurrency for r in runs}):
        for arm in ("direct", "floor", "gateway"):
            mine = [r for r in runs if r.concurrency == concurrency and r.arm == arm]
            if not mine:
                continue
            cpu = [r.server_cpu_us for r in mine if r.server_cpu_us is not None]
            cpu_text = f"{statistics.mean(cpu):.0f}" if cpu else "–"
            off = [r.off_loop_cpu_us for r in mine if r.off_loop_cpu_us is not None]
            cpu_text += f" | {statistics.mean(off):.0f}" if off else " | –"
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
        floor = [r for r in runs if r.concurrency == concurrency and r.arm == "floor"]
        if floor:
            above = statistics.mean(r.p50_ms for r in via) - statistics.mean(
                r.p50_ms for r in floor
            )
            cpu_ratio = statistics.mean(r.server_cpu_us or 0 for r in via) / statistics.mean(
                r.server_cpu_us or 0 for r in floor
            )
            print(
                f"C={concurrency}: floor adds {added - above:.3f} ms, the gateway {above:.3f} ms"
                f" more; gateway/floor CPU per request {cpu_ratio:.2f}"
            )


if __name__ == "__main__":
    main()
