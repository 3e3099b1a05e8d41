"""Several processes on one PostgreSQL database: API replicas that run no batches and
workers that serve no requests, as docs/scale-out.md sets them up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.conftest import gateway_config
from tests.helpers import chat_line, read_results, start_batch, unique
from tests.processes import GatewayProcess, WorkerProcess

POLL_SECONDS = 120.0  # the workers' idle poll: far longer than any wait below


@pytest.fixture
def cluster_config(postgres_url: str, tmp_path: Path, fake_upstream: Any) -> Path:
    _, upstream = fake_upstream
    config = gateway_config(
        postgres_url,
        tmp_path / "files",
        upstream.url,
        worker={"enabled": True, "idle_poll_seconds": POLL_SECONDS},
    )
    path = tmp_path / "batchway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def api_and_worker(cluster_config: Path) -> Iterator[tuple[GatewayProcess, WorkerProcess]]:
    folder = cluster_config.parent
    api = GatewayProcess(cluster_config, folder / "api.log", "--no-worker")
    worker = WorkerProcess(cluster_config, folder / "worker.log")
    try:
        api.start()
        worker.start()
        yield api, worker
    finally:
        worker.stop()
        api.stop()


def _finished(client: openai.OpenAI, batch_id: str, within: float) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        time.sleep(0.05)  # polling, as a client of the batch API does
    raise AssertionError(f"batch {batch_id} still {batch.status} after {within} s")


def test_a_worker_in_another_process_starts_a_new_batch_without_waiting_for_its_poll(
    api_and_worker: tuple[GatewayProcess, WorkerProcess],
) -> None:
    api, _ = api_and_worker
    key = api.create_key("scale")
    client = openai.OpenAI(base_url=f"{api.base_url}/v1", api_key=key, max_retries=0)
    tag = unique()
    # the first batch may meet the worker still starting; the second meets it idle, and
    # only the API process's NOTIFY can tell it (its next poll is two minutes away)
    for round_number in range(2):
        lines = [
            chat_line(f"r{round_number}-{i}", prompt=f"{tag} {round_number} {i}") for i in range(20)
        ]
        batch = _finished(client, start_batch(client, lines).id, within=POLL_SECONDS / 2)
        assert batch.status == "completed"
        assert len(read_results(client, batch.output_file_id)) == 20
