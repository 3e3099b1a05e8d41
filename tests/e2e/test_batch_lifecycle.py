"""A batch's whole life through the official OpenAI SDK: upload, create, run, read results."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import RunningGateway
from tests.helpers import chat_line, jsonl, read_results, unique, upload


def test_batch_runs_every_line_and_each_result_belongs_to_its_request(gw: RunningGateway):
    client = gw.client()
    tag = unique()
    lines = [chat_line(f"req-{i}", prompt=f"{tag} number {i}") for i in range(40)]
    file_id = upload(client, jsonl(lines))

    batch = client.batches.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"purpose": "test"},
    )
    assert batch.status == "validating"
    assert batch.expires_at == batch.created_at + 86400
    assert batch.metadata == {"purpose": "test"}

    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed) == (40, 40)
    assert batch.request_counts.failed == 0
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    assert batch.model == "fake-ok"
    assert batch.error_file_id is None
    assert batch.usage is not None and batch.usage.output_tokens > 0

    results = read_results(client, batch.output_file_id)
    assert [r.custom_id for r in results] == [f"req-{i}" for i in range(40)]
    for i, result in enumerate(results):
        assert result.response is not None and result.error is None
        assert result.response.status_code == 200
        content = result.response.body["choices"][0]["message"]["content"]
        assert content == f"echo: {tag} number {i}"
    assert len({r.id for r in results}) == 40

    output = client.files.retrieve(batch.output_file_id)
    assert output.purpose == "batch_output"
    assert output.bytes == len(client.files.content(batch.output_file_id).content)


def test_upstream_sees_provider_key_and_model_never_the_gateway_key(gw: RunningGateway):
    key = gw.create_key()
    client = gw.client(key)
    lines = [chat_line("only", model="team-model", prompt=unique(), temperature=0.3, seed=7)]
    batch = client.batches.create(
        input_file_id=upload(client, jsonl(lines)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    gw.drain()
    assert client.batches.retrieve(batch.id).status == "completed"

    [seen] = gw.fake.requests
    assert seen.headers["authorization"] == "Bearer upstream-secret"
    assert key not in json.dumps(seen.headers)
    assert seen.json is not None
    # forwarded as sent, with only the model rewritten to the upstream's name
    assert seen.json["model"] == "fake-ok"
    assert seen.json["temperature"] == 0.3 and seen.json["seed"] == 7


def test_transient_upstream_failures_are_retried(gw: RunningGateway):
    client = gw.client()
    tag = unique()
    lines = [
        chat_line(f"r429-{i}", model="fake-429-then-ok", prompt=f"{tag}a{i}") for i in range(5)
    ]
    lines += [
        chat_line(f"r500-{i}", model="fake-500-then-ok", prompt=f"{tag}b{i}") for i in range(5)
    ]
    batch = client.batches.create(
        input_file_id=upload(client, jsonl(lines)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None and batch.request_counts.completed == 10
    assert batch.model is None  # two models in one file
    assert gw.fake.count(model="fake-429-then-ok") == 10
    assert gw.fake.count(model="fake-500-then-ok") == 10
    assert len(read_results(client, batch.output_file_id)) == 10


def test_final_failures_go_to_the_error_file(make_gateway):
    gw = make_gateway(providers={"fake": {"timeout_seconds": 0.3}})
    gw.fake.timeout_seconds = 2.0
    client = gw.client()
    tag = unique()
    lines = [
        chat_line("ok", prompt=tag),
        chat_line("bad-request", model="fake-400", prompt=tag),
        chat_line("always-500", model="fake-500", prompt=tag),
        chat_line("times-out", model="fake-timeout", prompt=tag),
        chat_line("not-json", model="fake-bad-json", prompt=tag),
    ]
    batch = client.batches.create(
        input_file_id=upload(client, jsonl(lines)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 4)

    errors = {r.custom_id: r for r in read_results(client, batch.error_file_id)}
    assert set(errors) == {"bad-request", "always-500", "times-out", "not-json"}
    bad = errors["bad-request"]
    assert bad.response is not None and bad.response.status_code == 400
    assert bad.response.body["error"]["type"] == "invalid_request_error"
    assert gw.fake.count(model="fake-400") == 1  # a 4xx is final: no retry
    failing = errors["always-500"]
    assert failing.response is not None and failing.response.status_code == 500
    assert gw.fake.count(model="fake-500") == 3  # max_attempts
    timeout = errors["times-out"]
    assert timeout.response is None and timeout.error is not None
    assert timeout.error.code == "request_timeout"
    assert errors["not-json"].response is None
    assert [r.custom_id for r in read_results(client, batch.output_file_id)] == ["ok"]


@pytest.mark.parametrize(
    ("endpoint", "body", "check"),
    [
        (
            "/v1/embeddings",
            {"model": "fake-ok", "input": ["alpha", "beta"]},
            lambda body: len(body["data"]) == 2 and body["object"] == "list",
        ),
        (
            "/v1/completions",
            {"model": "fake-ok", "prompt": "once upon"},
            lambda body: body["choices"][0]["text"] == "echo: once upon",
        ),
        (
            "/v1/responses",
            {"model": "fake-ok", "input": "hello there"},
            lambda body: body["output"][0]["content"][0]["text"] == "echo: hello there",
        ),
    ],
)
def test_other_endpoints_run_too(gw: RunningGateway, endpoint, body, check):
    client = gw.client()
    line = {"custom_id": "one", "method": "POST", "url": endpoint, "body": body}
    batch = client.batches.create(
        input_file_id=upload(client, jsonl([line])),
        endpoint=endpoint,
        completion_window="24h",
    )
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    [result] = read_results(client, batch.output_file_id)
    assert result.response is not None and check(result.response.body)
    assert gw.fake.requests[0].path == endpoint


def test_cancel_keeps_partial_results_and_reports_the_rest(make_gateway):
    gw = make_gateway(providers={"fake": {"max_concurrency": 1}})
    client = gw.client()
    tag = unique()
    lines = [chat_line(f"c{i}", model="fake-slow", prompt=f"{tag} {i}") for i in range(30)]
    batch = client.batches.create(
        input_file_id=upload(client, jsonl(lines)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )

    async def run_then_cancel() -> None:
        drain = gw.gateway.worker.drain()
        import asyncio

        task = asyncio.ensure_future(drain)
        while gw.fake.count(model="fake-slow") < 3:
            await asyncio.sleep(0.01)
        cancelled = await asyncio.to_thread(client.batches.cancel, batch.id)
        assert cancelled.status == "cancelling"
        assert cancelled.cancelling_at is not None
        await task

    gw.run(run_then_cancel())
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "cancelled"
    assert batch.cancelled_at is not None
    done = read_results(client, batch.output_file_id)
    not_run = read_results(client, batch.error_file_id)
    assert 3 <= len(done) < 30
    assert all(r.error and r.error.code == "batch_cancelled" for r in not_run)
    assert sorted(r.custom_id for r in done + not_run) == sorted(f"c{i}" for i in range(30))
    assert batch.request_counts is not None
    assert batch.request_counts.completed == len(done)
    assert batch.request_counts.failed == len(not_run)
    assert gw.fake.count(model="fake-slow") == len(done)

    # cancelling again is refused with a 400, not a retryable 409
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(batch.id)


def test_expired_batch_reports_lines_that_never_ran(gw: RunningGateway):
    client = gw.client()
    lines = [chat_line(f"e{i}", prompt=unique()) for i in range(5)]
    batch = client.batches.create(
        input_file_id=upload(client, jsonl(lines)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    store = gw.gateway.store

    async def window_over() -> None:
        from sqlalchemy import update

        from batchway.store.tables import batches

        async with store.engine.begin() as conn:
            await conn.execute(update(batches).where(batches.c.id == batch.id).values(expires_at=0))

    gw.run(window_over())
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "expired"
    assert batch.expired_at is not None
    results = read_results(client, batch.output_file_id) + read_results(client, batch.error_file_id)
    assert sorted(r.custom_id for r in results) == [f"e{i}" for i in range(5)]
    for result in read_results(client, batch.error_file_id):
        assert result.error is not None and result.error.code == "batch_expired"


def test_list_batches_newest_first_with_cursor_pages(gw: RunningGateway):
    client = gw.client()
    file_id = upload(client, jsonl([chat_line("x")]))
    created = [
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id
        for _ in range(5)
    ]
    page = client.batches.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    assert [b.id for b in client.batches.list(limit=2)] == list(reversed(created))
    other = gw.client()
    assert list(other.batches.list()) == []


def test_tutorial_paths_without_the_v1_prefix(gw: RunningGateway):
    key = gw.create_key()
    headers = {"authorization": f"Bearer {key}"}
    with open("examples/batch.jsonl", "rb") as handle:
        response = httpx.post(
            f"{gw.base_url}/files",
            headers=headers,
            data={"purpose": "batch"},
            files={"file": ("batch.jsonl", handle)},
        )
    assert response.status_code == 200, response.text
    file_id = response.json()["id"]
    response = httpx.post(
        f"{gw.base_url}/batches",
        headers=headers,
        json={
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    assert response.status_code == 200, response.text
    batch_id = response.json()["id"]
    gw.drain()
    batch = httpx.get(f"{gw.base_url}/batches/{batch_id}", headers=headers).json()
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
    content = httpx.get(f"{gw.base_url}/files/{batch['output_file_id']}/content", headers=headers)
    lines = [json.loads(line) for line in content.text.splitlines()]
    assert [line["custom_id"] for line in lines] == [f"prod{i}" for i in range(1, 6)]
    text = lines[0]["response"]["body"]["choices"][0]["message"]["content"]
    assert text.startswith("[simulated]")


def test_lines_run_under_the_providers_max_concurrency(make_gateway):
    gw = make_gateway(providers={"fake": {"max_concurrency": 3}})
    client = gw.client()
    tag = unique()
    lines = [chat_line(f"s{i}", model="fake-slow", prompt=f"{tag} {i}") for i in range(24)]
    batch = client.batches.create(
        input_file_id=upload(client, jsonl(lines)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    gw.drain()
    assert client.batches.retrieve(batch.id).status == "completed"
    assert gw.fake.count(model="fake-slow") == 24
    # never more than the limit at once, and the limit was used
    assert gw.fake.max_in_flight == 3


def test_a_worker_that_stops_cleanly_hands_its_lines_back(make_gateway):
    gw = make_gateway(providers={"fake": {"max_concurrency": 2}})
    client = gw.client()
    tag = unique()
    lines = [chat_line(f"h{i}", model="fake-slow", prompt=f"{tag} {i}") for i in range(20)]
    batch = client.batches.create(
        input_file_id=upload(client, jsonl(lines)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )

    async def stop_midway() -> int:
        import asyncio

        from sqlalchemy import func, select

        from batchway.store.tables import batch_items

        task = asyncio.ensure_future(gw.gateway.worker.drain())
        while gw.fake.count(model="fake-slow") < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        async with gw.gateway.store.engine.connect() as conn:
            query = select(func.count()).where(batch_items.c.state == "leased")
            leased: int = (await conn.execute(query)).scalar_one()
        return leased

    assert gw.run(stop_midway()) == 0  # nothing left waiting for a lease to run out
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert sorted(r.custom_id for r in read_results(client, batch.output_file_id)) == sorted(
        f"h{i}" for i in range(20)
    )
