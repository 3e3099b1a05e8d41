"""kill -9 while an upstream (native) batch is pending: after a restart the gateway picks the
upstream batch up again — never submitting its lines twice — and the client batch finishes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from batchway.server import serve_in_thread
from batchway.testing import FakeOpenAIBatchAPI
from tests.conftest import gateway_config
from tests.e2e.test_crash_recovery import _wait_for
from tests.helpers import chat_line, jsonl, read_results, unique, upload
from tests.processes import GatewayProcess

LINES = 50


@pytest.fixture
def native_process(
    database_url: str, tmp_path: Path, fake_upstream
) -> Iterator[tuple[GatewayProcess, FakeOpenAIBatchAPI]]:
    _, upstream = fake_upstream
    fake = FakeOpenAIBatchAPI(api_key="sk-fake", polls_per_step=1_000_000)
    with serve_in_thread(fake) as handle:
        config = gateway_config(
            database_url,
            tmp_path / "files",
            upstream.url,
            providers={
                "oai": {
                    "kind": "openai",
                    "base_url": handle.url,
                    "api_key": "sk-fake",
                    "batch": "native",
                    "batch_poll_seconds": 0.05,
                    "batch_poll_max_seconds": 0.2,
                }
            },
            models={"gpt-native": {"provider": "oai", "model": "fake-ok"}},
            worker={"enabled": True, "lease_seconds": 2},
        )
        path = tmp_path / "batchway.yaml"
        path.write_text(yaml.safe_dump(config))
        gateway = GatewayProcess(path, tmp_path / "gateway.log")
        try:
            yield gateway, fake
        finally:
            gateway.stop()


@pytest.mark.slow
def test_kill_9_while_an_upstream_batch_is_pending(native_process):
    gateway, fake = native_process
    gateway.start()
    key = httpx.post(
        f"{gateway.base_url}/admin/keys",
        json={"name": "crash"},
        headers={"authorization": "Bearer admin-secret"},
    ).json()["key"]
    client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0)
    tag = unique()
    lines = [chat_line(f"l{i}", model="gpt-native", prompt=f"{tag} {i}") for i in range(LINES)]
    batch = client.batches.create(
        input_file_id=upload(client, jsonl(lines)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    deadline = time.monotonic() + 60
    while not fake.batches and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for the gateway to submit upstream
    assert len(fake.batches) == 1
    polls_before = fake.count(method="GET")
    deadline = time.monotonic() + 30
    while fake.count(method="GET") == polls_before and time.monotonic() < deadline:
        time.sleep(0.05)  # … and to poll it at least once: it is recorded as submitted
    gateway.kill()

    fake.polls_per_step = 1  # the upstream batch can finish now
    gateway.start()
    client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0)
    batch = _wait_for(client, batch.id, lambda b: b.status == "completed", timeout=120)

    assert len(fake.batches) == 1  # picked up again, not submitted twice
    assert fake.count(path="/v1/files", method="POST") == 1
    output = read_results(client, batch.output_file_id)
    assert sorted(r.custom_id for r in output) == sorted(f"l{i}" for i in range(LINES))
    for result in output:
        assert result.response is not None
        index = result.custom_id.removeprefix("l")
        assert result.response.body["choices"][0]["message"]["content"] == f"echo: {tag} {index}"
