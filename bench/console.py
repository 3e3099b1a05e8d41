"""The console's pages on big data: how long each store query behind a page takes.

The requirement: the batch list and the request logs are paged with indexes, each page
under 200 ms of server time with 1M request-log rows, on SQLite and PostgreSQL.

Setup. A fresh database (a SQLite file in a temporary folder; with ``--postgres`` also a new
PostgreSQL database beside the one named, dropped at the end) is migrated to ``--before``
(a revision the code still runs on; by default head alone) and filled straight through the
driver (``executemany`` on ``sqlite3``, ``COPY`` on asyncpg; the big tables' secondary
indexes dropped meanwhile and built again after), from one seeded generator so both
databases hold the same rows:

- 20 keys with skewed traffic (the busiest ~20 % of the logs, the last ~0.01 %), 8 models
  on 3 providers (one model ~1 %);
- ~2,000 batches over 60 days, mostly completed, some failed, cancelled or expired;
  ~1,000,000 lines in ``batch_items``, five batches of 100k–150k lines (the newest, of 150k,
  still running) and the rest log-normal (median ~90 lines);
- 1,000,000 ``request_logs`` rows: one per finished batch line of the last ~30 days (about
  half), the rest interactive calls spread over the same days; ~96 % succeeded, ids in time
  order. Each batch's figures (``store.figures``) and the usage per hour (``usage_hourly``)
  are then written from these rows, as the gateway keeps them. PostgreSQL is then vacuumed
  and analysed (what autovacuum does); SQLite is left without ``ANALYZE``, as the gateway
  leaves it.

Each case (see ``cases``) is one store call, as a console page would make it (pages of 50,
bodies left unread), timed in this process: a warm-up of up to six calls (asyncpg prepares
every statement, and PostgreSQL may settle on a generic plan from the sixth run), then
``--runs`` runs (at least 3, fewer than ``--runs`` once a case has used ``--budget``
seconds), median in ms. That is the server time of the call: SQL, driver and the store's own
Python. Then the schema is migrated to head (the index build is timed) and every case
measured again on the same rows.

Write cost, per phase: 5,000 new lines stored with ``insert_items`` (chunks of 2,000),
claimed (``claim_items``, 256 at a time) and recorded (``record_outcomes`` with their
request-log rows, 64 at a time), and 5,000 interactive request logs written with
``SqlRequestLogs.insert`` (chunks of 100), against the full tables; µs per line, the
fastest of 3 rounds, and the median of their CPU time (this process, and on PostgreSQL the
database's backends too), the rows deleted after each and PostgreSQL's tables vacuumed
after the rounds.

``--explain`` also runs each case's statements once under ``EXPLAIN QUERY PLAN`` (SQLite,
with the virtual machine's instruction count as a measure of the work done) or ``EXPLAIN
(ANALYZE, BUFFERS)`` (PostgreSQL, with the rows its scans read, for the custom plan and for
the generic plan a prepared statement may settle on), and writes the plans to
``bench/results/console-plans-<database>-<phase>.txt``. Results go to
``bench/results/console.json``.

Usage::

    .venv/bin/python bench/console.py [--postgres postgresql://postgres@127.0.0.1:5432/test]
        [--no-sqlite] [--logs 1000000] [--items 1000000] [--batches 2000] [--runs 5]
        [--budget 4] [--before REVISION] [--explain] [--seed 7] [--output PATH]

The store code is this commit's: to compare with an older one, run the older one's bench
through ``PYTHONPATH`` (as docs/benchmarks.md says for each comparison). ``--before 0007``
measured migration 0008 at the commit that added it; the code since needs 0012.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import json
import math
import os
import platform
import random
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import uvloop
from alembic import command
from sqlalchemy import event, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from batchway.config import Config
from batchway.core.analytics import LogFilter, UsageQuery
from batchway.core.listings import BatchFilter, LineFilter
from batchway.core.models import ItemOutcome, LineRecord, NewItem, RequestLog, Usage
from batchway.core.states import BatchStatus, ItemState
from batchway.store.figures import kept_figures
from batchway.store.logs import SqlRequestLogs
from batchway.store.migrate import alembic_config
from batchway.store.sql import SqlStore, create_engine
from batchway.store.tables import batches

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PAGE = 50
DAY_MS = 86_400_000
HOUR_MS = 3_600_000

PROVIDERS = ("openai", "anthropic", "together")
# public name, provider, share of calls, USD per 1M input tokens, per 1M output tokens
MODELS = (
    ("gpt-4o-mini", "openai", 0.34, 0.15, 0.60),
    ("gpt-4o", "openai", 0.15, 2.50, 10.00),
    ("claude-haiku-3.5", "anthropic", 0.15, 0.80, 4.00),
    ("claude-sonnet-4", "anthropic", 0.12, 3.00, 15.00),
    ("llama-3.3-70b", "together", 0.10, 0.88, 0.88),
    ("gpt-4.1-nano", "openai", 0.08, 0.10, 0.40),
    ("qwen-2.5-72b", "together", 0.05, 1.20, 1.20),
    ("o3-mini", "openai", 0.01, 1.10, 4.40),
)
COMMON_MODEL, RARE_MODEL = 0, 7
ENDPOINTS = (("/v1/chat/completions", 0.75), ("/v1/messages", 0.20), ("/v1/embeddings", 0.05))
# interactive calls: status, share, status code, error code
STATUSES = (
    ("succeeded", 0.955, 200, None),
    ("failed", 0.03, 502, "upstream_error"),
    ("rate_limited", 0.01, 429, "rate_limited"),
    ("budget_exceeded", 0.005, 402, "budget_exceeded"),
)
# the big batches: lines, age in days, how it ends (None: still running), share run
BIG_BATCHES = (
    (150_000, 0.125, None, 0.6),
    (120_000, 5.0, "completed", 1.0),
    (100_000, 12.0, "cancelled", 0.4),
    (100_000, 20.0, "completed", 1.0),
    (100_000, 45.0, "completed", 1.0),
)
BATCH_DAYS = 60
LOG_COLUMNS = tuple(
    """
    id created_at_ms kind key_id model provider upstream_model endpoint batch_id
    custom_id item_id status status_code error_code input_tokens cached_tokens
    output_tokens latency_ms cost_usd retries request_id request_body response_body
    """.split()
)
ITEM_COLUMNS = tuple(
    """
    id batch_id line custom_id model provider body state attempts not_before lease_owner
    lease_expires_at status_code response request_id error_code error_message
    input_tokens cached_tokens output_tokens reasoning_tokens finished_at execute_only
    upstream_batch_id cost_usd
    """.split()
)
BATCH_COLUMNS = tuple(
    """
    id owner endpoint input_file_id completion_window status created_at expires_at model
    metadata in_progress_at finalizing_at completed_at failed_at expired_at
    cancelling_at cancelled_at output_file_id error_file_id finish_as total succeeded
    failed cancelled expired input_tokens cached_tokens output_tokens reasoning_tokens
    sort_key
    """.split()
)
KEY_COLUMNS = ("id", "name", "key_hash", "created_at", "revoked")
CHUNK = 20_000
WRITE_LINES = 5_000
WARMUP = 6
WRITE_ROUNDS = 3
WRITES_PROVIDER = "bench-writes"
WRITES_BATCH = "batch_benchwrites"


# --------------------------------------------------------------------------- data


@dataclass
class BatchSpec:
    index: int
    id: str
    owner: str
    created_ms: int
    lines: int
    ends_as: str  # the status it has (or will have) once it ends
    ran: float  # share of its lines that ran by the time it ended
    rate: float  # lines per second
    models: list[int]
    status: str = ""
    first_item_id: int = 0
    used_models: set[int] = field(default_factory=set)
    figures: dict[str, int] = field(default_factory=dict)


class Dataset:
    """Keys, batches, their lines and the request logs, the same for a given seed."""

    def __init__(self, seed: int, now_ms: int, logs: int, items: int, batches: int) -> None:
        self.seed = seed
        self.now_ms = now_ms
        self.target_logs = logs
        self.target_items = items
        rng = random.Random(seed)
        self.keys = [f"key_{rng.getrandbits(64):016x}" for _ in range(20)]
        weights = [1 / (i + 1) ** 1.1 for i in range(19)]
        scale = 0.9998 / sum(weights)
        self.key_weights = [w * scale for w in weights] + [0.0002]
        self.common_key, self.rare_key = self.keys[0], self.keys[-1]
        self.batches = self._plan_batches(rng, batches, items)
        self.log_count = 0
        self.window_start_ms = 0

    # -- batches

    def _plan_batches(self, rng: random.Random, count: int, items: int) -> list[BatchSpec]:
        now_s = self.now_ms / 1000
        plans: list[tuple[float, int, str | None, float, int]] = []  # created, lines, end, ran
        big_lines = sum(b[0] for b in BIG_BATCHES) if items >= 700_000 else 0
        bigs = BIG_BATCHES if big_lines else ()
        regular = count - len(bigs) - 1
        sizes = [max(1, int(rng.lognormvariate(4.5, 1.3))) for _ in range(regular)]
        factor = (items - big_lines - 20) / sum(sizes)
        sizes = [max(1, round(s * factor)) for s in sizes]
        for lines, age_days, ends, ran in bigs:
            plans.append((now_s - age_days * 86_400, lines, ends, ran, 0))
        for lines in sizes:
            end = rng.choices(
                ("completed", "failed", "cancelled", "expired"), (0.88, 0.04, 0.04, 0.04)
            )[0]
            ran = {"completed": 1.0, "failed": 0.0}.get(end, rng.uniform(0.05, 0.9))
            plans.append((now_s - rng.uniform(0, BATCH_DAYS * 86_400), lines, end, ran, 1))
        plans.append((now_s - rng.uniform(2, 20) * 86_400, 20, "completed", 1.0, 2))  # rare key
        plans.sort()
        specs = []
        owners = rng.choices(self.keys[:-1], self.key_weights[:-1], k=len(plans))
        for index, (created, lines, ends, ran, kind) in enumerate(plans):
            main = rng.choices(range(len(MODELS)), [m[2] for m in MODELS])[0]
            models = [main]
            if kind != 0 and rng.random() < 0.1:  # a batch mixing models
                models += rng.sample(range(len(MODELS)), 2)
            spec = BatchSpec(
                index=index,
                id=f"batch_{rng.getrandbits(128):032x}",
                owner=self.rare_key if kind == 2 else owners[index],
                created_ms=int(created * 1000),
                lines=0 if ends == "failed" else lines,
                ends_as=ends or "completed",
                ran=1.0 if ends is None else ran,
                rate=rng.uniform(15, 60),
                models=models,
            )
            if ends is None:  # still running: it has run `ran` of its lines by now
                spec.rate = lines * ran / (now_s - created - 3)
            spec.status = self._status(spec)
            specs.append(spec)
        return specs

    def _status(self, spec: BatchSpec) -> str:
        if spec.ends_as == "failed":
            return "failed"
        elapsed = self.now_ms / 1000 - spec.created_ms / 1000 - 3
        if elapsed * spec.rate < spec.lines * spec.ran:
            return "in_progress"
        return spec.ends_as

    def big(self, n: int) -> BatchSpec:
        """The n-th largest batch."""
        return sorted(self.batches, key=lambda b: -b.lines)[n]

    # -- rows

    def item_chunks(self, log_events: list[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
        """``batch_items`` rows in chunks; the logs of lines that finished go to ``log_events``."""
        item_id = 0
        chunk: list[tuple[Any, ...]] = []
        for spec in self.batches:
            rng = random.Random(self.seed * 7919 + spec.index)
            spec.first_item_id = item_id + 1
            running = spec.status == "in_progress"
            elapsed = (self.now_ms - spec.created_ms) / 1000 - 3
            done = min(int(spec.lines * spec.ran), int(elapsed * spec.rate))
            leased = 64 if running else 0
            sums = dict.fromkeys(
                ("succeeded", "failed", "cancelled", "expired", "in", "cached", "out", "reason"), 0
            )
            rest = {"cancelled": "cancelled", "expired": "expired"}.get(spec.status, "pending")
            start_s = spec.created_ms / 1000 + 3
            for line in range(1, spec.lines + 1):
                item_id += 1
                model = spec.models[0] if len(spec.models) == 1 else rng.choice(spec.models)
                spec.used_models.add(model)
                name, provider, _share, price_in, price_out = MODELS[model]
                body = (
                    f'{{"model":"{name}","messages":[{{"role":"user","content":"Summarise '
                    f'document {spec.index}-{line} in three sentences for the weekly report."'
                    f'}}],"max_tokens":512,"temperature":0.2}}'
                ).encode()
                custom_id = f"request-{line}"
                if line <= done:
                    finished = start_s + line / spec.rate + rng.random()
                    ok = rng.random() < 0.97
                    state = "succeeded" if ok else "failed"
                    tokens_in = rng.randint(80, 2_400)
                    cached = tokens_in // 2 if rng.random() < 0.3 else 0
                    tokens_out = rng.randint(20, 700) if ok else 0
                    reasoning = tokens_out // 3 if name == "o3-mini" else 0
                    cost = (tokens_in * price_in + tokens_out * price_out) / 2e6 if ok else 0.0
                    request_id = f"req_{spec.index:05d}{line:07d}"
                    error_code = None if ok else "upstream_error"
                    response = (
                        (
                            f'{{"id":"chatcmpl-{spec.index}-{line}","object":"chat.completion",'
                            f'"model":"{name}","choices":[{{"index":0,"message":{{"role":'
                            f'"assistant","content":"The document {line} reports steady '
                            f'progress on every item."}},"finish_reason":"stop"}}],"usage":'
                            f'{{"prompt_tokens":{tokens_in},"completion_tokens":{tokens_out}}}}}'
                        ).encode()
                        if ok
                        else b'{"error":{"message":"Bad gateway","type":"upstream_error"}}'
                    )
                    sums[state] += 1
                    if ok:
                        sums["in"] += tokens_in
                        sums["cached"] += cached
                        sums["out"] += tokens_out
                        sums["reason"] += reasoning
                    finished_ms = int(finished * 1000)
                    log_events.append(
                        (
                            finished_ms,
                            "batch",
                            spec.owner,
                            name,
                            provider,
                            name,
                            "/v1/chat/completions",
                            spec.id,
                            custom_id,
                            item_id,
                            state,
                            200 if ok else 502,
                            error_code,
                            tokens_in,
                            cached,
                            tokens_out,
                            rng.uniform(300, 4_000),
                            cost,
                            0,
                            request_id,
                            None,
                            None,
                        )
                    )
                    chunk.append(
                        (item_id, spec.id, line, custom_id, name, provider, body, state, 1, 0.0)
                        + (None, None, 200 if ok else 502, response, request_id, error_code)
                        + (None if ok else "Bad gateway", tokens_in, cached, tokens_out)
                        + (reasoning, finished, True, None, cost)
                    )
                else:
                    state = "leased" if line <= done + leased else rest
                    if state in sums:
                        sums[state] += 1
                    lease = (
                        ("worker-1", self.now_ms / 1000 + 300)
                        if state == "leased"
                        else (None, None)
                    )
                    chunk.append(
                        (item_id, spec.id, line, custom_id, name, provider, body, state)
                        + (int(state == "leased"), 0.0, *lease, None, None, None, None, None)
                        + (0, 0, 0, 0, None, True, None, 0.0)
                    )
                if len(chunk) >= CHUNK:
                    yield chunk
                    chunk = []
            spec.figures = sums
        if chunk:
            yield chunk

    def trim_batch_logs(self, log_events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Keep the newest half of ``--logs`` (older ones went to retention); returns them
        sorted by time. Sets the window the interactive calls are spread over."""
        log_events.sort(key=lambda e: e[0])
        keep = min(len(log_events), self.target_logs // 2)
        kept = log_events[len(log_events) - keep :]
        self.window_start_ms = max(self.now_ms - 30 * DAY_MS, kept[0][0] if kept else 0)
        return [e for e in kept if e[0] >= self.window_start_ms]

    def interactive_events(self, count: int) -> list[tuple[Any, ...]]:
        rng = random.Random(self.seed * 31 + 1)
        keys = rng.choices(self.keys, self.key_weights, k=count)
        models = rng.choices(range(len(MODELS)), [m[2] for m in MODELS], k=count)
        statuses = rng.choices(STATUSES, [s[1] for s in STATUSES], k=count)
        endpoints = rng.choices([e[0] for e in ENDPOINTS], [e[1] for e in ENDPOINTS], k=count)
        span = self.now_ms - self.window_start_ms
        events = []
        for i in range(count):
            name, provider, _share, price_in, price_out = MODELS[models[i]]
            status, _, code, error = statuses[i]
            ok = status == "succeeded"
            tokens_in = rng.randint(20, 6_000)
            tokens_out = rng.randint(5, 1_200) if ok else 0
            bodies = (
                (b'{"model":"%s","messages":[...]}' % name.encode(), b'{"choices":[...]}')
                if i % 20 == 0
                else (None, None)
            )
            events.append(
                (
                    self.window_start_ms + int(rng.random() * span),
                    "interactive",
                    keys[i],
                    name,
                    provider,
                    name,
                    endpoints[i],
                    None,
                    None,
                    None,
                    status,
                    code,
                    error,
                    tokens_in,
                    tokens_in // 4 if rng.random() < 0.2 else 0,
                    tokens_out,
                    rng.uniform(150, 9_000),
                    (tokens_in * price_in + tokens_out * price_out) / 1e6 if ok else 0.0,
                    1 if rng.random() < 0.02 else 0,
                    f"req_i{i:09d}",
                    *bodies,
                )
            )
        return events

    def log_chunks(self, batch_events: list[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
        """Every request-log row in time order, ids from 1."""
        events = batch_events + self.interactive_events(self.target_logs - len(batch_events))
        events.sort(key=lambda e: e[0])
        self.log_count = len(events)
        for start in range(0, len(events), CHUNK):
            yield [
                (start + i + 1, *e) for i, e in enumerate(events[start : start + CHUNK], start=0)
            ]

    def batch_rows(self) -> list[tuple[Any, ...]]:
        rows = []
        for spec in self.batches:
            created = spec.created_ms // 1000
            end = created + 3 + int(spec.lines * spec.ran / spec.rate) + 2
            at = dict.fromkeys(
                ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling"),
                None,
            )
            at["cancelled"] = None
            status = spec.status
            if status != "failed":
                at["in_progress"] = created + 2
            if status in ("completed", "expired", "cancelled"):
                at["finalizing"] = end
                at[status] = end + 1
            if status == "cancelled":
                at["cancelling"] = end - 1
            if status == "failed":
                at["failed"] = created + 1
            f = spec.figures or dict.fromkeys(
                ("succeeded", "failed", "cancelled", "expired", "in", "cached", "out", "reason"), 0
            )
            terminal = BatchStatus(status).terminal
            rows.append(
                (
                    spec.id,
                    spec.owner,
                    "/v1/chat/completions",
                    f"file-{spec.index:022d}",
                    "24h",
                    status,
                    created,
                    created + 86_400,
                    MODELS[spec.models[0]][0],
                    json.dumps({"project": f"p{spec.index % 13}"}) if spec.index % 3 else None,
                    at["in_progress"],
                    at["finalizing"],
                    at["completed"],
                    at["failed"],
                    at["expired"],
                    at["cancelling"],
                    at["cancelled"],
                    f"file-out{spec.index:019d}" if terminal and spec.lines else None,
                    f"file-err{spec.index:019d}" if terminal and f["failed"] else None,
                    status if terminal else None,
                    spec.lines,
                    f["succeeded"],
                    f["failed"],
                    f["cancelled"],
                    f["expired"],
                    f["in"],
                    f["cached"],
                    f["out"],
                    f["reason"],
                    spec.created_ms * 1_000_000 + spec.index,
                )
            )
        return rows

    def key_rows(self) -> list[tuple[Any, ...]]:
        created = (self.now_ms - 90 * DAY_MS) // 1000
        return [(k, f"key {i}", f"{i:064x}", created, False) for i, k in enumerate(self.keys)]


# --------------------------------------------------------------------------- databases


async def _postgres_admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fresh_database(kind: str, admin_url: str, workdir: Path) -> AsyncIterator[str]:
    """A new, empty database URL: a SQLite file in ``workdir`` or a PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir}/console.db"
        return
    name = f"bw_console_{secrets.token_hex(6)}"
    await _postgres_admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await _postgres_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def upgrade(engine: AsyncEngine, revision: str) -> float:
    """Migrate to ``revision``; returns the seconds it took."""

    def run(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), revision)

    start = time.perf_counter()
    async with engine.connect() as conn:
        await conn.run_sync(run)
        await conn.commit()
    return time.perf_counter() - start


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


_BULK_TABLES = ("batch_items", "request_logs")


async def fill(url: str, data: Dataset) -> dict[str, float]:
    """Write every row straight through the driver, the big tables' secondary indexes
    dropped meanwhile and built again after; returns seconds per step."""
    timings: dict[str, float] = {}
    events: list[tuple[Any, ...]] = []
    if url.startswith("sqlite"):
        db = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
        db.execute("PRAGMA synchronous=OFF")
        indexes = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            f" AND tbl_name IN {_BULK_TABLES}"
        ).fetchall()
        for name, _sql in indexes:
            db.execute(f"DROP INDEX {name}")

        def write(table: str, columns: Sequence[str], chunks: Iterator[list[Any]]) -> None:
            start = time.perf_counter()
            sql = _insert_sql(table, columns)
            for chunk in chunks:
                db.execute("BEGIN")
                db.executemany(sql, chunk)
                db.execute("COMMIT")
            timings[table] = time.perf_counter() - start

        write("api_keys", KEY_COLUMNS, iter([data.key_rows()]))
        write("batch_items", ITEM_COLUMNS, data.item_chunks(events))
        write("batches", BATCH_COLUMNS, iter([data.batch_rows()]))
        write("request_logs", LOG_COLUMNS, data.log_chunks(data.trim_batch_logs(events)))
        start = time.perf_counter()
        for _name, sql in indexes:
            db.execute(sql)
        timings["indexes"] = time.perf_counter() - start
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        return timings
    conn = await asyncpg.connect(url)
    try:
        # secondary indexes only: those behind a constraint (keys, unique columns) stay
        indexes = await conn.fetch(
            "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS sql"
            " FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid"
            " WHERE i.indrelid::regclass::text = ANY($1::text[]) AND c.oid IS NULL",
            list(_BULK_TABLES),
        )
        for index in indexes:
            await conn.execute(f"DROP INDEX {index['name']}")

        async def copy(table: str, columns: Sequence[str], chunks: Iterator[list[Any]]) -> None:
            start = time.perf_counter()
            for chunk in chunks:
                await conn.copy_records_to_table(table, records=chunk, columns=list(columns))
            timings[table] = time.perf_counter() - start

        await copy("api_keys", KEY_COLUMNS, iter([data.key_rows()]))
        await copy("batch_items", ITEM_COLUMNS, data.item_chunks(events))
        await copy("batches", BATCH_COLUMNS, iter([data.batch_rows()]))
        await copy("request_logs", LOG_COLUMNS, data.log_chunks(data.trim_batch_logs(events)))
        start = time.perf_counter()
        for index in indexes:
            await conn.execute(index["sql"])
        timings["indexes"] = time.perf_counter() - start
        for table in _BULK_TABLES:
            await conn.execute(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")
        start = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        timings["vacuum analyze"] = time.perf_counter() - start
    finally:
        await conn.close()
    return timings


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    group: str
    name: str
    call: Callable[[], Awaitable[int]]  # returns how many rows the page holds


def cases(
    store: SqlStore, logs: SqlRequestLogs, data: Dataset, cursors: dict[str, Any]
) -> list[Case]:
    now = data.now_ms
    running, completed = data.big(0), data.big(1)
    # the biggest batch of two to four weeks ago: its logs are all far from the newest
    old = max(
        (b for b in data.batches if 14 * DAY_MS < now - b.created_ms < 28 * DAY_MS),
        key=lambda b: b.lines,
    )
    big = f"{completed.lines // 1000}k batch"
    out: list[Case] = []

    def add(group: str, name: str, call: Callable[[], Awaitable[int]]) -> None:
        out.append(Case(group, name, call))

    def batches_page(name: str, filters: BatchFilter, after: str | None) -> None:
        async def call() -> int:
            return len((await store.find_batches(filters, limit=PAGE, after=after)).items)

        add("batches", name, call)

    common, rare = data.common_key, data.rare_key
    model, rare_model = MODELS[COMMON_MODEL][0], MODELS[RARE_MODEL][0]
    done = BatchStatus.COMPLETED
    batches_page("find_batches, first page", BatchFilter(), None)
    batches_page("find_batches, deep page", BatchFilter(), cursors["deep"])
    batches_page("find_batches, owner (busiest key)", BatchFilter(owner=common), None)
    batches_page(
        "find_batches, owner (busiest key), deep", BatchFilter(owner=common), cursors["owner"]
    )
    batches_page("find_batches, owner (rare key)", BatchFilter(owner=rare), None)
    batches_page("find_batches, status=completed", BatchFilter(status=done), None)
    batches_page(
        "find_batches, status=completed, deep", BatchFilter(status=done), cursors["status"]
    )
    batches_page("find_batches, status=cancelled", BatchFilter(status=BatchStatus.CANCELLED), None)
    batches_page(f"find_batches, model={model}", BatchFilter(model=model), None)
    batches_page(f"find_batches, model={model}, deep", BatchFilter(model=model), cursors["model"])
    batches_page(f"find_batches, model={rare_model}", BatchFilter(model=rare_model), None)
    batches_page(
        "find_batches, owner+status+model",
        BatchFilter(owner=common, status=done, model=model),
        None,
    )

    async def list_batches() -> int:
        return len((await store.list_batches(common, limit=PAGE, after=None)).items)

    async def list_batches_deep() -> int:
        return len((await store.list_batches(common, limit=PAGE, after=cursors["owner"])).items)

    add("batches", "list_batches, busiest key", list_batches)
    add("batches", "list_batches, busiest key, deep", list_batches_deep)

    def figures(name: str, ids: list[str]) -> None:
        async def call() -> int:
            return len(await store.batch_figures(ids))

        add("batches", name, call)

    figures(f"batch_figures, first page ({cursors['first_lines']:,} lines)", cursors["first_ids"])
    figures(f"batch_figures, deep page ({cursors['deep_lines']:,} lines)", cursors["deep_ids"])
    figures(
        f"batch_figures, page with the {big} ({cursors['big_lines']:,} lines)",
        cursors["big_ids"],
    )

    def lines(name: str, batch: BatchSpec, state: ItemState | None, after: int | None) -> None:
        async def call() -> int:
            page = await store.list_lines(
                batch.id, LineFilter(state=state), limit=PAGE, after_line=after
            )
            return len(page.items)

        add("lines", name, call)

    deep = completed.lines * 5 // 6
    lines(f"list_lines, {big}, first page", completed, None, None)
    lines(f"list_lines, {big}, after line {deep:,}", completed, None, deep)
    lines(f"list_lines, {big}, state=failed", completed, ItemState.FAILED, None)
    lines(f"list_lines, {big}, state=failed, after {deep:,}", completed, ItemState.FAILED, deep)
    lines(f"list_lines, {big}, state=expired (none)", completed, ItemState.EXPIRED, None)
    lines(
        f"list_lines, running {running.lines // 1000}k batch, state=pending",
        running,
        ItemState.PENDING,
        None,
    )

    item_ids = [str(completed.first_item_id + 1_000 + i) for i in range(PAGE)]

    async def for_items() -> int:
        return len(await logs.for_items(item_ids))

    add("lines", "logs.for_items, 50 lines", for_items)

    def log_page(name: str, filters: LogFilter, before: int | None = None) -> None:
        async def call() -> int:
            page = await logs.query(filters, limit=PAGE, before_id=before, bodies=False)
            return len(page.items)

        add("logs", name, call)

    small = cursors["small_batch"]
    middle = data.log_count // 2
    log_page("logs, first page", LogFilter())
    log_page("logs, key (busiest)", LogFilter(key_id=common))
    log_page("logs, key (rare)", LogFilter(key_id=rare))
    log_page(f"logs, model={model}", LogFilter(model=model))
    log_page(f"logs, model={rare_model}", LogFilter(model=rare_model))
    log_page("logs, provider=together", LogFilter(provider="together"))
    log_page("logs, status=failed", LogFilter(status="failed"))
    log_page("logs, status=budget_exceeded", LogFilter(status="budget_exceeded"))
    log_page(f"logs, batch ({completed.lines:,} lines)", LogFilter(batch_id=completed.id))
    log_page(
        f"logs, batch ({old.lines:,} lines, {(now - old.created_ms) // DAY_MS} days old)",
        LogFilter(batch_id=old.id),
    )
    log_page(f"logs, batch ({small[1]} lines)", LogFilter(batch_id=small[0]))
    log_page("logs, kind=interactive", LogFilter(kind="interactive"))
    log_page("logs, last 24 h", LogFilter(since_ms=now - DAY_MS, until_ms=now))
    log_page(
        "logs, one day 14 days ago",
        LogFilter(since_ms=now - 15 * DAY_MS, until_ms=now - 14 * DAY_MS),
    )
    log_page("logs, deep cursor", LogFilter(), middle)
    log_page("logs, key (busiest), deep cursor", LogFilter(key_id=common), middle)
    log_page(f"logs, model={rare_model}, deep cursor", LogFilter(model=rare_model), middle)
    log_page("logs, key (busiest) + model", LogFilter(key_id=common, model=model))

    async def get() -> int:
        return int(await logs.get(data.log_count // 3) is not None)

    add("logs", "logs.get", get)

    def usage(name: str, query: UsageQuery) -> None:
        async def call() -> int:
            return len((await logs.usage(query)).series)

        add("usage", name, call)

    for days in (7, 30):
        for interval in ("day", "hour"):
            usage(
                f"usage, {days} d by model per {interval}",
                UsageQuery(group_by="model", interval=interval, since_ms=now - days * DAY_MS),
            )
    usage(
        "usage, 30 d, busiest key, per day",
        UsageQuery(interval="day", since_ms=now - 30 * DAY_MS, key_id=common),
    )

    def spent(name: str, key: str) -> None:
        async def call() -> int:
            await logs.spent(key, now - 30 * DAY_MS)
            return 1

        add("usage", name, call)

    spent("spent, busiest key, 30 d", common)
    spent("spent, rare key, 30 d", rare)
    return out


def find_cursors(data: Dataset) -> dict[str, Any]:
    """Where the deep pages start, and the ids of the pages whose figures are asked for."""
    order = sorted(data.batches, key=lambda b: b.created_ms * 1_000_000 + b.index, reverse=True)

    def deep(batches: list[BatchSpec]) -> str:
        return batches[int(len(batches) * 0.75)].id

    completed = data.big(1)
    position = order.index(completed)
    big_page = order[position - 10 : position + PAGE - 10]
    small = next(b for b in reversed(data.batches) if 100 <= b.lines <= 300 and b.ran == 1.0)
    return {
        "deep": deep(order),
        "owner": deep([b for b in order if b.owner == data.common_key]),
        "status": deep([b for b in order if b.status == "completed"]),
        "model": deep([b for b in order if COMMON_MODEL in b.used_models]),
        "first_ids": [b.id for b in order[:PAGE]],
        "first_lines": sum(b.lines for b in order[:PAGE]),
        "deep_ids": [b.id for b in order[1000 : 1000 + PAGE]],
        "deep_lines": sum(b.lines for b in order[1000 : 1000 + PAGE]),
        "big_ids": [b.id for b in big_page],
        "big_lines": sum(b.lines for b in big_page),
        "small_batch": (small.id, small.lines),
    }


# --------------------------------------------------------------------------- measuring


@dataclass
class Timing:
    group: str
    name: str
    rows: int
    median_ms: float
    min_ms: float
    max_ms: float
    runs: int
    # rows the scans read (PostgreSQL) / thousands of VM instructions (SQLite), with --explain
    work: float | None = None
    work_generic: float | None = None  # PostgreSQL's generic plan


async def measure(case: Case, runs: int, budget: float) -> Timing:
    """Warm-up, then ``runs`` timed calls (at least 3, fewer once ``budget`` is used)."""
    start = time.perf_counter()
    rows = await case.call()
    # PostgreSQL may switch a prepared statement to its generic plan from the sixth run
    # (asyncpg prepares every statement): warm up past it while that stays cheap
    for _ in range(WARMUP - 1):
        if time.perf_counter() - start > budget / 3:
            break
        await case.call()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < runs and (len(times) < 3 or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        await case.call()
        times.append((time.perf_counter() - t0) * 1000)
    return Timing(
        case.group,
        case.name,
        rows,
        statistics.median(times),
        min(times),
        max(times),
        len(times),
    )


class Statements:
    """The SQL a store call runs, caught on the engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.caught: list[tuple[str, Any]] | None = None
        event.listen(engine.sync_engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, _conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if self.caught is not None and statement.lstrip().upper().startswith("SELECT"):
            self.caught.append((statement, params))

    async def of(self, case: Case) -> list[tuple[str, Any]]:
        self.caught = []
        try:
            await case.call()
            return self.caught
        finally:
            self.caught = None


_SCANS = {"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan"}


def _pg_rows_read(node: dict[str, Any]) -> int:
    read = 0
    if node["Node Type"] in _SCANS:
        per_loop = (
            node.get("Actual Rows", 0)
            + node.get("Rows Removed by Filter", 0)
            + node.get("Rows Removed by Index Recheck", 0)
        )
        read += int(per_loop * node.get("Actual Loops", 1))
    return read + sum(_pg_rows_read(child) for child in node.get("Plans", []))


def _pg_plan_lines(node: dict[str, Any], depth: int = 0) -> list[str]:
    what = node["Node Type"]
    if "Relation Name" in node:
        what += f" on {node['Relation Name']}"
    if "Index Name" in node:
        what += f" using {node['Index Name']}"
    for key in ("Index Cond", "Filter", "Sort Key", "Group Key"):
        if key in node:
            what += f" [{key}: {node[key]}]"
    what += f" rows={node.get('Actual Rows')}×{node.get('Actual Loops')}"
    if node.get("Rows Removed by Filter"):
        what += f" removed={node['Rows Removed by Filter']}"
    lines = ["  " * depth + what]
    for child in node.get("Plans", []):
        lines += _pg_plan_lines(child, depth + 1)
    return lines


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


async def explain(url: str, statements: list[tuple[str, Any]]) -> tuple[float, float, list[str]]:
    """The plans of ``statements`` and the work they did (see ``Timing.work``); on
    PostgreSQL also that of their generic plans (what a prepared statement may settle on)."""
    work = generic = 0.0
    lines: list[str] = []
    if url.startswith("sqlite"):
        db = sqlite3.connect(url.split("///", 1)[1])
        steps = [0]

        def tick() -> int:
            steps[0] += 1
            return 0

        try:
            for sql, params in statements:
                plan = db.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
                lines += [f"  {row[3]}" for row in plan]
                db.set_progress_handler(tick, 1000)
                db.execute(sql, params).fetchall()
                db.set_progress_handler(None, 0)
            work = generic = float(steps[0])
        finally:
            db.close()
        return work, generic, lines
    conn = await asyncpg.connect(url)
    try:
        for sql, params in statements:
            raw = await conn.fetchval(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, *(params or ())
            )
            plan = json.loads(raw)[0]
            work += _pg_rows_read(plan["Plan"])
            lines += [f"  {line}" for line in _pg_plan_lines(plan["Plan"])]
            lines.append(f"  execution {plan['Execution Time']:.1f} ms")
            if plan["Execution Time"] > 1000:  # reads everything in any plan; spare the time
                generic += _pg_rows_read(plan["Plan"])
                continue
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            await conn.execute(f"PREPARE bench_statement AS {sql}")
            arguments = f"({', '.join(_literal(v) for v in params)})" if params else ""
            raw = await conn.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE bench_statement{arguments}"
            )
            await conn.execute("DEALLOCATE bench_statement")
            await conn.execute("RESET plan_cache_mode")
            plan = json.loads(raw)[0]
            generic += _pg_rows_read(plan["Plan"])
            lines += ["  generic plan:"] + [f"    {x}" for x in _pg_plan_lines(plan["Plan"])]
            lines.append(f"    execution {plan['Execution Time']:.1f} ms")
    finally:
        await conn.close()
    return work, generic, lines


# --------------------------------------------------------------------------- writes


def _written_log(
    now_ms: int, i: int, batch_id: str | None = None, item_id: int | None = None
) -> RequestLog:
    return RequestLog(
        created_at_ms=now_ms + i,
        kind="batch" if batch_id else "interactive",
        key_id="key_benchwrites",
        model="gpt-4o-mini",
        provider=WRITES_PROVIDER,
        upstream_model="gpt-4o-mini",
        endpoint="/v1/chat/completions",
        batch_id=batch_id,
        custom_id=f"request-{i}" if batch_id else None,
        item_id=item_id,
        status="succeeded",
        status_code=200,
        usage=Usage(input_tokens=900, output_tokens=200),
        latency_ms=800.0,
        cost_usd=0.0003,
        request_id=f"req_w{i:09d}",
    )


async def _backend_pids(store: SqlStore) -> list[int]:
    """The PostgreSQL backends serving the bench's database (none on SQLite)."""
    if store.is_sqlite:
        return []
    async with store.engine.connect() as conn:
        query = text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        return list((await conn.execute(query)).scalars())


def _cpu_seconds(pids: list[int]) -> float:
    """CPU time of this process (the SQLite driver's thread included) and of ``pids``."""
    total = time.process_time()
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def write_round(
    store: SqlStore, logs: SqlRequestLogs, now_ms: int
) -> dict[str, tuple[float, float]]:
    """Wall and CPU µs per line of the hot-path writes, against the full tables (CPU: this
    process and the database's backends); the rows are removed after."""
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}]}'
    items = [
        NewItem(
            line=i,
            custom_id=f"request-{i}",
            model="gpt-4o-mini",
            provider=WRITES_PROVIDER,
            body=body,
        )
        for i in range(1, WRITE_LINES + 1)
    ]
    async with store.engine.begin() as conn:
        max_log = (await conn.execute(text("SELECT max(id) FROM request_logs"))).scalar() or 0
        await conn.execute(
            text(
                "INSERT INTO batches (id, owner, endpoint, input_file_id, completion_window,"
                " status, created_at, expires_at, total, succeeded, failed, cancelled, expired,"
                " input_tokens, cached_tokens, output_tokens, reasoning_tokens, sort_key)"
                " VALUES (:id, 'key_benchwrites', '/v1/chat/completions', 'file-w', '24h',"
                " 'in_progress', 0, 86400, :n, 0, 0, 0, 0, 0, 0, 0, 0, 0)"
            ),
            {"id": WRITES_BATCH, "n": WRITE_LINES},
        )
    pids = await _backend_pids(store)
    result: dict[str, tuple[float, float]] = {}

    @contextlib.contextmanager
    def timed(name: str, lines: Callable[[], int]) -> Iterator[None]:
        wall, cpu = time.perf_counter(), _cpu_seconds(pids)
        yield
        n = max(lines(), 1)
        result[name] = (
            (time.perf_counter() - wall) / n * 1e6,
            (_cpu_seconds(pids) - cpu) / n * 1e6,
        )

    with timed("insert_items", lambda: WRITE_LINES):
        for offset in range(0, WRITE_LINES, 2_000):
            await store.insert_items(WRITES_BATCH, items[offset : offset + 2_000])
    now = time.time()
    claimed = 0
    with timed("claim+record", lambda: claimed):
        while claimed < WRITE_LINES:
            held = await store.claim_items("bench", WRITES_PROVIDER, 256, now, 300.0)
            if not held:
                break
            claimed += len(held)
            for offset in range(0, len(held), 64):
                records = [
                    LineRecord(
                        outcome=ItemOutcome(
                            item_id=item.id,
                            state=ItemState.SUCCEEDED,
                            status_code=200,
                            response=b'{"choices":[{"message":{"content":"hi"}}]}',
                            request_id=f"req_{item.id}",
                            usage=Usage(input_tokens=900, output_tokens=200),
                        ),
                        batch_id=WRITES_BATCH,
                        cost_usd=0.0003,
                        log=_written_log(now_ms, item.line, WRITES_BATCH, int(item.id)),
                    )
                    for item in held[offset : offset + 64]
                ]
                await store.record_outcomes("bench", records, now)
    with timed("log insert", lambda: WRITE_LINES):
        for offset in range(0, WRITE_LINES, 100):
            await logs.insert([_written_log(now_ms, i) for i in range(offset, offset + 100)])
    async with store.engine.begin() as conn:
        await conn.execute(text("DELETE FROM request_logs WHERE id > :m"), {"m": max_log})
        await conn.execute(text("DELETE FROM batch_items WHERE batch_id = :b"), {"b": WRITES_BATCH})
        await conn.execute(text("DELETE FROM batches WHERE id = :b"), {"b": WRITES_BATCH})
        await conn.execute(text("DELETE FROM usage_hourly WHERE key_id = 'key_benchwrites'"))
    return result


