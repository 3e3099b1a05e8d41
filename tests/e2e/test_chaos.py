"""Chaos: 2 API replicas and 3 workers on PostgreSQL, Redis and S3 run a 20,000-line batch
against an upstream with 50 ms of latency while a random replica or worker is killed (-9)
every few seconds and started again, and live chat completions go to the replicas all along.
The batch completes with every line exactly once, logged and priced once; calls repeated by
the kills stay within what was in flight; the upstream never sees more than the provider's
cluster-wide ``max_concurrency``, batch lines and live calls together."""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.conftest import S3Bucket, gateway_config
from tests.e2e.test_crash_recovery import _all_log_rows, _line_costs, priced
from tests.helpers import chat_line, jsonl, read_results, unique, upload
from tests.processes import GatewayProcess, WorkerProcess

LINES = 20_000
CONCURRENCY = 24  # the provider's max_concurrency, for all processes together
PRICE_INPUT, PRICE_OUTPUT = 3.0, 15.0
KILL_EVERY = (2.0, 4.0)  # seconds between kills, drawn at random
DEADLINE = 600.0  # the whole run; a wedged cluster fails here instead of hanging CI


@pytest.fixture
def cluster(
    postgres_url: str, tmp_path: Path, fake_upstream: Any, s3_bucket: S3Bucket, redis_url: str
) -> Iterator[tuple[list[GatewayProcess], list[WorkerProcess]]]:
    fake, upstream = fake_upstream
    fake.clear()
    fake.slow_seconds = 0.05
    config = gateway_config(
        postgres_url,
        f"s3://{s3_bucket.bucket}/chaos",
        upstream.url,
        s3=s3_bucket.config(),
        providers={
            "fake": {
                "max_concurrency": CONCURRENCY,
                "interactive_share": 0.25,  # batch lines at most 18 at once, live calls 6+
                "timeout_seconds": 10,
            }
        },
        rate_limits={
            "backend": "redis",
            "redis_url": redis_url,
            "prefix": f"chaos-{unique()}",
            "concurrency_lease_seconds": 2,
        },
        worker={"enabled": True, "lease_seconds": 2, "max_attempts": 5},
        prices={"fake-slow": {"input": PRICE_INPUT, "output": PRICE_OUTPUT}},
    )
    path = tmp_path / "batchway.yaml"
    path.write_text(yaml.safe_dump(config))
    replicas = [GatewayProcess(path, tmp_path / f"api-{i}.log", "--no-worker") for i in range(2)]
    workers = [WorkerProcess(path, tmp_path / f"worker-{i}.log") for i in range(3)]
    try:
        for process in [*replicas, *workers]:
            process.start()
        yield replicas, workers
    finally:
        for process in [*workers, *replicas]:
            process.stop()
        fake.slow_seconds = 0.05


class Client:
    """Talks to whichever replica is up, as a client behind a load balancer would."""

    def __init__(self, replicas: list[GatewayProcess], key: str) -> None:
        self._clients = [
            openai.OpenAI(base_url=f"{r.base_url}/v1", api_key=key, max_retries=0) for r in replicas
        ]
        self.base_urls = [r.base_url for r in replicas]

    def batch(self, batch_id: str) -> Any:
        for _ in range(200):
            for client in random.sample(self._clients, len(self._clients)):
                try:
                    return client.batches.retrieve(batch_id)
                except openai.APIConnectionError:
                    continue
            time.sleep(0.05)  # both replicas down at once: one is starting again
        raise AssertionError("no replica answered")

    def live_traffic(self, tag: str, stop: threading.Event) -> collections.Counter[str]:
        """Chat completions one after another to a random replica until ``stop``: how many
        were answered, and how many met a replica killed or starting (no other failure)."""
        seen: collections.Counter[str] = collections.Counter()
        rng = random.Random(tag)
        while not stop.is_set():
            client = rng.choice(self._clients)
            try:
                client.chat.completions.create(
                    model="fake-slow",
                    messages=[{"role": "user", "content": f"live-{tag}-{seen.total()}"}],
                    timeout=30,
                )
                seen["answered"] += 1
            except openai.APIConnectionError:
                seen["replica down"] += 1
                time.sleep(0.05)
        return seen


