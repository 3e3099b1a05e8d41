"""Benchmark the batch executor against hand-written client loops.

The requirements: against a zero-latency upstream the gateway's batch executor runs at
least 3,000 lines/s on one core at no more than 320 µs of CPU per line, on SQLite and
PostgreSQL, and at no less than 0.8× a plain aiohttp loop at the same concurrency.

Setup. The fake OpenAI-compatible upstream (``batchway.testing.fake_upstream.main``) runs in
a separate process on 127.0.0.1 and answers ``fake-ok`` at once. The main process then runs,
for each concurrency C and each round, these arms on the same N chat-completion requests
(model ``fake-ok``, short distinct prompts):

- ``openai``: C tasks pulling from one shared iterator, each awaiting
  ``AsyncOpenAI(max_retries=0).chat.completions.create(...)`` (the SDK's default transport);
- ``openai-aiohttp``: the same loop on the SDK's aiohttp transport (``DefaultAioHttpClient``),
  the fastest hand-written loop the SDK offers;
- ``aiohttp``: no SDK at all: C tasks posting the JSON body with one ``aiohttp.ClientSession``
  and reading the answer with ``orjson`` — the floor for a Python client on this machine;
- ``aiohttp-files``: the same loop run as a short batch script would: the input JSONL file
  read line by line, each line's ``body`` posted, each answer written as an output line
  (``custom_id``, status, request id, body) to a JSONL file — the floor for running a batch
  file with no durability at all;
- ``aiohttp-plain``: that script as it is first written: asyncio's own event loop
  (``asyncio.run``, not uvloop), the standard library's ``json``, aiohttp's ``json=`` and
  ``response.json()`` — a plain aiohttp loop over the file;
- ``gateway``: the gateway opened in-process (``open_gateway``) on a fresh database, the N
  lines uploaded as a JSONL file and created as a batch, then ``await gateway.worker.drain()``
  timed: validation + execution + finalization. The provider has ``max_concurrency`` C.
  Once the gateway is open, the garbage collector is set as ``batchway serve`` and
  ``batchway worker`` set it (``batchway.collector.set_for_serving``).

Every arm gets a warm-up first (a few requests, or a small batch drained) so connections are
open and lazy imports done. Each arm runs in a fresh uvloop event loop (``aiohttp-plain`` in
a fresh asyncio one); the arm order is
reversed in every other round. Wall time and the process's CPU time (all threads, so the
SQLite driver thread counts) are measured around the timed part only; the upstream's CPU is
read from ``/proc``; with ``--database postgresql`` so is the PostgreSQL server's (every
``postgres`` process on the machine, and what its exited backends used), reported per line
for the gateway arm. The gateway's phases are timed by wrapping the batch engine's
``validate`` and ``finalize`` (``batchway.core.engine.BatchEngine``; the worker's
``validate_batch`` and ``finalize_batch`` at commits before the engine) in this process;
the execution phase is the time between them. A run only counts when every line succeeded
(the batch ended ``completed`` with N succeeded lines and an N-line output file).

``--profile`` also runs the gateway arm once under cProfile (main thread only; the stats go to
``bench/results/executor-<database>.prof``). For a sampling profile of every thread, run the
gateway arm alone under py-spy: ``py-spy record -- .venv/bin/python bench/executor.py --arms
gateway``. Results go to ``bench/results/executor.json`` (``executor-postgresql.json`` for
PostgreSQL), including the commit measured and whether ``src/`` had uncommitted changes.

Usage::

    .venv/bin/python bench/executor.py [--lines N] [--concurrency 4,64]
        [--database sqlite|postgresql] [--rounds 2]
        [--arms aiohttp,aiohttp-files,aiohttp-plain,openai,openai-aiohttp,gateway]
        [--profile] [--output PATH] [--upstream-delay S]

``--upstream-delay S`` makes every answer take S seconds (the fake's ``fake-slow``), as a
real provider does: the arms are then bound by the upstream, not by their own CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import gc
import http.client
import importlib.metadata
import io
import itertools
import json
import multiprocessing as mp
import os
import platform
import pstats
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import openai
import orjson
import sqlalchemy
import uvloop
from openai.types.chat import ChatCompletionUserMessageParam

import batchway.worker.runner as runner_module
from batchway.collector import set_for_serving
from batchway.config import Config
from batchway.core.models import Principal
from batchway.core.states import BatchStatus
from batchway.gateway import Gateway, open_gateway
from batchway.testing import fake_upstream

HOST = "127.0.0.1"
MODEL = "fake-ok"
ENDPOINT = "/v1/chat/completions"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
STARTUP_TIMEOUT_S = 15.0
REQUEST_TIMEOUT_S = 30.0
MIN_ARM_TIMEOUT_S = 120.0
MIN_LINES_PER_S_FOR_TIMEOUT = 20  # an arm slower than this is aborted (bounded runtime)
UPLOAD_CHUNK = 256 * 1024
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ARMS = ("aiohttp", "aiohttp-files", "aiohttp-plain", "openai", "openai-aiohttp", "gateway")


# --------------------------------------------------------------------------- upstream


def _serve_fake(port: int, slow_seconds: float) -> None:
    """Child-process entry point: the fake upstream in the foreground, quietly."""
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    fake_upstream.main(HOST, port, slow_seconds=slow_seconds)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Upstream:
    """The fake upstream's process and where it listens."""

    process: mp.process.BaseProcess
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def cpu_seconds(self) -> float | None:
        """User+system CPU time of the upstream process (Linux /proc), or None."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def upstream_answers(port: int) -> bool:
    """One real chat completion against the upstream; True on HTTP 200."""
    conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        conn.request(
            "POST",
            ENDPOINT,
            body=orjson.dumps(request_body(0)),
            headers={"content-type": "application/json"},
        )
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def start_upstream(slow_seconds: float = 0.0) -> Upstream:
    """Start the fake upstream in a spawned process and wait (bounded) until it answers
    (``fake-slow`` after ``slow_seconds``)."""
    port = free_port()
    process = mp.get_context("spawn").Process(
        target=_serve_fake, args=(port, slow_seconds), daemon=True
    )
    process.start()
    upstream = Upstream(process=process, port=port)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    for _ in range(300):
        if upstream_answers(port):
            return upstream
        if time.monotonic() > deadline or not process.is_alive():
            break
        time.sleep(0.05)
    stop_upstream(upstream)
    raise RuntimeError(f"the fake upstream on port {port} did not start")


def stop_upstream(upstream: Upstream) -> None:
    """Terminate, then kill if needed; always bounded."""
    for stop in (upstream.process.terminate, upstream.process.kill):
        if upstream.process.is_alive():
            stop()
            upstream.process.join(timeout=5)


# --------------------------------------------------------------------------- workload


def prompt(index: int) -> str:
    return f"Say hello to guest number {index}."


def messages(index: int) -> list[ChatCompletionUserMessageParam]:
    return [{"role": "user", "content": prompt(index)}]


def request_body(index: int) -> dict[str, Any]:
    """The chat completion request of line ``index``, as both arms send it."""
    return {"model": MODEL, "messages": messages(index), "max_tokens": 16}


def input_jsonl(lines: int, prefix: str) -> bytes:
    """A batch input file of ``lines`` chat completion requests."""
    return b"".join(
        orjson.dumps(
            {
                "custom_id": f"{prefix}-{i}",
                "method": "POST",
                "url": ENDPOINT,
                "body": request_body(i),
            }
        )
        + b"\n"
        for i in range(lines)
    )


def arm_timeout(lines: int) -> float:
    return max(MIN_ARM_TIMEOUT_S, lines / MIN_LINES_PER_S_FOR_TIMEOUT)


# --------------------------------------------------------------------------- measuring


@dataclass
class Window:
    """Wall time, this process's CPU time and the upstream's CPU time of a timed section."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    upstream_cpu_s: float | None = None
    database_cpu_s: float | None = None
    cpu_pressure_s: float | None = None


