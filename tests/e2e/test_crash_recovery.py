"""kill -9 in the middle of a batch: after a restart the batch finishes with every line
exactly once, and only lines in flight at the kill were sent upstream twice. SIGTERM in the
middle of a batch: the calls in flight finish and are recorded, and nothing is sent twice."""

from __future__ import annotations

import asyncio
import collections
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.conftest import gateway_config
from tests.helpers import chat_line, jsonl, read_results, unique, upload
from tests.processes import GatewayProcess

LINES = 2000
CONCURRENCY = 32
PRICE_INPUT, PRICE_OUTPUT = 3.0, 15.0  # USD per million tokens


def _recorded_lines(database_url: str) -> set[str]:
    """The custom_ids whose results the database holds (what a crash cannot take back)."""
    from sqlalchemy import select

    from batchway.config import Config
    from batchway.store.sql import create_engine
    from batchway.store.tables import batch_items

    async def read() -> set[str]:
        engine = create_engine(Config(database=database_url).async_database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(batch_items.c.custom_id).where(batch_items.c.state == "succeeded")
                )
                return {row.custom_id for row in rows}
        finally:
            await engine.dispose()

    return asyncio.run(read())


@pytest.fixture
def crashable(database_url: str, tmp_path: Path, fake_upstream) -> Iterator[GatewayProcess]:
    fake, upstream = fake_upstream
    fake.clear()
    fake.slow_seconds = 0.02
    config = gateway_config(
        database_url,
        tmp_path / "files",
        upstream.url,
        providers={"fake": {"max_concurrency": CONCURRENCY, "timeout_seconds": 10}},
        worker={"enabled": True, "lease_seconds": 2, "max_attempts": 5},
        prices={"fake-slow": {"input": PRICE_INPUT, "output": PRICE_OUTPUT}},
    )
    config_path = tmp_path / "batchway.yaml"
    config_path.write_text(yaml.safe_dump(config))
    gateway = GatewayProcess(config_path, tmp_path / "gateway.log")
    try:
        yield gateway
    finally:
        gateway.stop()
        fake.slow_seconds = 0.05