@pytest.mark.slow
def test_a_batch_survives_random_kills_across_the_cluster(
    cluster: tuple[list[GatewayProcess], list[WorkerProcess]],
    fake_upstream: Any,
    postgres_url: str,
) -> None:
    replicas, workers = cluster
    fake, _ = fake_upstream
    key = replicas[0].create_key("chaos")
    first = openai.OpenAI(base_url=f"{replicas[0].base_url}/v1", api_key=key, max_retries=0)
    tag = unique()
    lines = [chat_line(f"line-{i}", model="fake-slow", prompt=f"{tag}:{i}") for i in range(LINES)]
    batch = first.batches.create(
        input_file_id=upload(first, jsonl(lines)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    client = Client(replicas, key)
    stop_live = threading.Event()
    live: list[collections.Counter[str]] = []
    talkers = [
        threading.Thread(
            target=lambda n=n: live.append(client.live_traffic(f"{tag}-{n}", stop_live))
        )
        for n in range(4)
    ]
    for talker in talkers:
        talker.start()

    rng = random.Random(7)
    kills: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    next_kill = started + rng.uniform(*KILL_EVERY)
    while True:
        current = client.batch(batch.id)
        if current.status in ("completed", "failed", "expired", "cancelled"):
            break
        assert time.monotonic() - started < DEADLINE, f"batch still {current.status}"
        if time.monotonic() >= next_kill:
            victim: GatewayProcess = rng.choice([*replicas, *workers])
            victim.kill()
            kills["worker" if isinstance(victim, WorkerProcess) else "replica"] += 1
            victim.start()
            next_kill = time.monotonic() + rng.uniform(*KILL_EVERY)
        time.sleep(0.1)  # polling, as a client of the batch API does

    stop_live.set()
    for talker in talkers:
        talker.join(timeout=60)
    assert len(live) == 4
    assert sum(c["answered"] for c in live) >= 100, live  # live traffic went on throughout
    assert sum(kills.values()) >= 3, kills  # the run saw real chaos
    assert current.status == "completed", current
    assert current.request_counts is not None
    assert (current.request_counts.completed, current.request_counts.failed) == (LINES, 0)

    # every line once in the output
    output = read_results(first, current.output_file_id)
    assert sorted(r.custom_id for r in output) == sorted(f"line-{i}" for i in range(LINES))

    # upstream: every line went, repeats only from kills (at most the calls in flight, which
    # the cluster-wide limit bounds), and never more calls at once than that limit
    sent = collections.Counter(
        r.json["messages"][0]["content"]
        for r in fake.requests
        if r.model == "fake-slow" and r.json["messages"][0]["content"].startswith(f"{tag}:")
    )
    assert set(sent) == {f"{tag}:{i}" for i in range(LINES)}
    repeats = sum(count - 1 for count in sent.values())
    assert repeats <= kills["worker"] * CONCURRENCY, (repeats, kills)
    assert fake.max_in_flight <= CONCURRENCY, fake.max_in_flight  # live calls included

    # logged and priced once
    rows = _all_log_rows(replicas[0].base_url, batch.id)
    assert sorted(row["custom_id"] for row in rows) == sorted(f"line-{i}" for i in range(LINES))
    expected = priced(output, PRICE_INPUT, PRICE_OUTPUT)
    assert sum(row["cost_usd"] for row in rows) == pytest.approx(expected, rel=1e-9)
    assert _line_costs(postgres_url) == pytest.approx(expected, rel=1e-9)
    usage = httpx.get(
        f"{replicas[0].base_url}/admin/usage", headers={"authorization": "Bearer admin-secret"}
    ).json()
    assert usage["totals"]["batch"]["requests"] == LINES
    assert usage["totals"]["batch"]["cost_usd"] == pytest.approx(expected, rel=1e-9)