def cpu_pressure_seconds() -> float | None:
    """Total time some runnable task waited for a CPU (Linux PSI), or None.

    Its growth over a window shows how contended the shared machine was meanwhile.
    """
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(some.rsplit("total=", 1)[1]) / 1e6


def postgres_cpu_seconds() -> float | None:
    """CPU time of the PostgreSQL server on this machine: every ``postgres`` process's own,
    plus what its exited children used (a backend that ends meanwhile still counts), or
    None when there is none."""
    total, found = 0.0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        if text[text.index("(") + 1 : text.rindex(")")] != "postgres":
            continue
        fields = text.rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        found = True
    return total if found else None


@contextlib.contextmanager
def timed(upstream: Upstream, database: str = "sqlite") -> Iterator[Window]:
    window = Window()
    pressure0 = cpu_pressure_seconds()
    db0 = postgres_cpu_seconds() if database == "postgresql" else None
    up0 = upstream.cpu_seconds()
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    try:
        yield window
    finally:
        window.wall_s = time.perf_counter() - wall0
        window.cpu_s = time.process_time() - cpu0
        up1 = upstream.cpu_seconds()
        window.upstream_cpu_s = None if up0 is None or up1 is None else up1 - up0
        db1 = postgres_cpu_seconds() if db0 is not None else None
        window.database_cpu_s = None if db0 is None or db1 is None else db1 - db0
        pressure1 = cpu_pressure_seconds()
        if pressure0 is not None and pressure1 is not None:
            window.cpu_pressure_s = pressure1 - pressure0


@dataclass
class Phases:
    """Marks (wall, CPU) the gateway's worker passes through, set by `PhaseClock`."""

    validated: tuple[float, float] | None = None
    finalizing: tuple[float, float] | None = None


