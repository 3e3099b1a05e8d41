"""Batches on providers' native batch APIs (OpenAI and Azure fakes), driven by the official
OpenAI SDK: one client batch, upstream batches per model, results mapped back by line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import anthropic
import pytest
from sqlalchemy import select, update

from batchway.server import ServerHandle, serve_in_thread
from batchway.store.tables import upstream_batches
from batchway.testing import FakeAnthropicAPI, FakeAzureBatchAPI, FakeOpenAIBatchAPI
from tests.conftest import RunningGateway
from tests.helpers import chat_line, jsonl, read_results, unique, upload

POLL = {"batch_poll_seconds": 0.01, "batch_poll_max_seconds": 0.05}


@pytest.fixture(scope="session")
def openai_batches() -> Iterator[tuple[FakeOpenAIBatchAPI, ServerHandle]]:
    fake = FakeOpenAIBatchAPI(api_key="sk-fake")
    with serve_in_thread(fake) as handle:
        yield fake, handle


@pytest.fixture(scope="session")
def azure_batches() -> Iterator[tuple[FakeAzureBatchAPI, ServerHandle]]:
    fake = FakeAzureBatchAPI(api_key="azure-fake-key")
    with serve_in_thread(fake) as handle:
        yield fake, handle


@pytest.fixture(scope="session")
def anthropic_batches() -> Iterator[tuple[FakeAnthropicAPI, ServerHandle]]:
    fake = FakeAnthropicAPI(api_key="sk-ant-fake")
    with serve_in_thread(fake) as handle:
        yield fake, handle


@pytest.fixture
def native(make_gateway, openai_batches, azure_batches, anthropic_batches):
    """``native(batch="native")`` → a gateway whose gpt-* models run on the fakes."""
    fake, handle = openai_batches
    azure, azure_handle = azure_batches
    claude, claude_handle = anthropic_batches
    for api in (fake, azure, claude):
        api.reset()
        api.polls_per_step = 1
        api.refuse_batches = 0

    def start(batch: str = "native", prices: dict | None = None, **worker) -> RunningGateway:
        gateway: RunningGateway = make_gateway(
            providers={
                "oai": {
                    "kind": "openai",
                    "base_url": handle.url,
                    "api_key": "sk-fake",
                    "batch": batch,
                    **POLL,
                },
                "claude": {
                    "kind": "anthropic",
                    "base_url": claude_handle.base_url,
                    "api_key": "sk-ant-fake",
                    "batch": batch,
                    **POLL,
                },
                "az": {
                    "kind": "azure",
                    "base_url": azure_handle.base_url,
                    "api_key": "azure-fake-key",
                    "batch": batch,
                    **POLL,
                },
            },
            models={
                "gpt-native": {"provider": "oai", "model": "fake-ok"},
                "gpt-native-400": {"provider": "oai", "model": "fake-400"},
                "gpt-azure": {"provider": "az", "model": "fake-ok"},
                "claude-native": {"provider": "claude", "model": "fake-ok"},
                "claude-native-400": {"provider": "claude", "model": "fake-400"},
            },
            worker=worker,
            prices=prices or {},
        )
        return gateway

    return start


def _lines(tag: str, model: str, count: int, prefix: str = "n") -> list[dict]:
    return [chat_line(f"{prefix}{i}", model=model, prompt=f"{tag} {i}") for i in range(count)]


def _create(gw: RunningGateway, lines: list[dict]):
    client = gw.client()
    batch = client.batches.create(
        input_file_id=upload(client, jsonl(lines)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    return client, batch


def test_lines_run_in_upstream_batches_and_map_back(native, openai_batches):
    fake, _ = openai_batches
    gw = native()
    tag = unique()
    lines = _lines(tag, "gpt-native", 10) + _lines(tag, "gpt-native-400", 3, prefix="bad")
    client, batch = _create(gw, lines)
    gw.drain()

    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (10, 3)
    output = read_results(client, batch.output_file_id)
    assert [r.custom_id for r in output] == [f"n{i}" for i in range(10)]
    for i, result in enumerate(output):
        assert result.response is not None
        assert result.response.body["choices"][0]["message"]["content"] == f"echo: {tag} {i}"
    errors = read_results(client, batch.error_file_id)
    assert [r.custom_id for r in errors] == [f"bad{i}" for i in range(3)]
    assert all(r.response and r.response.status_code == 400 for r in errors)

    # one upstream batch per model, no line sent as a call, nothing of ours leaked
    assert len(fake.batches) == 2
    assert fake.upstream is not None and fake.upstream.count() == 0
    assert batch.output_file_id not in fake.files and batch.id not in fake.batches
    uploaded = [r for r in fake.requests if r.path == "/v1/files"]
    assert len(uploaded) == 2
    sent_ids = {
        json.loads(line)["custom_id"]
        for r in uploaded
        for line in r.files["file"][1].decode().splitlines()
    }
    assert not sent_ids & {line["custom_id"] for line in lines}
    assert all(r.headers["authorization"] == "Bearer sk-fake" for r in fake.requests)


def test_auto_runs_refused_batches_as_calls(native, openai_batches):
    fake, _ = openai_batches
    gw = native(batch="auto")
    fake.refuse_batches = 1
    tag = unique()
    client, batch = _create(gw, _lines(tag, "gpt-native", 6))
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None and batch.request_counts.completed == 6
    assert fake.upstream is not None and fake.upstream.count(path="/v1/chat/completions") == 6
    assert len(fake.batches) == 0


def test_native_only_fails_lines_of_a_refused_batch(native, openai_batches):
    fake, _ = openai_batches
    gw = native(batch="native")
    fake.refuse_batches = 1
    client, batch = _create(gw, _lines(unique(), "gpt-native", 4))
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    errors = read_results(client, batch.error_file_id)
    assert len(errors) == 4
    assert all(r.response and r.response.status_code == 400 for r in errors)
    assert fake.upstream is not None and fake.upstream.count() == 0


def test_azure_global_batch(native, azure_batches):
    azure, _ = azure_batches
    gw = native()
    tag = unique()
    client, batch = _create(gw, _lines(tag, "gpt-azure", 5))
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    output = read_results(client, batch.output_file_id)
    assert [r.response.body["choices"][0]["message"]["content"] for r in output if r.response] == [
        f"echo: {tag} {i}" for i in range(5)
    ]
    assert batch.error_file_id is None
    assert len(azure.batches) == 1
    assert all(r.headers.get("api-key") == "azure-fake-key" for r in azure.requests)
    assert all(r.query.get("api-version") == "2024-10-21" for r in azure.requests)


def _run_until(gw: RunningGateway, done) -> None:
    """Run the worker until ``done()`` holds, then stop it (as a process stopping would)."""

    async def run() -> None:
        task = asyncio.ensure_future(gw.gateway.worker.drain())
        try:
            for _ in range(2000):
                if await done():
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("the worker never got there")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    gw.run(run())


async def _submitted(gw: RunningGateway) -> bool:
    async with gw.gateway.store.engine.connect() as conn:
        states = (await conn.execute(select(upstream_batches.c.state))).scalars().all()
    return bool(states) and all(state == "submitted" for state in states)


def test_cancel_reaches_the_upstream_batch(native, openai_batches):
    fake, _ = openai_batches
    gw = native()
    fake.polls_per_step = 10_000  # the upstream batch waits while the worker is stopped
    client, batch = _create(gw, _lines(unique(), "gpt-native", 6))
    _run_until(gw, lambda: _submitted(gw))
    fake.polls_per_step = 1
    assert client.batches.cancel(batch.id).status == "cancelling"
    gw.drain()

    batch = client.batches.retrieve(batch.id)
    assert batch.status == "cancelled"
    [upstream] = fake.batches.values()
    assert upstream["status"] == "cancelled"
    results = read_results(client, batch.output_file_id) + read_results(client, batch.error_file_id)
    assert sorted(r.custom_id for r in results) == [f"n{i}" for i in range(6)]
    cancelled = [r for r in results if r.error and r.error.code == "batch_cancelled"]
    assert 0 < len(cancelled) < 6  # the upstream had run part of it


def test_a_restart_reattaches_instead_of_submitting_twice(native, openai_batches):
    fake, _ = openai_batches
    gw = native(lease_seconds=1)
    fake.polls_per_step = 10_000
    tag = unique()
    client, batch = _create(gw, _lines(tag, "gpt-native", 4))
    _run_until(gw, lambda: _submitted(gw))
    assert len(fake.batches) == 1

    async def forget_the_upstream_id() -> None:
        # as if the worker died right after creating the upstream batch, before saving its id
        async with gw.gateway.store.engine.begin() as conn:
            await conn.execute(
                update(upstream_batches).values(state="preparing", upstream_batch_id=None)
            )

    gw.run(forget_the_upstream_id())
    fake.polls_per_step = 1
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert len(fake.batches) == 1  # found again by its metadata, not created twice
    assert len(read_results(client, batch.output_file_id)) == 4


def test_a_message_batch_on_openai_native(native, openai_batches):
    fake, _ = openai_batches
    gw = native()
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.create_key(), max_retries=0)
    tag = unique()
    requests = [
        {
            "custom_id": f"m{i}",
            "params": {
                "model": "gpt-native",
                "max_tokens": 50,
                "messages": [{"role": "user", "content": f"{tag} {i}"}],
            },
        }
        for i in range(3)
    ]
    requests.append(
        {
            "custom_id": "topk",
            "params": {
                "model": "gpt-native",
                "max_tokens": 50,
                "top_k": 3,
                "messages": [{"role": "user", "content": tag}],
            },
        }
    )
    batch = client.messages.batches.create(requests=requests)
    gw.drain()
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    for i in range(3):
        result = results[f"m{i}"]
        assert result.type == "succeeded"
        assert result.message.content[0].text == f"echo: {tag} {i}"  # type: ignore[union-attr]
    assert results["topk"].type == "errored"
    assert "top_k" in results["topk"].error.error.message  # type: ignore[union-attr]
    [upstream] = fake.batches.values()
    assert upstream["endpoint"] == "/v1/chat/completions"


def test_a_message_batch_on_anthropic_native(native, anthropic_batches):
    claude, _ = anthropic_batches
    gw = native()
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.create_key(), max_retries=0)
    tag = unique()
    requests = [
        {
            "custom_id": f"m{i}",
            "params": {
                "model": "claude-native" if i < 4 else "claude-native-400",
                "max_tokens": 50,
                "messages": [{"role": "user", "content": f"{tag} {i}"}],
            },
        }
        for i in range(5)
    ]
    batch = client.messages.batches.create(requests=requests)
    gw.drain()
    assert client.messages.batches.retrieve(batch.id).request_counts.succeeded == 4
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    for i in range(4):
        assert results[f"m{i}"].message.content[0].text == f"echo: {tag} {i}"  # type: ignore[union-attr]
    assert results["m4"].type == "errored"
    assert results["m4"].error.error.type == "invalid_request_error"  # type: ignore[union-attr]
    # two upstream message batches (one per model), no single message sent
    assert len(claude.batches) == 2
    assert claude.count(path="/v1/messages") == 0
    sent = [r for r in claude.requests if r.path == "/v1/messages/batches" and r.method == "POST"]
    custom_ids = {req["custom_id"] for r in sent for req in r.json["requests"]}
    assert not custom_ids & {f"m{i}" for i in range(5)}  # our own line ids went, not theirs


def test_a_chat_batch_on_anthropic_native(native, anthropic_batches):
    claude, _ = anthropic_batches
    gw = native()
    tag = unique()
    client, batch = _create(gw, _lines(tag, "claude-native", 4))
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    output = read_results(client, batch.output_file_id)
    for i, result in enumerate(output):
        assert result.response is not None
        assert result.response.body["object"] == "chat.completion"
        assert result.response.body["choices"][0]["message"]["content"] == f"echo: {tag} {i}"
    assert len(claude.batches) == 1
    [created] = [
        r for r in claude.requests if r.path == "/v1/messages/batches" and r.method == "POST"
    ]
    assert all(req["params"]["max_tokens"] == 4096 for req in created.json["requests"])


def test_a_message_batch_on_azure_native(native, azure_batches):
    azure, _ = azure_batches
    gw = native()
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.create_key(), max_retries=0)
    tag = unique()
    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": f"z{i}",
                "params": {
                    "model": "gpt-azure",
                    "max_tokens": 40,
                    "messages": [{"role": "user", "content": f"{tag} {i}"}],
                },
            }
            for i in range(3)
        ]
    )
    gw.drain()
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert [results[f"z{i}"].message.content[0].text for i in range(3)] == [  # type: ignore[union-attr]
        f"echo: {tag} {i}" for i in range(3)
    ]
    assert len(azure.batches) == 1


def test_one_client_batch_across_providers_and_split_upstream(native, openai_batches):
    fake, _ = openai_batches
    gw = native(batch="native")
    gw.gateway.providers["oai"].native.max_lines = 3  # type: ignore[union-attr]
    tag = unique()
    lines = _lines(tag, "gpt-native", 7) + _lines(tag, "fake-ok", 3, prefix="x")
    client, batch = _create(gw, lines)
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None and batch.request_counts.completed == 10
    output = read_results(client, batch.output_file_id)
    assert [r.custom_id for r in output] == [f"n{i}" for i in range(7)] + ["x0", "x1", "x2"]
    assert len(fake.batches) == 3  # 7 lines, at most 3 per upstream batch
    assert gw.fake.count(model="fake-ok") == 3  # the other provider's lines ran as calls


@pytest.mark.parametrize(("mode", "share"), [("native", 0.5), ("execute", 1.0)])
def test_native_lines_are_priced_at_the_batch_price(native, mode: str, share: float):
    """Honest cost: the batch discount only where the provider's batch API really gives it."""
    import httpx

    gw = native(mode, prices={"gpt-native": {"input": 2.0, "output": 8.0}})
    client, batch = _create(gw, _lines(unique(), "gpt-native", 6))
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    output = read_results(client, batch.output_file_id)
    full = (
        sum(
            r.response.body["usage"]["prompt_tokens"] * 2.0
            + r.response.body["usage"]["completion_tokens"] * 8.0
            for r in output
            if r.response
        )
        / 1_000_000
    )
    rows = httpx.get(
        f"{gw.base_url}/admin/logs",
        params={"batch": batch.id},
        headers={"authorization": "Bearer admin-secret"},
    ).json()["data"]
    assert len(rows) == 6 and {row["provider"] for row in rows} == {"oai"}
    assert sum(row["cost_usd"] for row in rows) == pytest.approx(full * share)
