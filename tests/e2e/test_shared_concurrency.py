"""A provider's ``max_concurrency`` across a cluster, batch lines and synchronous calls
together: two API replicas and a worker on PostgreSQL and Redis (docs/scale-out.md)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.conftest import gateway_config
from tests.helpers import chat_line, start_batch, unique
from tests.processes import GatewayProcess, WorkerProcess

LIMIT = 8  # the provider's max_concurrency, for the whole cluster
LINES = 120
CALLS = 48  # synchronous calls, 24 at a time: three times the limit


@pytest.fixture
def cluster(
    postgres_url: str, redis_url: str, tmp_path: Path, fake_upstream: Any
) -> Iterator[tuple[list[GatewayProcess], WorkerProcess]]:
    fake, upstream = fake_upstream
    fake.clear()
    fake.slow_seconds = 0.1
    config = gateway_config(
        postgres_url,
        tmp_path / "files",
        upstream.url,
        providers={"fake": {"max_concurrency": LIMIT, "interactive_share": 0.25}},
        rate_limits={"backend": "redis", "redis_url": redis_url, "prefix": f"sc-{unique()}"},
        worker={"enabled": True},
    )
    path = tmp_path / "batchway.yaml"
    path.write_text(yaml.safe_dump(config))
    replicas = [GatewayProcess(path, tmp_path / f"api-{i}.log", "--no-worker") for i in range(2)]
    worker = WorkerProcess(path, tmp_path / "worker.log")
    try:
        for process in [*replicas, worker]:
            process.start()
        yield replicas, worker
    finally:
        for process in [worker, *replicas]:
            process.stop()


def test_batch_lines_and_live_calls_of_every_process_share_one_limit(
    cluster: tuple[list[GatewayProcess], WorkerProcess], fake_upstream: Any
) -> None:
    replicas, _ = cluster
    fake, _ = fake_upstream
    key = replicas[0].create_key("shared")
    clients = [
        openai.OpenAI(base_url=f"{r.base_url}/v1", api_key=key, max_retries=0, timeout=60)
        for r in replicas
    ]
    tag = unique()
    lines = [chat_line(f"l{i}", model="fake-slow", prompt=f"{tag} line {i}") for i in range(LINES)]
    batch = start_batch(clients[0], lines)

    def call(i: int) -> str | None:
        answer = clients[i % 2].chat.completions.create(
            model="fake-slow", messages=[{"role": "user", "content": f"{tag} call {i}"}]
        )
        return answer.choices[0].message.content

    deadline = time.monotonic() + 60
    while fake.in_flight == 0:  # the batch has begun: live calls meet it upstream
        assert time.monotonic() < deadline, "the batch never started"
        time.sleep(0.01)
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(call, range(CALLS)))
    assert all(answers)

    while (current := clients[1].batches.retrieve(batch.id)).status != "completed":
        assert current.status in ("validating", "in_progress", "finalizing"), current
        assert time.monotonic() < deadline, f"batch still {current.status}"
        time.sleep(0.05)  # polling, as a client of the batch API does
    assert current.request_counts is not None
    assert current.request_counts.completed == LINES

    # each replica alone would let 8 calls through, the worker 6 lines: 22 in all
    assert fake.max_in_flight <= LIMIT, fake.max_in_flight
    sent = [r for r in fake.requests if r.model == "fake-slow"]
    assert len(sent) == LINES + CALLS