# --------------------------------------------------------------------------- running


@dataclass
class Phase:
    database: str
    phase: str
    revision: str
    migrate_s: float
    timings: list[Timing]
    writes: dict[str, tuple[float, float]]  # µs per line: wall, CPU
    cpu_pressure: float | None = None  # share of the phase some task waited for a CPU


async def run_phase(
    url: str,
    database: str,
    phase: str,
    revision: str,
    migrate_s: float,
    engine: AsyncEngine,
    data: Dataset,
    args: argparse.Namespace,
) -> Phase:
    store = SqlStore(engine)
    logs = SqlRequestLogs(store)
    statements = Statements(engine)
    timings = []
    pressure, wall = cpu_pressure_seconds(), time.perf_counter()
    plans: list[str] = []
    for case in cases(store, logs, data, find_cursors(data)):
        timing = await measure(case, args.runs, args.budget)
        if args.explain:
            timing.work, timing.work_generic, lines = await explain(url, await statements.of(case))
            plans += [f"== {case.name} ({timing.median_ms:.1f} ms, work {_work(timing)})"]
            plans += lines
        timings.append(timing)
        print(
            f"  {database:10} {phase:6} {case.name:58} {timing.rows:5} rows "
            f"{timing.median_ms:9.1f} ms" + (f"  work {_work(timing)}" if args.explain else ""),
            flush=True,
        )
    if args.explain:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        (RESULTS_DIR / f"console-plans-{database}-{phase}.txt").write_text("\n".join(plans) + "\n")
    rounds = [await write_round(store, logs, data.now_ms) for _ in range(WRITE_ROUNDS)]
    if not store.is_sqlite:  # what autovacuum would do: the next phase reads a tidy table
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("batches", *_BULK_TABLES):
                await conn.execute(text(f"VACUUM ANALYZE {table}"))
    # wall: the fastest round, the least disturbed by the machine's other tenants;
    # CPU (which they disturb less): the median round
    writes = {
        k: (min(r[k][0] for r in rounds), statistics.median(r[k][1] for r in rounds))
        for k in rounds[0]
    }
    print(
        f"  {database:10} {phase:6} writes µs/line (wall, CPU): "
        + ", ".join(f"{k} {w:.0f}, {c:.0f}" for k, (w, c) in writes.items()),
        flush=True,
    )
    share = None
    if pressure is not None and (now := cpu_pressure_seconds()) is not None:
        share = (now - pressure) / (time.perf_counter() - wall)
    return Phase(database, phase, revision, migrate_s, timings, writes, share)