class PhaseClock:
    """Times validation and finalization by wrapping the worker's module-level functions."""

    def __init__(self) -> None:
        self.phases = Phases()

    @staticmethod
    def mark() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Wrap the worker's phase functions for the duration (a no-op if they moved)."""
        target: Any = runner_module
        names = ("validate_batch", "finalize_batch")
        try:  # the batch engine, where the phases live since they moved out of the worker
            from batchway.core.engine import BatchEngine
        except ImportError:
            pass
        else:
            target, names = BatchEngine, ("validate", "finalize")
        validate = getattr(target, names[0], None)
        finalize = getattr(target, names[1], None)
        if validate is None or finalize is None:
            yield
            return

        async def timed_validate(*args: Any, **kwargs: Any) -> None:
            await validate(*args, **kwargs)
            self.phases.validated = self.mark()

        async def timed_finalize(*args: Any, **kwargs: Any) -> None:
            if self.phases.finalizing is None:
                self.phases.finalizing = self.mark()
            await finalize(*args, **kwargs)

        setattr(target, names[0], timed_validate)
        setattr(target, names[1], timed_finalize)
        try:
            yield
        finally:
            setattr(target, names[0], validate)
            setattr(target, names[1], finalize)


@dataclass
class RunResult:
    round: int
    arm: str
    database: str
    concurrency: int
    lines: int
    wall_s: float
    lines_per_s: float
    cpu_s: float
    cpu_us_per_line: float
    cpu_pct: float
    upstream_cpu_pct: float | None
    cpu_pressure_pct: float | None
    # the PostgreSQL server's CPU per line (its own processes; None on SQLite, in-process)
    database_cpu_us_per_line: float | None = None
    # gateway only: the phases of drain()
    validate_s: float | None = None
    execute_s: float | None = None
    finalize_s: float | None = None
    execute_lines_per_s: float | None = None
    execute_cpu_us_per_line: float | None = None


def result_of(
    round_no: int, arm: str, database: str, concurrency: int, lines: int, window: Window
) -> RunResult:
    up, pressure = window.upstream_cpu_s, window.cpu_pressure_s
    return RunResult(
        round=round_no,
        arm=arm,
        database=database,
        concurrency=concurrency,
        lines=lines,
        wall_s=window.wall_s,
        lines_per_s=lines / window.wall_s,
        cpu_s=window.cpu_s,
        cpu_us_per_line=window.cpu_s / lines * 1e6,
        cpu_pct=100 * window.cpu_s / window.wall_s,
        upstream_cpu_pct=None if up is None else 100 * up / window.wall_s,
        cpu_pressure_pct=None if pressure is None else 100 * pressure / window.wall_s,
        database_cpu_us_per_line=(
            None if window.database_cpu_s is None else window.database_cpu_s / lines * 1e6
        ),
    )


def add_phases(
    result: RunResult, phases: Phases, start: tuple[float, float], end: tuple[float, float]
) -> None:
    """Split the drain into validation, execution and finalization."""
    if phases.validated is None or phases.finalizing is None:
        return
    (v_wall, v_cpu), (f_wall, f_cpu) = phases.validated, phases.finalizing
    result.validate_s = v_wall - start[0]
    result.execute_s = f_wall - v_wall
    result.finalize_s = end[0] - f_wall
    result.execute_lines_per_s = result.lines / result.execute_s
    result.execute_cpu_us_per_line = (f_cpu - v_cpu) / result.lines * 1e6


# --------------------------------------------------------------------------- openai arms


def openai_client(arm: str, upstream: Upstream) -> openai.AsyncOpenAI:
    http_client = openai.DefaultAioHttpClient() if arm == "openai-aiohttp" else None
    return openai.AsyncOpenAI(
        base_url=upstream.base_url,
        api_key="x",
        max_retries=0,
        timeout=REQUEST_TIMEOUT_S,
        http_client=http_client,
    )


async def openai_worker(client: openai.AsyncOpenAI, indices: Iterator[int]) -> int:
    """Send requests until the shared iterator runs out; returns how many answered right."""
    ok = 0
    for i in indices:
        completion = await client.chat.completions.create(
            model=MODEL, messages=messages(i), max_tokens=16
        )
        if completion.choices[0].message.content == f"echo: {prompt(i)}":
            ok += 1
    return ok


async def openai_loop(client: openai.AsyncOpenAI, lines: int, concurrency: int) -> int:
    """N requests with C tasks in flight; returns how many answered right."""
    indices = iter(range(lines))  # shared: each index is taken by exactly one task
    workers = [openai_worker(client, indices) for _ in range(concurrency)]
    done = await asyncio.wait_for(asyncio.gather(*workers), arm_timeout(lines))
    return sum(done)


async def measure_openai(
    arm: str, upstream: Upstream, lines: int, concurrency: int, round_no: int, database: str
) -> RunResult:
    client = openai_client(arm, upstream)
    try:
        await openai_loop(client, warmup_lines(concurrency), concurrency)
        gc.collect()
        with timed(upstream) as window:
            ok = await openai_loop(client, lines, concurrency)
    finally:
        await client.close()
    if ok != lines:
        raise RuntimeError(f"{arm}: only {ok} of {lines} requests answered as expected")
    return result_of(round_no, arm, database, concurrency, lines, window)


# --------------------------------------------------------------------------- aiohttp arm