def _wait_for(client: openai.OpenAI, batch_id: str, done, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if done(batch):
            return batch
        time.sleep(0.05)  # polling, as a client of the batch API does
    raise AssertionError(f"batch {batch_id} did not get there in time: {batch}")


def _start_big_batch(crashable: GatewayProcess):
    """A key, a client, and a batch of LINES slow lines whose prompts carry a fresh tag."""
    key = httpx.post(
        f"{crashable.base_url}/admin/keys",
        json={"name": "restarts"},
        headers={"authorization": "Bearer admin-secret"},
    ).json()["key"]
    client = openai.OpenAI(base_url=f"{crashable.base_url}/v1", api_key=key, max_retries=0)
    tag = unique()
    lines = [chat_line(f"line-{i}", model="fake-slow", prompt=f"{tag}:{i}") for i in range(LINES)]
    batch = client.batches.create(
        input_file_id=upload(client, jsonl(lines)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    return key, client, tag, batch


@pytest.mark.slow
def test_kill_9_mid_batch_loses_and_repeats_nothing(
    crashable: GatewayProcess, fake_upstream, database_url: str
):
    fake, _ = fake_upstream
    crashable.start()
    key, client, tag, batch = _start_big_batch(crashable)

    def well_under_way(b) -> bool:
        return b.request_counts is not None and b.request_counts.completed >= LINES // 4

    before = _wait_for(client, batch.id, well_under_way)
    crashable.kill()
    assert before.status == "in_progress"
    assert before.request_counts is not None and before.request_counts.completed < LINES
    recorded = _recorded_lines(database_url)
    assert 0 < len(recorded) < LINES
    sent_before_restart = collections.Counter(
        r.json["messages"][0]["content"] for r in fake.requests if r.model == "fake-slow"
    )

    crashable.start()
    client = openai.OpenAI(base_url=f"{crashable.base_url}/v1", api_key=key, max_retries=0)
    batch = _wait_for(client, batch.id, lambda b: b.status == "completed")

    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (LINES, 0)
    output = read_results(client, batch.output_file_id)
    assert read_results(client, batch.error_file_id) == []
    assert sorted(r.custom_id for r in output) == sorted(f"line-{i}" for i in range(LINES))
    for result in output:
        assert result.response is not None
        index = result.custom_id.removeprefix("line-")
        assert result.response.body["choices"][0]["message"]["content"] == f"echo: {tag}:{index}"

    # every line reached the upstream; a line whose result was recorded before the kill
    # was never sent again, so only lines in flight at the kill (sent, result not yet
    # written) may have gone twice
    sent = collections.Counter(
        r.json["messages"][0]["content"] for r in fake.requests if r.model == "fake-slow"
    )
    assert set(sent) == {f"{tag}:{i}" for i in range(LINES)}
    repeated = {prompt for prompt, count in sent.items() if count > 1}
    assert all(sent_before_restart[prompt] == 1 for prompt in repeated)
    assert not {f"{tag}:{line.removeprefix('line-')}" for line in recorded} & repeated
    # a runner takes its next line only once its last result is written: at most one
    # call per runner was made without its result on disk
    assert len(repeated) <= CONCURRENCY, len(repeated)

    # billed once: the batch's token totals are exactly the sum over its output lines
    assert batch.usage is not None
    assert batch.usage.input_tokens == sum(
        r.response.body["usage"]["prompt_tokens"] for r in output if r.response
    )
    assert batch.usage.output_tokens == sum(
        r.response.body["usage"]["completion_tokens"] for r in output if r.response
    )

    # priced once: the request logs hold one row per line, and analytics, logs and the
    # lines' own usage agree on the cost
    admin = {"authorization": "Bearer admin-secret"}
    rows = _all_log_rows(crashable.base_url, batch.id)
    assert sorted(row["custom_id"] for row in rows) == sorted(f"line-{i}" for i in range(LINES))
    expected = priced(output, PRICE_INPUT, PRICE_OUTPUT)
    logged = sum(row["cost_usd"] for row in rows)
    usage = httpx.get(f"{crashable.base_url}/admin/usage", headers=admin).json()
    assert usage["totals"]["batch"]["requests"] == LINES
    assert logged == pytest.approx(expected, rel=1e-9)
    assert usage["totals"]["batch"]["cost_usd"] == pytest.approx(expected, rel=1e-9)
    assert _line_costs(database_url) == pytest.approx(expected, rel=1e-9)


@pytest.mark.slow
def test_sigterm_mid_batch_finishes_the_calls_in_flight(
    crashable: GatewayProcess, fake_upstream, database_url: str
):
    fake, _ = fake_upstream
    crashable.start()
    key, client, tag, batch = _start_big_batch(crashable)
    _wait_for(
        client,
        batch.id,
        lambda b: b.request_counts is not None and b.request_counts.completed >= LINES // 4,
    )
    # uvicorn ends by raising the signal again once it has shut down cleanly
    assert crashable.terminate() in (0, -signal.SIGTERM)
    log = crashable.log_path.read_text()
    assert "letting calls in flight finish" in log

    # every call that went upstream before the stop has its result on disk
    sent_before = {
        r.json["messages"][0]["content"] for r in fake.requests if r.model == "fake-slow"
    }
    recorded = {f"{tag}:{line.removeprefix('line-')}" for line in _recorded_lines(database_url)}
    assert sent_before == recorded

    crashable.start()
    client = openai.OpenAI(base_url=f"{crashable.base_url}/v1", api_key=key, max_retries=0)
    batch = _wait_for(client, batch.id, lambda b: b.status == "completed")
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (LINES, 0)
    sent = collections.Counter(
        r.json["messages"][0]["content"] for r in fake.requests if r.model == "fake-slow"
    )
    assert set(sent) == {f"{tag}:{i}" for i in range(LINES)}
    assert [prompt for prompt, count in sent.items() if count > 1] == []
    output = read_results(client, batch.output_file_id)
    assert sorted(r.custom_id for r in output) == sorted(f"line-{i}" for i in range(LINES))
    assert len(_all_log_rows(crashable.base_url, batch.id)) == LINES


def priced(output: list[Any], input_price: float, output_price: float) -> float:
    """What the output lines cost at these prices (USD per million tokens)."""
    return (
        sum(
            r.response.body["usage"]["prompt_tokens"] * input_price
            + r.response.body["usage"]["completion_tokens"] * output_price
            for r in output
            if r.response
        )
        / 1_000_000
    )


def _all_log_rows(base_url: str, batch_id: str) -> list[dict]:
    rows: list[dict] = []
    after = None
    while True:
        params = {"batch": batch_id, "limit": 1000, **({"after": after} if after else {})}
        page = httpx.get(
            f"{base_url}/admin/logs",
            params=params,
            headers={"authorization": "Bearer admin-secret"},
        ).json()
        rows += page["data"]
        if not page["has_more"]:
            return rows
        after = page["last_id"]


def _line_costs(database_url: str) -> float:
    from sqlalchemy import func, select

    from batchway.config import Config
    from batchway.store.sql import create_engine
    from batchway.store.tables import batch_items

    async def read() -> float:
        engine = create_engine(Config(database=database_url).async_database_url)
        try:
            async with engine.connect() as conn:
                total = await conn.scalar(select(func.sum(batch_items.c.cost_usd)))
                return float(total or 0.0)
        finally:
            await engine.dispose()

    return asyncio.run(read())