async def run_database(database: str, args: argparse.Namespace, data: Dataset) -> list[Phase]:
    with tempfile.TemporaryDirectory(prefix="bw-console-") as tmp:
        async with fresh_database(database, args.postgres or "", Path(tmp)) as url:
            engine = create_engine(Config(database=url).async_database_url)
            try:
                first = args.before or "head"
                migrate_s = await upgrade(engine, first)
                start = time.perf_counter()
                filled = await fill(url, data)
                if first == "head":
                    filled["kept figures"] = await keep_figures(engine)
                    filled["usage hours"] = await fill_usage_hours(engine)
                print(
                    f"{database}: filled in {time.perf_counter() - start:.0f} s ("
                    + ", ".join(f"{k} {v:.0f} s" for k, v in filled.items())
                    + f"); {data.log_count:,} logs, {len(data.batches):,} batches",
                    flush=True,
                )
                phases = [
                    await run_phase(
                        url,
                        database,
                        "before" if args.before else "head",
                        first,
                        migrate_s,
                        engine,
                        data,
                        args,
                    )
                ]
                if args.before:
                    migrate_s = await upgrade(engine, "head")
                    print(f"{database}: migrated to head in {migrate_s:.1f} s", flush=True)
                    phases.append(
                        await run_phase(
                            url, database, "after", "head", migrate_s, engine, data, args
                        )
                    )
                return phases
            finally:
                await engine.dispose()