async def aiohttp_worker(session: aiohttp.ClientSession, url: str, indices: Iterator[int]) -> int:
    """Post requests until the shared iterator runs out; returns how many answered right."""
    ok = 0
    for i in indices:
        async with session.post(
            url,
            data=orjson.dumps(request_body(i)),
            headers={"content-type": "application/json", "authorization": "Bearer x"},
        ) as response:
            answer = orjson.loads(await response.read())
        if answer["choices"][0]["message"]["content"] == f"echo: {prompt(i)}":
            ok += 1
    return ok


async def aiohttp_loop(session: aiohttp.ClientSession, url: str, lines: int, c: int) -> int:
    indices = iter(range(lines))
    workers = [aiohttp_worker(session, url, indices) for _ in range(c)]
    done = await asyncio.wait_for(asyncio.gather(*workers), arm_timeout(lines))
    return sum(done)


def aiohttp_session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


async def measure_aiohttp(
    upstream: Upstream, lines: int, concurrency: int, round_no: int, database: str
) -> RunResult:
    url = f"{upstream.base_url}/chat/completions"
    async with aiohttp_session(concurrency) as session:
        await aiohttp_loop(session, url, warmup_lines(concurrency), concurrency)
        gc.collect()
        with timed(upstream) as window:
            ok = await aiohttp_loop(session, url, lines, concurrency)
    if ok != lines:
        raise RuntimeError(f"aiohttp: only {ok} of {lines} requests answered as expected")
    return result_of(round_no, "aiohttp", database, concurrency, lines, window)


def output_line(
    index: int, custom_id: str, status: int, request_id: str | None, answer: Any
) -> dict[str, Any]:
    """A line of the loops' output file, shaped as a batch's."""
    return {
        "id": f"batch_req_{index}",
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": request_id, "body": answer},
        "error": None,
    }


async def aiohttp_file_worker(
    session: aiohttp.ClientSession, url: str, lines: Iterator[bytes], output: io.BufferedWriter
) -> int:
    """Run input lines until the shared file iterator runs out, writing each result line."""
    ok = 0
    for raw in lines:
        line = orjson.loads(raw)
        async with session.post(
            url,
            data=orjson.dumps(line["body"]),
            headers={"content-type": "application/json", "authorization": "Bearer x"},
        ) as response:
            status, answer = response.status, orjson.loads(await response.read())
            request_id = response.headers.get("x-request-id")
        result = output_line(ok, line["custom_id"], status, request_id, answer)
        output.write(orjson.dumps(result) + b"\n")
        ok += status == 200
    return ok


async def plain_file_worker(
    session: aiohttp.ClientSession, url: str, lines: Iterator[bytes], output: io.BufferedWriter
) -> int:
    """`aiohttp_file_worker` as a first script has it: the standard library's ``json``, and
    aiohttp's own ``json=`` and ``response.json()``."""
    ok = 0
    for raw in lines:
        line = json.loads(raw)
        async with session.post(
            url, json=line["body"], headers={"authorization": "Bearer x"}
        ) as response:
            status, answer = response.status, await response.json()
            request_id = response.headers.get("x-request-id")
        result = output_line(ok, line["custom_id"], status, request_id, answer)
        output.write(json.dumps(result).encode() + b"\n")
        ok += status == 200
    return ok


FILE_WORKERS = {"aiohttp-files": aiohttp_file_worker, "aiohttp-plain": plain_file_worker}


async def aiohttp_file_loop(
    session: aiohttp.ClientSession,
    url: str,
    input_path: Path,
    lines: int,
    c: int,
    worker: Callable[..., Awaitable[int]] = aiohttp_file_worker,
) -> int:
    """The batch as a short script would run it: the JSONL file read line by line, C
    tasks posting the bodies, every answer written to an output JSONL file."""
    with input_path.open("rb") as source, input_path.with_suffix(".out").open("wb") as output:
        shared = iter(source)
        workers = [worker(session, url, shared, output) for _ in range(c)]
        done = await asyncio.wait_for(asyncio.gather(*workers), arm_timeout(lines))
    return sum(done)


async def measure_aiohttp_files(
    upstream: Upstream,
    lines: int,
    concurrency: int,
    round_no: int,
    database: str,
    arm: str = "aiohttp-files",
) -> RunResult:
    url = f"{upstream.base_url}/chat/completions"
    worker = FILE_WORKERS[arm]
    with tempfile.TemporaryDirectory(prefix="bw-bench-") as tmp:
        warm, timed_input = Path(tmp) / "warm.jsonl", Path(tmp) / "input.jsonl"
        warm.write_bytes(input_jsonl(warmup_lines(concurrency), "warm"))
        timed_input.write_bytes(input_jsonl(lines, "bench"))
        async with aiohttp_session(concurrency) as session:
            warm_lines = warmup_lines(concurrency)
            await aiohttp_file_loop(session, url, warm, warm_lines, concurrency, worker)
            gc.collect()
            with timed(upstream) as window:
                ok = await aiohttp_file_loop(session, url, timed_input, lines, concurrency, worker)
    if ok != lines:
        raise RuntimeError(f"{arm}: only {ok} of {lines} lines answered 200")
    return result_of(round_no, arm, database, concurrency, lines, window)


