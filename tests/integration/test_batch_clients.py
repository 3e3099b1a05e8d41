"""The native batch API clients against the fakes of OpenAI, Azure OpenAI and Anthropic,
served on loopback ports (the fakes advance a batch one step per retrieve)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import orjson
import pytest

from batchway.errors import UpstreamAuthError, UpstreamRejected, UpstreamUnavailable
from batchway.providers._batch_clients import (
    AnthropicBatchClient,
    OpenAIBatchClient,
    UpstreamBatch,
    UpstreamMessageBatch,
    _batch,
)
from batchway.providers._http import HttpUpstream
from batchway.server import ServerHandle, serve_in_thread
from batchway.testing import FakeAnthropicAPI, FakeAzureBatchAPI, FakeOpenAIBatchAPI

OPENAI_KEY = "sk-test-openai"
AZURE_KEY = "azure-test-key"
ANTHROPIC_KEY = "sk-ant-test"
API_VERSION = "2024-10-21"
MAX_POLLS = 20

# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def openai_served() -> Iterator[tuple[FakeOpenAIBatchAPI, ServerHandle]]:
    fake = FakeOpenAIBatchAPI(api_key=OPENAI_KEY)
    with serve_in_thread(fake) as handle:
        yield fake, handle


@pytest.fixture
def azure_served() -> Iterator[tuple[FakeAzureBatchAPI, ServerHandle]]:
    fake = FakeAzureBatchAPI(api_key=AZURE_KEY)
    with serve_in_thread(fake) as handle:
        yield fake, handle


@pytest.fixture
def anthropic_served() -> Iterator[tuple[FakeAnthropicAPI, ServerHandle]]:
    fake = FakeAnthropicAPI(api_key=ANTHROPIC_KEY)
    with serve_in_thread(fake) as handle:
        yield fake, handle


def _http(base_url: str, headers: dict[str, str]) -> HttpUpstream:
    return HttpUpstream(
        base_url,
        provider="test",
        headers=headers,
        max_connections=4,
        timeout=10.0,
        connect_timeout=5.0,
    )


@asynccontextmanager
async def openai_client(
    handle: ServerHandle, key: str = OPENAI_KEY
) -> AsyncIterator[OpenAIBatchClient]:
    http = _http(handle.url, {"authorization": f"Bearer {key}"})
    try:
        yield OpenAIBatchClient(http)
    finally:
        await http.close()


@asynccontextmanager
async def azure_client(
    handle: ServerHandle, key: str = AZURE_KEY
) -> AsyncIterator[OpenAIBatchClient]:
    http = _http(f"{handle.base_url}/openai", {"api-key": key})
    try:
        yield OpenAIBatchClient(http, azure_api_version=API_VERSION)
    finally:
        await http.close()


@asynccontextmanager
async def anthropic_client(
    handle: ServerHandle, key: str = ANTHROPIC_KEY
) -> AsyncIterator[AnthropicBatchClient]:
    http = _http(handle.base_url, {"anthropic-version": "2023-06-01", "x-api-key": key})
    try:
        yield AnthropicBatchClient(http)
    finally:
        await http.close()


def chat_line(custom_id: str, text: str, *, model: str = "fake-ok", url: str = "") -> bytes:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
    if not text:  # an invalid body: this line answers 400 and goes to the error file
        body["messages"] = []
    line = {"custom_id": custom_id, "method": "POST", "url": url or "/v1/chat/completions"}
    return orjson.dumps({**line, "body": body}) + b"\n"


def jsonl(n: int, *, bad: int = 0, url: str = "") -> bytes:
    lines = [chat_line(f"req-{i}", f"hello {i}", url=url) for i in range(n)]
    lines += [chat_line(f"bad-{i}", "", url=url) for i in range(bad)]
    return b"".join(lines)


async def poll(client: OpenAIBatchClient, batch_id: str) -> UpstreamBatch:
    for _ in range(MAX_POLLS):
        batch = await client.retrieve_batch(batch_id)
        if batch.terminal:
            return batch
    raise AssertionError(f"batch {batch_id} not terminal after {MAX_POLLS} polls")


async def read_lines(client: OpenAIBatchClient, file_id: str) -> dict[str, Any]:
    data = b"".join([chunk async for chunk in client.download(file_id)])
    lines = [orjson.loads(line) for line in data.splitlines()]
    return {line["custom_id"]: line for line in lines}


def echo_of(line: dict[str, Any]) -> str:
    content: str = line["response"]["body"]["choices"][0]["message"]["content"]
    return content


# -- OpenAI --------------------------------------------------------------------------------------


async def test_openai_round_trip(openai_served: tuple[FakeOpenAIBatchAPI, ServerHandle]) -> None:
    fake, handle = openai_served
    async with openai_client(handle) as client:
        file_id = await client.upload("input.jsonl", jsonl(3, bad=2))
        assert fake.file_content(file_id) == jsonl(3, bad=2)

        created = await client.create_batch(
            file_id, "/v1/chat/completions", metadata={"bw_batch": "b-1"}
        )
        assert created.status == "validating"
        assert created.input_file_id == file_id
        assert created.output_file_id is None and created.error_file_id is None
        assert created.metadata == {"bw_batch": "b-1"}

        done = await poll(client, created.id)
        assert (done.status, done.total, done.completed, done.failed) == ("completed", 5, 3, 2)
        assert done.errors == ()
        assert done.output_file_id and done.error_file_id

        output = await read_lines(client, done.output_file_id)
        assert set(output) == {"req-0", "req-1", "req-2"}
        for i in range(3):
            assert echo_of(output[f"req-{i}"]) == f"echo: hello {i}"
        errors = await read_lines(client, done.error_file_id)
        assert set(errors) == {"bad-0", "bad-1"}
        assert all(line["response"]["status_code"] == 400 for line in errors.values())

        await client.delete_file(file_id)
        assert file_id not in fake.files
        with pytest.raises(UpstreamRejected) as info:
            await client.delete_file(file_id)
        assert info.value.status == 404


async def test_openai_upload_streams_an_async_iterator(
    openai_served: tuple[FakeOpenAIBatchAPI, ServerHandle],
) -> None:
    fake, handle = openai_served
    content = jsonl(4)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(content), 50):
            yield content[start : start + 50]

    async with openai_client(handle) as client:
        file_id = await client.upload("streamed.jsonl", chunks())
        assert fake.file_content(file_id) == content
        upload = fake.requests[-1]
        assert upload.headers.get("transfer-encoding") == "chunked"  # streamed, not buffered
        assert upload.headers["content-type"].startswith("multipart/form-data; boundary=")
        assert upload.form == {"purpose": "batch"}
        assert upload.files["file"] == ("streamed.jsonl", content)
        batch = await poll(client, (await client.create_batch(file_id, "/v1/chat/completions")).id)
        assert batch.completed == 4


async def test_openai_failed_validation_reports_errors(
    openai_served: tuple[FakeOpenAIBatchAPI, ServerHandle],
) -> None:
    fake, handle = openai_served
    async with openai_client(handle) as client:
        file_id = await client.upload("broken.jsonl", jsonl(1) + b"not json\n")
        batch = await poll(client, (await client.create_batch(file_id, "/v1/chat/completions")).id)
        assert batch.status == "failed"
        assert [(e.code, e.line) for e in batch.errors] == [("invalid_json_line", 2)]
        assert batch.output_file_id is None and batch.error_file_id is None


async def test_openai_find_batch_by_metadata(
    openai_served: tuple[FakeOpenAIBatchAPI, ServerHandle],
) -> None:
    fake, handle = openai_served
    async with openai_client(handle) as client:
        file_id = await client.upload("input.jsonl", jsonl(1))
        wanted = await client.create_batch(
            file_id, "/v1/chat/completions", metadata={"bw_batch": "target"}
        )
        # more than one page of newer batches in front of it
        for i in range(120):
            await client.create_batch(
                file_id, "/v1/chat/completions", metadata={"bw_batch": f"{i}"}
            )
        found = await client.find_batch("bw_batch", "target")
        assert found is not None and found.id == wanted.id
        assert found.metadata == {"bw_batch": "target"}
        assert await client.find_batch("bw_batch", "missing") is None
        assert await client.find_batch("bw_batch", "target", pages=1) is None
        assert fake.count("/v1/batches", "GET") == 2 + 2 + 1
        assert all(r.query.get("limit") == "100" for r in fake.requests if r.method == "GET")


async def test_openai_cancel(openai_served: tuple[FakeOpenAIBatchAPI, ServerHandle]) -> None:
    fake, handle = openai_served
    fake.polls_per_step = 0  # only advance_all moves batches
    async with openai_client(handle) as client:
        file_id = await client.upload("input.jsonl", jsonl(4))
        batch = await client.create_batch(file_id, "/v1/chat/completions")
        fake.advance_all()  # in_progress
        cancelling = await client.cancel_batch(batch.id)
        assert cancelling.status == "cancelling" and not cancelling.terminal
        fake.advance_all()
        cancelled = await client.retrieve_batch(batch.id)
        assert cancelled.status == "cancelled" and cancelled.terminal
        assert (cancelled.total, cancelled.completed, cancelled.failed) == (4, 2, 0)
        assert cancelled.output_file_id is not None
        assert set(await read_lines(client, cancelled.output_file_id)) == {"req-0", "req-1"}
        # cancelling a terminal batch is final (400), not retryable
        with pytest.raises(UpstreamRejected) as info:
            await client.cancel_batch(batch.id)
        assert info.value.status == 400 and not info.value.retryable


async def test_openai_refused_create(
    openai_served: tuple[FakeOpenAIBatchAPI, ServerHandle],
) -> None:
    fake, handle = openai_served
    fake.refuse_batches = 1
    async with openai_client(handle) as client:
        file_id = await client.upload("input.jsonl", jsonl(1))
        with pytest.raises(UpstreamRejected) as info:
            await client.create_batch(file_id, "/v1/chat/completions")
        assert info.value.status == 400
        assert info.value.body is not None and b"token_limit_exceeded" in info.value.body
        assert info.value.request_id is not None and info.value.request_id.startswith("req_")
        assert (await client.create_batch(file_id, "/v1/chat/completions")).status == "validating"


async def test_openai_wrong_key(openai_served: tuple[FakeOpenAIBatchAPI, ServerHandle]) -> None:
    _, handle = openai_served
    async with openai_client(handle, key="sk-wrong") as client:
        with pytest.raises(UpstreamAuthError) as info:
            await client.upload("input.jsonl", jsonl(1))
        assert info.value.status == 401
        assert not info.value.retryable
        with pytest.raises(UpstreamAuthError) as info:
            await client.retrieve_batch("batch_x")
        assert info.value.status == 401
        with pytest.raises(UpstreamAuthError) as info:
            _ = [chunk async for chunk in client.download("file-x")]
        assert info.value.status == 401


async def test_unreachable_upstream_is_retryable() -> None:
    http = _http("http://127.0.0.1:1/v1", {})
    try:
        with pytest.raises(UpstreamUnavailable) as info:
            await OpenAIBatchClient(http).retrieve_batch("batch_x")
        assert info.value.retryable
    finally:
        await http.close()


# -- Azure ---------------------------------------------------------------------------------------


async def test_azure_round_trip(azure_served: tuple[FakeAzureBatchAPI, ServerHandle]) -> None:
    fake, handle = azure_served
    async with azure_client(handle) as client:
        file_id = await client.upload("input.jsonl", jsonl(2, bad=1, url="/chat/completions"))
        assert fake.files[file_id]["status"] == "pending"  # the 201 answer was accepted

        created = await client.create_batch(
            file_id, "/chat/completions", metadata={"bw_batch": "az-1"}
        )
        # Azure answers "" for the file ids of a fresh batch
        assert fake.batches[created.id]["output_file_id"] == ""
        assert created.output_file_id is None and created.error_file_id is None

        done = await poll(client, created.id)
        assert (done.status, done.total, done.completed, done.failed) == ("completed", 3, 2, 1)
        assert done.output_file_id and done.error_file_id
        output = await read_lines(client, done.output_file_id)
        assert {cid: echo_of(line) for cid, line in output.items()} == {
            "req-0": "echo: hello 0",
            "req-1": "echo: hello 1",
        }
        assert set(await read_lines(client, done.error_file_id)) == {"bad-0"}

        found = await client.find_batch("bw_batch", "az-1")
        assert found is not None and found.id == created.id
        await client.delete_file(file_id)

    for request in fake.requests:
        assert request.path.startswith("/openai/") and not request.path.startswith("/openai/v1")
        assert request.query["api-version"] == API_VERSION
        assert request.headers["api-key"] == AZURE_KEY


async def test_azure_success_has_zero_byte_error_file(
    azure_served: tuple[FakeAzureBatchAPI, ServerHandle],
) -> None:
    fake, handle = azure_served
    async with azure_client(handle) as client:
        file_id = await client.upload("input.jsonl", jsonl(2, url="/chat/completions"))
        done = await poll(client, (await client.create_batch(file_id, "/chat/completions")).id)
        assert done.status == "completed" and done.failed == 0
        assert done.error_file_id is not None
        assert [chunk async for chunk in client.download(done.error_file_id)] == []


async def test_azure_refused_create_and_wrong_key(
    azure_served: tuple[FakeAzureBatchAPI, ServerHandle],
) -> None:
    fake, handle = azure_served
    fake.refuse_batches = 1
    async with azure_client(handle) as client:
        file_id = await client.upload("input.jsonl", jsonl(1, url="/chat/completions"))
        with pytest.raises(UpstreamRejected) as info:
            await client.create_batch(file_id, "/chat/completions")
        assert info.value.status == 400
    async with azure_client(handle, key="wrong") as client:
        with pytest.raises(UpstreamAuthError) as info:
            await client.create_batch(file_id, "/chat/completions")
        assert info.value.status == 401


async def test_azure_without_api_version_is_rejected(
    azure_served: tuple[FakeAzureBatchAPI, ServerHandle],
) -> None:
    _, handle = azure_served
    http = _http(f"{handle.base_url}/openai", {"api-key": AZURE_KEY})
    try:
        with pytest.raises(UpstreamRejected) as info:
            await OpenAIBatchClient(http).retrieve_batch("batch_x")
        assert info.value.status == 400
    finally:
        await http.close()


def test_batch_parsing_tolerates_azure_quirks() -> None:
    batch = _batch(
        {
            "id": "batch_1",
            "status": "Failed",
            "input_file_id": "file-1",
            "output_file_id": "",
            "error_file_id": None,
            "request_counts": {"total": None, "completed": None, "failed": 3},
            "errors": {"data": [{"code": "invalid_json_line", "message": "bad", "line": "7"}]},
            "metadata": None,
        }
    )
    assert batch.status == "failed" and batch.terminal
    assert batch.output_file_id is None and batch.error_file_id is None
    assert (batch.total, batch.completed, batch.failed) == (0, 0, 3)
    assert batch.errors == (("invalid_json_line", "bad", 7),)
    assert batch.metadata == {}
    assert _batch({"id": "b", "status": "completed", "request_counts": None}).total == 0


# -- Anthropic -----------------------------------------------------------------------------------


def message_request(custom_id: str, text: str, model: str = "claude-fake") -> dict[str, Any]:
    params = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    return {"custom_id": custom_id, "params": params}


async def poll_message_batch(client: AnthropicBatchClient, batch_id: str) -> UpstreamMessageBatch:
    for _ in range(MAX_POLLS):
        batch = await client.retrieve_batch(batch_id)
        if batch.ended:
            return batch
    raise AssertionError(f"message batch {batch_id} not ended after {MAX_POLLS} polls")


async def test_anthropic_round_trip(
    anthropic_served: tuple[FakeAnthropicAPI, ServerHandle],
) -> None:
    fake, handle = anthropic_served
    requests = [message_request(f"req-{i}", f"hello {i}") for i in range(3)]
    requests.append(message_request("bad-0", "hi", model="fake-400"))
    async with anthropic_client(handle) as client:
        created = await client.create_batch(requests)
        assert created.processing_status == "in_progress" and not created.ended
        assert created.results_url is None
        assert created.counts["processing"] == 4

        ended = await poll_message_batch(client, created.id)
        assert ended.results_url == f"{handle.base_url}/v1/messages/batches/{created.id}/results"
        assert ended.counts == {
            "processing": 0,
            "succeeded": 3,
            "errored": 1,
            "canceled": 0,
            "expired": 0,
        }
        results = {line["custom_id"]: line["result"] async for line in client.results(ended)}
        assert set(results) == {"req-0", "req-1", "req-2", "bad-0"}
        for i in range(3):
            message = results[f"req-{i}"]["message"]
            assert results[f"req-{i}"]["type"] == "succeeded"
            assert message["content"][0]["text"] == f"echo: hello {i}"
        assert results["bad-0"]["type"] == "errored"

        await client.delete_batch(created.id)
        assert created.id not in fake.batches
        with pytest.raises(UpstreamRejected) as info:
            await client.retrieve_batch(created.id)
        assert info.value.status == 404


async def test_a_results_url_on_another_host_is_read_from_the_base_url(
    anthropic_served: tuple[FakeAnthropicAPI, ServerHandle],
) -> None:
    fake, handle = anthropic_served
    async with anthropic_client(handle) as client:
        ended = await poll_message_batch(
            client, (await client.create_batch([message_request("r", "hi")])).id
        )
        assert ended.results_url is not None
        elsewhere = ended.results_url.replace(handle.base_url, "https://elsewhere.invalid")
        fake.clear()

        lines = [line async for line in client.results(replace(ended, results_url=elsewhere))]

    assert [line["custom_id"] for line in lines] == ["r"]
    # the session's key went to the configured host only
    [seen] = fake.requests
    assert seen.path == f"/v1/messages/batches/{ended.id}/results"
    assert seen.headers["x-api-key"] == ANTHROPIC_KEY


async def test_anthropic_cancel(anthropic_served: tuple[FakeAnthropicAPI, ServerHandle]) -> None:
    fake, handle = anthropic_served
    fake.polls_per_step = 0
    async with anthropic_client(handle) as client:
        batch = await client.create_batch([message_request(f"r{i}", "x") for i in range(4)])
        with pytest.raises(ValueError):
            _ = [line async for line in client.results(batch)]
        with pytest.raises(UpstreamRejected) as info:  # delete before ended
            await client.delete_batch(batch.id)
        assert info.value.status == 400
        canceling = await client.cancel_batch(batch.id)
        assert canceling.processing_status == "canceling"
        fake.advance_all()
        ended = await client.retrieve_batch(batch.id)
        assert ended.ended
        assert (ended.counts["succeeded"], ended.counts["canceled"]) == (2, 2)
        types = {line["custom_id"]: line["result"]["type"] async for line in client.results(ended)}
        assert types == {"r0": "succeeded", "r1": "succeeded", "r2": "canceled", "r3": "canceled"}
        await client.delete_batch(batch.id)


async def test_anthropic_refused_create_and_wrong_key(
    anthropic_served: tuple[FakeAnthropicAPI, ServerHandle],
) -> None:
    fake, handle = anthropic_served
    fake.refuse_batches = 1
    async with anthropic_client(handle) as client:
        with pytest.raises(UpstreamRejected) as info:
            await client.create_batch([message_request("r", "x")])
        assert info.value.status == 400
        assert info.value.request_id is not None and info.value.request_id.startswith("req_")
    async with anthropic_client(handle, key="wrong") as client:
        with pytest.raises(UpstreamAuthError) as info:
            await client.create_batch([message_request("r", "x")])
        assert info.value.status == 401


async def test_anthropic_results_parse_lines_split_across_chunks(
    anthropic_served: tuple[FakeAnthropicAPI, ServerHandle],
) -> None:
    _, handle = anthropic_served
    requests = [message_request(f"r{i}", "word " * 50) for i in range(500)]
    async with anthropic_client(handle) as client:
        batch = await poll_message_batch(client, (await client.create_batch(requests)).id)
        seen = [line["custom_id"] async for line in client.results(batch)]
        assert sorted(seen) == sorted(f"r{i}" for i in range(500))