async def keep_figures(engine: AsyncEngine) -> float:
    """Write the figures each batch keeps on its row (``kept_figures``: cost, models,
    providers, tokens; ``batch_rows`` wrote the counts), as the gateway keeps them while
    a batch runs and writes them again when it ends; returns seconds."""
    start = time.perf_counter()
    async with engine.begin() as conn:
        ids = (
            await conn.execute(
                select(batches.c.id).where(batches.c.status != BatchStatus.VALIDATING.value)
            )
        ).scalars()
        for batch_id in list(ids):
            values = await kept_figures(conn, batch_id)
            await conn.execute(update(batches).where(batches.c.id == batch_id).values(values))
    return time.perf_counter() - start


async def fill_usage_hours(engine: AsyncEngine) -> float:
    """Add up the logs per hour (``usage_hourly``), as migration 0012 does for the logs a
    database holds (the gateway keeps them as it writes logs); returns seconds."""
    start = time.perf_counter()
    migration = importlib.import_module("batchway.store.migrations.versions.0012_usage_hourly")
    async with engine.begin() as conn:
        await conn.execute(text(migration.FILL))
    if engine.dialect.name != "sqlite":
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE usage_hourly"))
    return time.perf_counter() - start


def _work(timing: Timing) -> str:
    if timing.work is None:
        return ""
    text = f"{timing.work:,.0f}"
    if timing.work_generic is not None and timing.work_generic != timing.work:
        text += f" (generic {timing.work_generic:,.0f})"
    return text