def warmup_lines(concurrency: int) -> int:
    return max(50, 2 * concurrency)


# --------------------------------------------------------------------------- gateway arm


async def _postgres_admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fresh_database(kind: str, workdir: Path) -> AsyncIterator[str]:
    """A new, empty database URL: a SQLite file in ``workdir`` or a PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir}/batchway.db"
        return
    name = f"bw_bench_{secrets.token_hex(6)}"
    await _postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def gateway_config(database_url: str, files: Path, upstream: Upstream, concurrency: int) -> Config:
    """One openai-compatible provider on the fake upstream; worker defaults, not started."""
    return Config.model_validate(
        {
            "database": database_url,
            "files": str(files),
            "providers": {
                "fake": {
                    "kind": "openai-compatible",
                    "base_url": upstream.base_url,
                    "api_key": "x",
                    "max_concurrency": concurrency,
                    "timeout_seconds": REQUEST_TIMEOUT_S,
                }
            },
            "models": {MODEL: {"provider": "fake", "model": MODEL}},
            "worker": {"enabled": False},
        }
    )


async def submit_batch(gateway: Gateway, principal: Principal, lines: int, prefix: str) -> str:
    """Upload an N-line input file and create a batch on it; returns the batch id."""
    data = input_jsonl(lines, prefix)
    upload = await gateway.files.begin(principal, "batch")
    for offset in range(0, len(data), UPLOAD_CHUNK):
        await upload.write(data[offset : offset + UPLOAD_CHUNK])
    file = await gateway.files.finish(
        principal, upload, filename=f"{prefix}.jsonl", purpose="batch"
    )
    batch = await gateway.batches.create(
        principal, input_file_id=file.id, endpoint=ENDPOINT, completion_window="24h"
    )
    return batch.id


async def check_batch(gateway: Gateway, principal: Principal, batch_id: str, lines: int) -> None:
    """Raise unless the batch completed with every line succeeded and written out."""
    batch = await gateway.batches.get(principal, batch_id)
    counts = batch.counts
    if batch.status is not BatchStatus.COMPLETED or counts.succeeded != lines or counts.failed:
        raise RuntimeError(
            f"batch {batch_id} ended {batch.status.value} with {counts.succeeded} succeeded, "
            f"{counts.failed} failed of {lines}"
        )
    if batch.output_file_id is None:
        raise RuntimeError(f"batch {batch_id} has no output file")
    _, chunks = await gateway.files.content(principal, batch.output_file_id)
    written = 0
    async for chunk in chunks:
        written += chunk.count(b"\n")
    if written != lines:
        raise RuntimeError(f"batch {batch_id} wrote {written} output lines, not {lines}")


async def drain_batch(gateway: Gateway, principal: Principal, lines: int, prefix: str) -> str:
    batch_id = await submit_batch(gateway, principal, lines, prefix)
    await asyncio.wait_for(gateway.worker.drain(), arm_timeout(lines))
    return batch_id


@contextlib.asynccontextmanager
async def bench_gateway(
    upstream: Upstream, concurrency: int, database: str
) -> AsyncIterator[tuple[Gateway, Principal]]:
    """A gateway on a fresh database and blob directory, with a key; all removed after."""
    with tempfile.TemporaryDirectory(prefix="bw-bench-") as tmp:
        async with fresh_database(database, Path(tmp)) as url:
            config = gateway_config(url, Path(tmp) / "files", upstream, concurrency)
            async with open_gateway(config) as gateway:
                key, _ = await gateway.keys.create(name="bench")
                # the collector set as `batchway serve` and `batchway worker` set it
                with set_for_serving():
                    yield gateway, key.principal()


async def timed_drain(
    gateway: Gateway,
    upstream: Upstream,
    lines: int,
    profiler: cProfile.Profile | None,
    database: str = "sqlite",
) -> tuple[Window, Phases, tuple[float, float], tuple[float, float]]:
    """``worker.drain()`` under the clocks (and the profiler, if any)."""
    clock = PhaseClock()
    gc.collect()
    with clock.installed(), timed(upstream, database) as window:
        start = PhaseClock.mark()
        if profiler is not None:
            profiler.enable()
        try:
            await asyncio.wait_for(gateway.worker.drain(), arm_timeout(lines))
        finally:
            if profiler is not None:
                profiler.disable()
        end = PhaseClock.mark()
    return window, clock.phases, start, end


async def measure_gateway(
    upstream: Upstream,
    lines: int,
    concurrency: int,
    round_no: int,
    database: str,
    profiler: cProfile.Profile | None = None,
) -> RunResult:
    """Warm up with a small batch, then time the drain of an N-line batch and check it."""
    async with bench_gateway(upstream, concurrency, database) as (gateway, principal):
        warm = warmup_lines(concurrency)
        warm_id = await drain_batch(gateway, principal, warm, "warm")
        await check_batch(gateway, principal, warm_id, warm)
        batch_id = await submit_batch(gateway, principal, lines, "bench")
        window, phases, start, end = await timed_drain(gateway, upstream, lines, profiler, database)
        await check_batch(gateway, principal, batch_id, lines)
    result = result_of(round_no, "gateway", database, concurrency, lines, window)
    add_phases(result, phases, start, end)
    return result


# --------------------------------------------------------------------------- orchestration


def arm_order(arms: list[str], round_no: int) -> list[str]:
    """Reverse the arm order every other round, so no arm always runs first."""
    return list(arms) if round_no % 2 == 1 else list(arms)[::-1]


def run_in_uvloop(make: Callable[[], Awaitable[RunResult]]) -> RunResult:
    """One measurement in its own uvloop event loop, so no state leaks between arms."""
    gc.collect()

    async def main() -> RunResult:
        return await make()

    return uvloop.run(main())


def run_arm(
    arm: str, upstream: Upstream, args: argparse.Namespace, concurrency: int, round_no: int
) -> RunResult:
    if arm == "gateway":
        return run_in_uvloop(
            lambda: measure_gateway(upstream, args.lines, concurrency, round_no, args.database)
        )
    if arm == "aiohttp":
        return run_in_uvloop(
            lambda: measure_aiohttp(upstream, args.lines, concurrency, round_no, args.database)
        )
    if arm == "aiohttp-files":
        return run_in_uvloop(
            lambda: measure_aiohttp_files(
                upstream, args.lines, concurrency, round_no, args.database
            )
        )
    if arm == "aiohttp-plain":  # asyncio's own event loop, as a script run plainly has it
        gc.collect()
        return asyncio.run(
            measure_aiohttp_files(upstream, args.lines, concurrency, round_no, args.database, arm)
        )
    return run_in_uvloop(
        lambda: measure_openai(arm, upstream, args.lines, concurrency, round_no, args.database)
    )


def print_progress(r: RunResult) -> None:
    phases = ""
    if r.execute_s is not None:
        phases = (
            f"  [validate {r.validate_s:.2f}s, execute {r.execute_s:.2f}s "
            f"= {r.execute_lines_per_s:,.0f} lines/s at {r.execute_cpu_us_per_line:.0f} us/line,"
            f" finalize {r.finalize_s:.2f}s]"
        )
    print(
        f"  round {r.round} {r.database} C={r.concurrency:<3} {r.arm:>14}: "
        f"{r.lines_per_s:7,.0f} lines/s  {r.cpu_us_per_line:6.0f} us CPU/line  "
        f"CPU {r.cpu_pct:3.0f}%  upstream {r.upstream_cpu_pct or 0:3.0f}%  "
        f"CPU pressure {r.cpu_pressure_pct or 0:3.0f}%{phases}",
        file=sys.stderr,
        flush=True,
    )


def run_all(upstream: Upstream, args: argparse.Namespace) -> list[RunResult]:
    results: list[RunResult] = []
    for round_no in range(1, args.rounds + 1):
        for concurrency in args.concurrency:
            for arm in arm_order(args.arms, round_no):
                result = run_arm(arm, upstream, args, concurrency, round_no)
                print_progress(result)
                results.append(result)
    return results


# --------------------------------------------------------------------------- profile


CATEGORIES = (  # first match wins; matched against "file:function"
    ("SQL: SQLAlchemy", ("sqlalchemy",)),
    ("SQL: driver (aiosqlite/sqlite3/asyncpg)", ("aiosqlite", "sqlite3", "asyncpg")),
    ("HTTP: aiohttp (+yarl, multidict)", ("aiohttp", "yarl", "multidict", "propcache")),
    ("JSON: orjson", ("orjson",)),
    ("batchway (own code)", ("batchway",)),
    ("event loop, coroutine plumbing", ("asyncio", "uvloop", "contextlib", "selectors")),
    ("threading/queue (driver thread hand-off)", ("threading", "queue.py", "_thread")),
)


def category(file: str, function: str) -> str:
    where = f"{file}:{function}"
    for name, needles in CATEGORIES:
        if any(n in where for n in needles):
            return name
    return "other (builtins, stdlib, dataclasses, logging)"


def profile_summary(profiler: cProfile.Profile, top: int = 20) -> dict[str, Any]:
    """Self time by category and the top functions by self time (main thread only)."""
    stats = pstats.Stats(profiler)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values()) or 1.0
    by_category: dict[str, float] = {}
    for (file, _line, function), entry in raw.items():
        key = category(file, function)
        by_category[key] = by_category.get(key, 0.0) + entry[2]
    ranked = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return {
        "total_self_s": total,
        "by_category": {
            k: round(100 * v / total, 1)
            for k, v in sorted(by_category.items(), key=lambda kv: kv[1], reverse=True)
        },
        "top_self": [
            {
                "function": f"{Path(file).name}:{line}({function})",
                "self_pct": round(100 * entry[2] / total, 1),
                "calls": entry[1],
            }
            for (file, line, function), entry in ranked
        ],
    }


def print_profile(summary: dict[str, Any], text: str) -> None:
    print("\nProfile of one gateway drain (cProfile, main thread, self time):")
    for name, pct in summary["by_category"].items():
        print(f"  {pct:5.1f}%  {name}")
    print("\nTop functions by cumulative time:")
    print(text)


def run_profile(upstream: Upstream, args: argparse.Namespace) -> dict[str, Any]:
    """Profile the gateway arm once at the highest concurrency (cProfile)."""
    profiler = cProfile.Profile()
    concurrency = max(args.concurrency)
    result = run_in_uvloop(
        lambda: measure_gateway(upstream, args.lines, concurrency, 0, args.database, profiler)
    )
    print_progress(result)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(RESULTS_DIR / f"executor-{args.database}.prof")
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats("batchway", 25)
    summary = profile_summary(profiler)
    print_profile(summary, buffer.getvalue())
    return {"run": asdict(result), **summary}


# --------------------------------------------------------------------------- reporting


@dataclass
class Cell:
    """Mean over rounds of one (concurrency, arm)."""

    concurrency: int
    arm: str
    lines_per_s: float
    cpu_us_per_line: float
    cpu_pct: float
    upstream_cpu_pct: float | None
    cpu_pressure_pct: float | None
    database_cpu_us_per_line: float | None
    execute_lines_per_s: float | None
    execute_cpu_us_per_line: float | None
    phases_s: tuple[float, float, float] | None


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def mean_cell(concurrency: int, arm: str, runs: list[RunResult]) -> Cell:
    phases = [(r.validate_s, r.execute_s, r.finalize_s) for r in runs if r.execute_s is not None]
    return Cell(
        concurrency=concurrency,
        arm=arm,
        lines_per_s=statistics.fmean(r.lines_per_s for r in runs),
        cpu_us_per_line=statistics.fmean(r.cpu_us_per_line for r in runs),
        cpu_pct=statistics.fmean(r.cpu_pct for r in runs),
        upstream_cpu_pct=_mean([r.upstream_cpu_pct for r in runs]),
        cpu_pressure_pct=_mean([r.cpu_pressure_pct for r in runs]),
        database_cpu_us_per_line=_mean([r.database_cpu_us_per_line for r in runs]),
        execute_lines_per_s=_mean([r.execute_lines_per_s for r in runs]),
        execute_cpu_us_per_line=_mean([r.execute_cpu_us_per_line for r in runs]),
        phases_s=(
            tuple(statistics.fmean(p[i] or 0.0 for p in phases) for i in range(3))  # type: ignore[arg-type]
            if phases
            else None
        ),
    )


def cells(results: list[RunResult]) -> list[Cell]:
    out = []
    for (c, arm), group in itertools.groupby(
        sorted(results, key=lambda r: (r.concurrency, ARMS.index(r.arm))),
        key=lambda r: (r.concurrency, r.arm),
    ):
        out.append(mean_cell(c, arm, list(group)))
    return out


def _fmt(value: float | None, pattern: str = "{:,.0f}") -> str:
    return "–" if value is None else pattern.format(value)


def cell_table(rows: list[Cell], database: str) -> str:
    lines = [
        "| database | C | arm | lines/s | CPU µs/line | PostgreSQL CPU µs/line | CPU % "
        "| upstream CPU % | CPU pressure % | execute-phase lines/s | execute CPU µs/line "
        "| validate / execute / finalize s |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in rows:
        phases = "–" if c.phases_s is None else " / ".join(f"{p:.2f}" for p in c.phases_s)
        lines.append(
            f"| {database} | {c.concurrency} | {c.arm} | {c.lines_per_s:,.0f} "
            f"| {c.cpu_us_per_line:,.0f} | {_fmt(c.database_cpu_us_per_line)} "
            f"| {c.cpu_pct:.0f} | {_fmt(c.upstream_cpu_pct)} "
            f"| {_fmt(c.cpu_pressure_pct)} "
            f"| {_fmt(c.execute_lines_per_s)} | {_fmt(c.execute_cpu_us_per_line)} | {phases} |"
        )
    return "\n".join(lines)


@dataclass
class RatioRow:
    concurrency: int
    baseline: str
    speed: float
    speed_range: tuple[float, float]
    cpu: float
    cpu_range: tuple[float, float]
    execute_speed: float | None = None
    per_round: list[dict[str, float]] = field(default_factory=list)


def _by_round(results: list[RunResult], c: int, arm: str) -> dict[int, RunResult]:
    return {r.round: r for r in results if r.concurrency == c and r.arm == arm}


def ratio_row(results: list[RunResult], c: int, baseline: str) -> RatioRow | None:
    """gateway/baseline in each round (both measured back to back) and of the means."""
    gw, base = _by_round(results, c, "gateway"), _by_round(results, c, baseline)
    rounds = sorted(set(gw) & set(base))
    if not rounds:
        return None
    speed = [gw[n].lines_per_s / base[n].lines_per_s for n in rounds]
    cpu = [gw[n].cpu_us_per_line / base[n].cpu_us_per_line for n in rounds]
    exe = [
        gw[n].execute_lines_per_s / base[n].lines_per_s  # type: ignore[operator]
        for n in rounds
        if gw[n].execute_lines_per_s is not None
    ]
    return RatioRow(
        concurrency=c,
        baseline=baseline,
        speed=statistics.fmean(r.lines_per_s for r in gw.values())
        / statistics.fmean(r.lines_per_s for r in base.values()),
        speed_range=(min(speed), max(speed)),
        cpu=statistics.fmean(r.cpu_us_per_line for r in gw.values())
        / statistics.fmean(r.cpu_us_per_line for r in base.values()),
        cpu_range=(min(cpu), max(cpu)),
        execute_speed=statistics.fmean(exe) if exe else None,
        per_round=[
            {"round": n, "speed": s, "cpu": p} for n, s, p in zip(rounds, speed, cpu, strict=True)
        ],
    )


def ratio_rows(results: list[RunResult], concurrencies: list[int]) -> list[RatioRow]:
    rows = []
    for c in concurrencies:
        for baseline in (a for a in ARMS if a != "gateway"):
            row = ratio_row(results, c, baseline)
            if row is not None:
                rows.append(row)
    return rows


def ratio_table(rows: list[RatioRow]) -> str:
    lines = [
        "| C | baseline | gateway/baseline lines/s | (per-round range) "
        "| execute phase / baseline | gateway/baseline CPU µs/line | (per-round range) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.concurrency} | {r.baseline} | **{r.speed:.2f}** "
            f"| {r.speed_range[0]:.2f}–{r.speed_range[1]:.2f} | {_fmt(r.execute_speed, '{:.2f}')} "
            f"| **{r.cpu:.2f}** | {r.cpu_range[0]:.2f}–{r.cpu_range[1]:.2f} |"
        )
    return "\n".join(lines)


def versions() -> dict[str, str]:
    import aiosqlite

    return {
        "python": platform.python_version(),
        "openai": openai.__version__,
        "aiohttp": aiohttp.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "aiosqlite": aiosqlite.__version__,
        "asyncpg": asyncpg.__version__,
        "uvloop": importlib.metadata.version("uvloop"),
        "orjson": orjson.__version__,
    }


def source_state() -> dict[str, Any]:
    """The commit measured and whether ``src/`` had uncommitted changes (best effort)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    status = git("status", "--porcelain", "--", "src")
    return {
        "commit": git("rev-parse", "HEAD"),
        "src_dirty": None if status is None else bool(status),
    }