def print_tables(phases: list[Phase]) -> None:
    for database in dict.fromkeys(p.database for p in phases):
        mine = [p for p in phases if p.database == database]
        before, after = mine[0], mine[-1]
        print(f"\n{database}: median ms of {after.timings[0].runs}+ runs (pages of {PAGE})\n")
        work = " | work before | work after" if before.timings[0].work is not None else ""
        print(f"| query | rows | {before.phase} ms | {after.phase} ms | after/before{work} |")
        print("|---|---:|---:|---:|---:" + ("|---:|---:" if work else "") + "|")
        for b, a in zip(before.timings, after.timings, strict=True):
            ratio = a.median_ms / b.median_ms if b.median_ms else math.nan
            extra = f" | {_work(b)} | {_work(a)}" if work else ""
            print(
                f"| {a.name} | {a.rows} | {b.median_ms:.1f} | {a.median_ms:.1f} | {ratio:.2f}"
                f"{extra} |"
            )
        print("\n| write, µs per line | wall before | wall after | CPU before | CPU after |")
        print("|---|---:|---:|---:|---:|")
        for name, (wall, cpu) in after.writes.items():
            print(
                f"| {name} | {before.writes[name][0]:.0f} | {wall:.0f} "
                f"| {before.writes[name][1]:.0f} | {cpu:.0f} |"
            )
        for p in mine:
            if p.cpu_pressure is not None:
                print(f"\nCPU pressure during {p.phase}: {p.cpu_pressure:.0%}", end="")
        if len(mine) > 1:
            print(f"\nmigration to head (index build): {after.migrate_s:.1f} s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--postgres", metavar="URL", help="also PostgreSQL, beside this database")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--logs", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--budget", type=float, default=4.0, help="seconds per case, roughly")
    parser.add_argument("--before", default="", help="revision measured first (default: head only)")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "console.json")
    return parser.parse_args(argv)


def cpu_pressure_seconds() -> float | None:
    """Total time some runnable task waited for a CPU (Linux PSI), or None."""
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(some.rsplit("total=", 1)[1]) / 1e6


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


async def main_async(args: argparse.Namespace) -> list[Phase]:
    now_ms = int(time.time() * 1000)
    databases = ([] if args.no_sqlite else ["sqlite"]) + (["postgresql"] if args.postgres else [])
    phases: list[Phase] = []
    for database in databases:
        data = Dataset(args.seed, now_ms, args.logs, args.items, args.batches)
        phases += await run_database(database, args, data)
    return phases


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    phases = uvloop.run(main_async(args))
    print_tables(phases)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "commit": _commit(),
                "python": platform.python_version(),
                "sqlite": sqlite3.sqlite_version,
                "argv": sys.argv[1:],
                "phases": [asdict(p) for p in phases],
            },
            indent=2,
        )
    )
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()