def write_json(
    args: argparse.Namespace,
    results: list[RunResult],
    rows: list[RatioRow],
    profile: dict[str, Any] | None,
) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    default = "executor.json" if args.database == "sqlite" else f"executor-{args.database}.json"
    path = args.output or RESULTS_DIR / default
    payload = {
        "benchmark": "executor",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": versions(),
        "source": source_state(),
        "args": {k: v for k, v in vars(args).items() if k != "output"},
        "runs": [asdict(r) for r in results],
        "means": [asdict(c) for c in cells(results)],
        "ratios": [asdict(r) for r in rows],
        "profile": profile,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=5000, help="lines (requests) per arm")
    parser.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[4, 64],
        help="comma-separated concurrencies (default 4,64)",
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, arm order alternating")
    parser.add_argument(
        "--arms",
        type=lambda s: s.split(","),
        default=list(ARMS),
        help=f"comma-separated subset of {','.join(ARMS)} (e.g. gateway alone under py-spy)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also profile one gateway drain (cProfile)"
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON results path")
    parser.add_argument(
        "--upstream-delay",
        type=float,
        default=None,
        help="every answer takes this many seconds (the fake's fake-slow) instead of none",
    )
    args = parser.parse_args(argv)
    if args.lines < 1 or args.rounds < 1 or min(args.concurrency) < 1:
        parser.error("--lines, --rounds and every concurrency must be at least 1")
    if not args.arms or not set(args.arms) <= set(ARMS):
        parser.error(f"--arms must be a subset of {','.join(ARMS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(
        f"executor benchmark: {args.lines} lines, C={args.concurrency}, {args.database}, "
        f"{args.rounds} rounds",
        file=sys.stderr,
    )
    global MODEL
    if args.upstream_delay is not None:
        MODEL = "fake-slow"  # every arm asks for it
    upstream = start_upstream(args.upstream_delay or 0.0)
    profile = None
    try:
        results = run_all(upstream, args)
        if args.profile:
            profile = run_profile(upstream, args)
    finally:
        stop_upstream(upstream)
    rows = ratio_rows(results, args.concurrency)
    print(f"\nMean of {args.rounds} rounds, {args.lines} lines per arm:\n")
    print(cell_table(cells(results), args.database))
    print("\nRatios in the same run (lines/s > 1: gateway faster; CPU < 1: gateway cheaper):\n")
    print(ratio_table(rows))
    print(f"\nresults: {write_json(args, results, rows, profile)}")


if __name__ == "__main__":
    main()
