"""The fakes of the providers' native batch APIs, served on loopback ports and driven by the
official OpenAI (incl. AzureOpenAI) and Anthropic SDKs exactly as real clients drive them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx
import openai
import pytest
from anthropic.types.messages import (
    MessageBatchCanceledResult,
    MessageBatchErroredResult,
    MessageBatchExpiredResult,
    MessageBatchSucceededResult,
)
from openai.types import Batch

import batchway.testing
from batchway.server import ServerHandle, serve_in_thread
from batchway.testing import FakeAnthropicAPI, FakeAzureBatchAPI, FakeOpenAIBatchAPI

OPENAI_KEY = "sk-test-openai"
AZURE_KEY = "azure-test-key"
ANTHROPIC_KEY = "sk-ant-test"
API_VERSION = "2024-10-21"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
UNCHECKED: Any = str  # wraps values outside the SDKs' Literal types, for invalid requests
TERMINAL = {"completed", "failed", "expired", "cancelled"}
BATCH_FIELDS = {
    "id",
    "object",
    "endpoint",
    "model",
    "errors",
    "input_file_id",
    "completion_window",
    "status",
    "output_file_id",
    "error_file_id",
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "request_counts",
    "usage",
    "metadata",
}


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openai_served() -> Iterator[tuple[FakeOpenAIBatchAPI, ServerHandle]]:
    fake = FakeOpenAIBatchAPI(api_key=OPENAI_KEY)
    with serve_in_thread(fake) as handle:
        yield fake, handle


@pytest.fixture(scope="module")
def azure_served() -> Iterator[tuple[FakeAzureBatchAPI, ServerHandle]]:
    fake = FakeAzureBatchAPI(api_key=AZURE_KEY, deployments=["gpt-4o-batch", "fake-ok", "fake-400"])
    with serve_in_thread(fake) as handle:
        yield fake, handle


@pytest.fixture(scope="module")
def anthropic_served() -> Iterator[tuple[FakeAnthropicAPI, ServerHandle]]:
    fake = FakeAnthropicAPI(api_key=ANTHROPIC_KEY)
    with serve_in_thread(fake) as handle:
        yield fake, handle


def _restore(fake: Any, defaults: Any, names: tuple[str, ...]) -> None:
    for name in names:
        setattr(fake, name, getattr(defaults, name))


_OPENAI_SETTINGS = (
    "polls_per_step",
    "fail_batches",
    "refuse_batches",
    "expire_batches",
    "max_lines",
    "throttle_polls",
    "throttle_retry_after",
)


@pytest.fixture
def oai_fake(
    openai_served: tuple[FakeOpenAIBatchAPI, ServerHandle],
) -> Iterator[FakeOpenAIBatchAPI]:
    fake, _ = openai_served
    fake.reset()
    yield fake
    _restore(fake, FakeOpenAIBatchAPI(), _OPENAI_SETTINGS)


@pytest.fixture
def oai(
    openai_served: tuple[FakeOpenAIBatchAPI, ServerHandle], oai_fake: FakeOpenAIBatchAPI
) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=openai_served[1].url, api_key=OPENAI_KEY, max_retries=0) as sdk:
        yield sdk


@pytest.fixture
def az_fake(azure_served: tuple[FakeAzureBatchAPI, ServerHandle]) -> Iterator[FakeAzureBatchAPI]:
    fake, _ = azure_served
    fake.reset()
    yield fake
    _restore(fake, FakeAzureBatchAPI(), (*_OPENAI_SETTINGS, "file_pending_polls"))


@pytest.fixture
def az(
    azure_served: tuple[FakeAzureBatchAPI, ServerHandle], az_fake: FakeAzureBatchAPI
) -> Iterator[openai.AzureOpenAI]:
    with openai.AzureOpenAI(
        azure_endpoint=azure_served[1].base_url,
        api_key=AZURE_KEY,
        api_version=API_VERSION,
        max_retries=0,
    ) as sdk:
        yield sdk


@pytest.fixture
def ant_fake(anthropic_served: tuple[FakeAnthropicAPI, ServerHandle]) -> Iterator[FakeAnthropicAPI]:
    fake, _ = anthropic_served
    fake.reset()
    yield fake
    _restore(
        fake,
        FakeAnthropicAPI(),
        ("polls_per_step", "refuse_batches", "expire_batches", "max_requests"),
    )


@pytest.fixture
def ant(
    anthropic_served: tuple[FakeAnthropicAPI, ServerHandle], ant_fake: FakeAnthropicAPI
) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=anthropic_served[1].base_url, api_key=ANTHROPIC_KEY, max_retries=0
    ) as sdk:
        yield sdk


# -- helpers -------------------------------------------------------------------------------------


def chat_line(
    custom_id: str,
    text: str,
    model: str = "fake-ok",
    url: str = "/v1/chat/completions",
    **extra: Any,
) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def upload(client: openai.OpenAI, lines: list[dict[str, Any]] | bytes) -> str:
    content = lines if isinstance(lines, bytes) else jsonl(lines)
    return client.files.create(file=("input.jsonl", content), purpose="batch").id


def start(
    client: openai.OpenAI,
    lines: list[dict[str, Any]] | bytes,
    endpoint: Any = "/v1/chat/completions",  # Azure's "/chat/completions" is outside the Literal
) -> Batch:
    return client.batches.create(
        input_file_id=upload(client, lines), endpoint=endpoint, completion_window="24h"
    )


def poll(client: openai.OpenAI, batch_id: str) -> tuple[Batch, list[str]]:
    """Retrieve until terminal; the final batch and every status seen on the way."""
    seen: list[str] = []
    for _ in range(10):
        batch = client.batches.retrieve(batch_id)
        seen.append(batch.status)
        if batch.status in TERMINAL:
            return batch, seen
    raise AssertionError(f"batch {batch_id} never finished: {seen}")


def download(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if not file_id:
        return []
    content = client.files.content(file_id).content
    assert content == b"" or content.endswith(b"\n")
    return [json.loads(line) for line in content.splitlines()]


def by_id(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    ids = [line["custom_id"] for line in lines]
    assert len(ids) == len(set(ids))
    return dict(zip(ids, lines, strict=True))


def sent_key(headers: dict[str, str]) -> str | None:
    """The API key a request carried: ``x-api-key``, or the Bearer token newer SDKs send."""
    return headers.get("x-api-key", headers.get("authorization", "").removeprefix("Bearer "))


def anthropic_request(custom_id: str, text: str, model: str = "fake-ok", **params: Any) -> Any:
    base: dict[str, Any] = {
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
    }
    return {"custom_id": custom_id, "params": {**base, **params}}


def test_the_fakes_are_exported() -> None:
    for name in (
        "FakeOpenAIBatchAPI",
        "FakeAzureBatchAPI",
        "FakeAnthropicAPI",
        "RecordedAPIRequest",
    ):
        assert name in batchway.testing.__all__
        assert getattr(batchway.testing, name).__name__ == name


# -- OpenAI: files -------------------------------------------------------------------------------


def test_files_upload_retrieve_download_list_delete(
    oai: openai.OpenAI, oai_fake: FakeOpenAIBatchAPI
) -> None:
    content = jsonl([chat_line("a", "hello")])
    created = oai.files.create(file=("input.jsonl", content), purpose="batch")
    assert re.fullmatch(r"file-[0-9A-Za-z]{22}", created.id)
    assert created.object == "file"
    assert created.bytes == len(content)
    assert created.filename == "input.jsonl"
    assert created.purpose == "batch"
    assert created.status == "processed"
    assert created.expires_at == created.created_at + 30 * 86400

    assert oai.files.retrieve(created.id) == created
    assert oai.files.content(created.id).content == content
    assert [f.id for f in oai.files.list(purpose="batch")] == [created.id]
    assert oai_fake.files[created.id]["filename"] == "input.jsonl"

    deleted = oai.files.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "file", True)
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(created.id)


def test_upload_records_the_form_fields(oai: openai.OpenAI, oai_fake: FakeOpenAIBatchAPI) -> None:
    oai.files.create(
        file=("input.jsonl", b"{}\n"),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 7200},
    )
    [record] = [r for r in oai_fake.requests if r.path == "/v1/files"]
    assert record.method == "POST"
    assert record.form["purpose"] == "batch"
    assert record.form["expires_after[seconds]"] == "7200"
    assert record.files["file"] == ("input.jsonl", b"{}\n")
    assert record.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    [stored] = oai_fake.files.values()
    assert stored["expires_at"] == stored["created_at"] + 7200


def test_upload_of_a_batch_file_must_be_jsonl(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="Must be .jsonl"):
        oai.files.create(file=("input.csv", b"a,b\n"), purpose="batch")
    with pytest.raises(openai.BadRequestError) as info:
        oai.files.create(file=("input.jsonl", b"{}\n"), purpose=UNCHECKED("nonsense"))
    assert info.value.param == "purpose"


# -- OpenAI: batches -----------------------------------------------------------------------------


def test_batch_runs_to_completion_through_polls(
    oai: openai.OpenAI, oai_fake: FakeOpenAIBatchAPI
) -> None:
    lines = [chat_line(f"req-{i}", f"question number {i}") for i in range(4)]
    lines.append(chat_line("bad-body", "x") | {"body": {"model": "fake-ok", "messages": []}})
    created = oai.batches.create(
        input_file_id=upload(oai, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "nightly"},
    )
    assert re.fullmatch(r"batch_[0-9a-f]{32}", created.id)
    assert created.status == "validating"
    assert created.output_file_id is None and created.error_file_id is None
    assert created.expires_at == created.created_at + 86400
    assert created.metadata == {"job": "nightly"}
    assert created.request_counts is not None and created.request_counts.total == 0
    raw = httpx.get(
        f"{oai.base_url}batches/{created.id}", headers={"Authorization": f"Bearer {OPENAI_KEY}"}
    ).json()
    assert set(raw) == BATCH_FIELDS  # every field of §3.2, even the null ones

    batch, seen = poll(oai, created.id)
    # the raw GET above was the first poll: validating -> in_progress
    assert seen == ["finalizing", "completed"]
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    assert batch.model == "fake-ok"
    assert batch.request_counts is not None
    assert (
        batch.request_counts.total,
        batch.request_counts.completed,
        batch.request_counts.failed,
    ) == (5, 4, 1)
    assert batch.usage is not None and batch.usage.total_tokens > 0

    output, errors = download(oai, batch.output_file_id), download(oai, batch.error_file_id)
    assert sorted(by_id(output + errors)) == sorted(line["custom_id"] for line in lines)
    assert [line["custom_id"] for line in output] == ["req-3", "req-2", "req-1", "req-0"]
    for line in output:
        assert re.fullmatch(r"batch_req_[0-9a-f]{32}", line["id"])
        assert line["error"] is None
        response = line["response"]
        assert response["status_code"] == 200
        assert re.fullmatch(r"req_[0-9a-f]{32}", response["request_id"])
        number = line["custom_id"].removeprefix("req-")
        assert (
            response["body"]["choices"][0]["message"]["content"]
            == f"echo: question number {number}"
        )
    [error] = errors
    assert error["custom_id"] == "bad-body"
    assert error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["message"]
    files = oai_fake.files
    assert files[batch.output_file_id or ""]["purpose"] == "batch_output"
    assert oai_fake.batches[batch.id]["status"] == "completed"


def test_throttled_polls_answer_429_then_the_batch(
    oai: openai.OpenAI, oai_fake: FakeOpenAIBatchAPI
) -> None:
    created = oai.batches.create(
        input_file_id=upload(oai, [chat_line("r", "x")]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    oai_fake.throttle_polls = 2
    oai_fake.throttle_retry_after = "soon"
    url = f"{oai.base_url}batches/{created.id}"
    auth = {"Authorization": f"Bearer {OPENAI_KEY}"}

    throttled = [httpx.get(url, headers=auth) for _ in range(2)]
    answered = httpx.get(url, headers=auth)

    assert [r.status_code for r in throttled] == [429, 429]
    assert all(r.headers["retry-after"] == "soon" for r in throttled)
    assert answered.status_code == 200 and answered.json()["id"] == created.id


@pytest.mark.parametrize(("model", "status"), [("fake-400", 400), ("fake-500", 500)])
def test_failing_models_fill_the_error_file(oai: openai.OpenAI, model: str, status: int) -> None:
    batch, _ = poll(oai, start(oai, [chat_line("a", "x", model), chat_line("b", "y", model)]).id)
    assert batch.status == "completed"
    assert batch.output_file_id is None
    errors = by_id(download(oai, batch.error_file_id))
    assert sorted(errors) == ["a", "b"]
    assert {line["response"]["status_code"] for line in errors.values()} == {status}
    assert all(line["response"]["body"]["error"]["type"] for line in errors.values())


def test_then_ok_models_and_streaming_lines(oai: openai.OpenAI) -> None:
    lines = [
        chat_line("ok", "x", "fake-500-then-ok"),
        chat_line("streamed", "y", "fake-500-then-ok", stream=True),
    ]
    batch, _ = poll(oai, start(oai, lines).id)
    assert [line["custom_id"] for line in download(oai, batch.output_file_id)] == ["ok"]
    [error] = download(oai, batch.error_file_id)
    assert (error["custom_id"], error["response"]["status_code"]) == ("streamed", 400)


def test_embeddings_batch(oai: openai.OpenAI) -> None:
    lines = [
        {
            "custom_id": f"e{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "fake-ok", "input": f"text {i}"},
        }
        for i in range(3)
    ]
    batch, _ = poll(oai, start(oai, lines, endpoint="/v1/embeddings").id)
    output = by_id(download(oai, batch.output_file_id))
    assert sorted(output) == ["e0", "e1", "e2"]
    body = output["e0"]["response"]["body"]
    assert body["object"] == "list" and len(body["data"][0]["embedding"]) == 8


@pytest.mark.parametrize(
    ("content", "code", "line"),
    [
        (jsonl([chat_line("a", "x")]) + b"{not json}\n", "invalid_json_line", 2),
        (
            jsonl([chat_line("a", "x"), chat_line("b", "y", url="/v1/embeddings")]),
            "url_mismatch",
            2,
        ),
        (
            jsonl([chat_line("a", "x"), chat_line("b", "y", model="fake-other")]),
            "model_mismatch",
            2,
        ),
        (jsonl([chat_line("a", "x"), chat_line("a", "y")]), "duplicate_custom_id", 2),
        (jsonl([chat_line("a", "x") | {"method": "GET"}]), "invalid_request", 1),
        (b"", "empty_file", None),
    ],
)
def test_malformed_input_fails_the_batch(
    oai: openai.OpenAI, content: bytes, code: str, line: int | None
) -> None:
    batch, seen = poll(oai, start(oai, content).id)
    assert seen == ["failed"]
    assert batch.failed_at is not None and batch.in_progress_at is None
    assert batch.errors is not None and batch.errors.data
    assert (batch.errors.data[0].code, batch.errors.data[0].line) == (code, line)
    assert batch.errors.data[0].message
    assert batch.output_file_id is None and batch.error_file_id is None


def test_max_lines(oai: openai.OpenAI, oai_fake: FakeOpenAIBatchAPI) -> None:
    oai_fake.max_lines = 2
    batch, _ = poll(oai, start(oai, [chat_line(str(i), "x") for i in range(3)]).id)
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data is not None
    assert [e.code for e in batch.errors.data] == ["too_many_tasks"]


def test_fail_batches_fails_the_next_batch_only(
    oai: openai.OpenAI, oai_fake: FakeOpenAIBatchAPI
) -> None:
    oai_fake.fail_batches = 1
    failed, _ = poll(oai, start(oai, [chat_line("a", "x")]).id)
    assert failed.status == "failed"
    assert failed.errors is not None and failed.errors.data is not None
    [error] = failed.errors.data
    assert (error.code, error.line, error.param) == ("token_limit_exceeded", None, None)
    assert "Enqueued token limit reached" in (error.message or "")
    assert oai_fake.fail_batches == 0
    assert poll(oai, start(oai, [chat_line("a", "x")]).id)[0].status == "completed"


def test_refuse_batches_answers_400_at_create(
    oai: openai.OpenAI, oai_fake: FakeOpenAIBatchAPI
) -> None:
    file_id = upload(oai, [chat_line("a", "x")])
    oai_fake.refuse_batches = 1
    with pytest.raises(openai.BadRequestError) as info:
        oai.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert info.value.code == "token_limit_exceeded"
    assert oai_fake.batches == {}
    created = oai.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert created.status == "validating"


def test_create_rejects_bad_parameters(oai: openai.OpenAI) -> None:
    file_id = upload(oai, [chat_line("a", "x")])
    with pytest.raises(openai.BadRequestError) as info:
        oai.batches.create(
            input_file_id="file-missing", endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert info.value.param == "input_file_id"
    with pytest.raises(openai.BadRequestError) as info:
        oai.batches.create(
            input_file_id=file_id,
            endpoint="/v1/chat/completions",
            completion_window=UNCHECKED("48h"),
        )
    assert info.value.param == "completion_window"
    with pytest.raises(openai.BadRequestError) as info:
        oai.batches.create(
            input_file_id=file_id, endpoint=UNCHECKED("/v2/nothing"), completion_window="24h"
        )
    assert info.value.param == "endpoint"


def test_cancel_keeps_the_lines_already_run(
    oai: openai.OpenAI, oai_fake: FakeOpenAIBatchAPI
) -> None:
    lines = [chat_line(f"c{i}", f"text {i}") for i in range(5)]
    created = start(oai, lines)
    assert oai.batches.retrieve(created.id).status == "in_progress"
    cancelling = oai.batches.cancel(created.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    assert oai.batches.cancel(created.id).status == "cancelling"  # idempotent
    batch, seen = poll(oai, created.id)
    assert seen == ["cancelled"]
    assert batch.cancelled_at is not None
    output = by_id(download(oai, batch.output_file_id))
    assert sorted(output) == ["c0", "c1", "c2"]  # the first half ran; the rest is in no file
    assert batch.error_file_id is None
    assert batch.request_counts is not None
    assert (
        batch.request_counts.total,
        batch.request_counts.completed,
        batch.request_counts.failed,
    ) == (5, 3, 0)
    with pytest.raises(openai.BadRequestError):
        oai.batches.cancel(created.id)


def test_cancel_while_validating_runs_nothing(oai: openai.OpenAI) -> None:
    created = start(oai, [chat_line("a", "x")])
    assert oai.batches.cancel(created.id).status == "cancelling"
    batch, _ = poll(oai, created.id)
    assert batch.status == "cancelled"
    assert (batch.output_file_id, batch.error_file_id) == (None, None)


def test_expired_batch_writes_unfinished_lines_as_batch_expired(
    oai: openai.OpenAI, oai_fake: FakeOpenAIBatchAPI
) -> None:
    oai_fake.expire_batches = True
    lines = [chat_line(f"x{i}", f"text {i}") for i in range(4)]
    batch, seen = poll(oai, start(oai, lines).id)
    assert seen == ["in_progress", "expired"]
    assert batch.expired_at is not None
    output, errors = (
        by_id(download(oai, batch.output_file_id)),
        by_id(download(oai, batch.error_file_id)),
    )
    assert sorted(output) == ["x0", "x1"]
    assert sorted(errors) == ["x2", "x3"]
    for line in errors.values():
        assert line["response"] is None
        assert line["error"]["code"] == "batch_expired" and line["error"]["message"]
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 2)


def test_polls_per_step_and_advance_all(oai: openai.OpenAI, oai_fake: FakeOpenAIBatchAPI) -> None:
    oai_fake.polls_per_step = 2
    created = start(oai, [chat_line("a", "x")])
    statuses = [oai.batches.retrieve(created.id).status for _ in range(4)]
    assert statuses == ["validating", "in_progress", "in_progress", "finalizing"]
    oai_fake.polls_per_step = 0
    assert [oai.batches.retrieve(created.id).status for _ in range(3)] == ["finalizing"] * 3
    assert oai_fake.advance_all() == 1
    assert oai.batches.retrieve(created.id).status == "completed"
    assert oai_fake.advance_all() == 0
    other = start(oai, [chat_line("a", "x")])
    oai_fake.finish_all()
    assert oai_fake.batches[other.id]["status"] == "completed"


def test_list_batches_pages_newest_first(oai: openai.OpenAI) -> None:
    file_id = upload(oai, [chat_line("a", "x")])
    ids = [
        oai.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id
        for _ in range(3)
    ]
    page = oai.batches.list(limit=2)
    assert [b.id for b in page.data] == [ids[2], ids[1]]
    assert page.has_more is True
    assert [b.id for b in oai.batches.list(limit=2)] == ids[::-1]  # auto-pagination


def test_unknown_batch_is_404(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve("batch_" + "0" * 32)


def test_wrong_or_missing_key_is_401(
    openai_served: tuple[FakeOpenAIBatchAPI, ServerHandle], oai_fake: FakeOpenAIBatchAPI
) -> None:
    handle = openai_served[1]
    with openai.OpenAI(base_url=handle.url, api_key="sk-wrong-key", max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError) as info:
            sdk.batches.list()
    assert info.value.code == "invalid_api_key"
    response = httpx.get(f"{handle.url}/batches")
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_synchronous_inference_for_executed_mode(
    oai: openai.OpenAI, oai_fake: FakeOpenAIBatchAPI
) -> None:
    completion = oai.chat.completions.create(
        model="fake-ok", messages=[{"role": "user", "content": "hi there"}]
    )
    assert completion.choices[0].message.content == "echo: hi there"
    embedding = oai.embeddings.create(model="fake-ok", input=["a", "b"])
    assert len(embedding.data) == 2 and len(embedding.data[0].embedding) == 8
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="fake-400", messages=[{"role": "user", "content": "x"}])
    assert oai_fake.count(path="/v1/chat/completions", method="POST") == 2
    assert oai_fake.upstream.count(path="/v1/embeddings") == 1


def test_concurrent_batches(oai: openai.OpenAI, oai_fake: FakeOpenAIBatchAPI) -> None:
    def run(n: int) -> tuple[str, list[dict[str, Any]]]:
        batch, _ = poll(oai, start(oai, [chat_line(f"{n}-{i}", f"w{n} {i}") for i in range(3)]).id)
        assert batch.status == "completed"
        return batch.id, download(oai, batch.output_file_id)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(16)))
    assert len({batch_id for batch_id, _ in results}) == 16
    for n, (_, output) in enumerate(results):
        assert sorted(by_id(output)) == [f"{n}-{i}" for i in range(3)]
    assert oai_fake.count(path="/v1/batches", method="POST") == 16


# -- Azure ---------------------------------------------------------------------------------------


def test_azure_batch_flow(az: openai.AzureOpenAI, az_fake: FakeAzureBatchAPI) -> None:
    lines = [
        chat_line(f"a{i}", f"hello {i}", "gpt-4o-batch", url="/chat/completions") for i in range(3)
    ]
    uploaded = az.files.create(file=("input.jsonl", jsonl(lines)), purpose="batch")  # a 201 answer
    assert re.fullmatch(r"file-[0-9a-f]{32}", uploaded.id)
    assert uploaded.to_dict()["status"] == "pending"  # Azure's status, outside the SDK's Literal
    assert [az.files.retrieve(uploaded.id).status for _ in range(2)] == ["pending", "processed"]

    created = az.batches.create(
        input_file_id=uploaded.id, endpoint=UNCHECKED("/chat/completions"), completion_window="24h"
    )
    assert re.fullmatch(r"batch_" + GUID.pattern[1:-1], created.id)
    assert created.status == "validating"
    assert (created.output_file_id, created.error_file_id) == ("", "")
    assert created.expires_at is None

    batch, seen = poll(az, created.id)
    assert seen == ["in_progress", "finalizing", "completed"]
    assert batch.model == "gpt-4o-batch"
    output = by_id(download(az, batch.output_file_id))
    assert sorted(output) == ["a0", "a1", "a2"]
    for custom_id, line in output.items():
        response = line["response"]
        assert GUID.match(response["request_id"])
        body = response["body"]
        assert body["choices"][0]["message"]["content"] == f"echo: hello {custom_id[1:]}"
        assert (
            body["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"] is False
        )
        assert "content_filter_results" in body["choices"][0]
    assert batch.error_file_id  # a successful Azure batch still has an error file...
    assert az.files.content(batch.error_file_id).content == b""  # ...of zero bytes
    assert az.files.retrieve(batch.error_file_id).bytes == 0

    records = [r for r in az_fake.requests if r.path.startswith("/openai/")]
    assert records and all(r.query["api-version"] == API_VERSION for r in records)
    assert all(r.headers["api-key"] == AZURE_KEY for r in records)
    assert az_fake.count(path="/openai/files", method="POST") == 1


def test_azure_upload_answers_201_with_location(
    azure_served: tuple[FakeAzureBatchAPI, ServerHandle], az_fake: FakeAzureBatchAPI
) -> None:
    handle = azure_served[1]
    response = httpx.post(
        f"{handle.base_url}/openai/files",
        params={"api-version": API_VERSION},
        headers={"api-key": AZURE_KEY},
        files={"file": ("input.jsonl", b"{}\n")},
        data={"purpose": "batch"},
    )
    assert response.status_code == 201
    file_id = response.json()["id"]
    assert response.headers["location"].startswith(f"{handle.base_url}/openai/files/{file_id}")
    assert GUID.match(response.headers["apim-request-id"])


def test_azure_requires_api_version(
    azure_served: tuple[FakeAzureBatchAPI, ServerHandle], az_fake: FakeAzureBatchAPI
) -> None:
    handle = azure_served[1]
    response = httpx.get(f"{handle.base_url}/openai/batches", headers={"api-key": AZURE_KEY})
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"code", "message"}
    assert response.json()["error"]["code"] == "MissingApiVersionParameter"
    # Bearer auth works too, and the v1 flavour needs no api-version.
    response = httpx.get(
        f"{handle.base_url}/openai/v1/batches", headers={"Authorization": f"Bearer {AZURE_KEY}"}
    )
    assert response.status_code == 200
    assert response.json()["object"] == "list"


def test_azure_unknown_deployment_fails_the_batch(az: openai.AzureOpenAI) -> None:
    lines = [chat_line("a", "x", "gpt-unknown", url="/chat/completions")]
    batch, _ = poll(az, start(az, lines, endpoint="/chat/completions").id)
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data
    assert batch.errors.data[0].code == "model_not_found"
    assert (batch.output_file_id, batch.error_file_id) == ("", "")


def test_azure_line_errors_and_cancel(az: openai.AzureOpenAI) -> None:
    lines = [chat_line(f"e{i}", "x", "fake-400", url="/v1/chat/completions") for i in range(4)]
    batch, _ = poll(az, start(az, lines, endpoint="/chat/completions").id)
    assert batch.status == "completed"
    assert download(az, batch.output_file_id) == []
    errors = by_id(download(az, batch.error_file_id))
    assert sorted(errors) == ["e0", "e1", "e2", "e3"]
    assert {e["response"]["status_code"] for e in errors.values()} == {400}

    created = start(
        az, [chat_line(f"c{i}", "x", "fake-ok") for i in range(2)], endpoint="/v1/chat/completions"
    )
    az.batches.retrieve(created.id)
    assert az.batches.cancel(created.id).status == "cancelling"
    cancelled, _ = poll(az, created.id)
    assert cancelled.status == "cancelled"
    assert [line["custom_id"] for line in download(az, cancelled.output_file_id)] == ["c0"]


def test_azure_refuse_and_auth(
    az: openai.AzureOpenAI,
    az_fake: FakeAzureBatchAPI,
    azure_served: tuple[FakeAzureBatchAPI, ServerHandle],
) -> None:
    file_id = upload(az, [chat_line("a", "x", "fake-ok", url="/chat/completions")])
    az_fake.refuse_batches = 1
    with pytest.raises(openai.BadRequestError) as info:
        az.batches.create(
            input_file_id=file_id, endpoint=UNCHECKED("/chat/completions"), completion_window="24h"
        )
    assert info.value.code == "token_limit_exceeded"
    with openai.AzureOpenAI(
        azure_endpoint=azure_served[1].base_url,
        api_key="wrong",
        api_version=API_VERSION,
        max_retries=0,
    ) as wrong:
        with pytest.raises(openai.AuthenticationError) as auth:
            wrong.batches.list()
    assert auth.value.code == "401"


def test_azure_deployment_inference(az: openai.AzureOpenAI, az_fake: FakeAzureBatchAPI) -> None:
    completion = az.chat.completions.create(
        model="fake-ok", messages=[{"role": "user", "content": "hey"}]
    )
    assert completion.choices[0].message.content == "echo: hey"
    assert (completion.model_extra or {})["prompt_filter_results"][0]["prompt_index"] == 0
    assert az_fake.count(path="/openai/deployments/fake-ok/chat/completions", method="POST") == 1
    with pytest.raises(openai.NotFoundError) as info:
        az.chat.completions.create(
            model="not-deployed", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.code == "DeploymentNotFound"
    with pytest.raises(openai.BadRequestError):
        az.chat.completions.create(model="fake-400", messages=[{"role": "user", "content": "x"}])
    embedding = az.embeddings.create(model="fake-ok", input="text")
    assert len(embedding.data[0].embedding) == 8


# -- Anthropic: messages -------------------------------------------------------------------------


def test_messages_create(ant: anthropic.Anthropic, ant_fake: FakeAnthropicAPI) -> None:
    raw = ant.messages.with_raw_response.create(
        model="fake-ok",
        max_tokens=100,
        system="be brief",
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
        ],
    )
    assert re.fullmatch(r"req_01[0-9A-Za-z]{22}", raw.headers["request-id"])
    message = raw.parse()
    assert re.fullmatch(r"msg_01[0-9A-Za-z]{22}", message.id)
    assert (message.type, message.role, message.model) == ("message", "assistant", "fake-ok")
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "echo: hello there"  # type: ignore[union-attr]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert message.usage.input_tokens == 6  # words of system and messages
    assert message.usage.output_tokens == 3
    assert (
        message.usage.cache_creation_input_tokens == 0
        and message.usage.cache_read_input_tokens == 0
    )
    [record] = ant_fake.requests
    assert sent_key(record.headers) == ANTHROPIC_KEY
    assert record.headers["anthropic-version"]
    assert record.json["system"] == "be brief"


def test_messages_truncation_and_stop_sequences(ant: anthropic.Anthropic) -> None:
    cut = ant.messages.create(
        model="fake-ok", max_tokens=2, messages=[{"role": "user", "content": "one two three"}]
    )
    assert cut.stop_reason == "max_tokens"
    assert cut.content[0].text == "echo: one"  # type: ignore[union-attr]
    stopped = ant.messages.create(
        model="fake-ok",
        max_tokens=50,
        stop_sequences=["three"],
        messages=[{"role": "user", "content": "one two three"}],
    )
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "three")
    assert stopped.content[0].text == "echo: one two "  # type: ignore[union-attr]


def test_messages_stream(
    ant: anthropic.Anthropic, anthropic_served: tuple[FakeAnthropicAPI, ServerHandle]
) -> None:
    with ant.messages.stream(
        model="fake-ok",
        max_tokens=100,
        messages=[{"role": "user", "content": "stream these words"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: stream these words"
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4
    raw = httpx.post(
        f"{anthropic_served[1].url}/messages",
        headers={"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
        json={
            "model": "fake-ok",
            "max_tokens": 5,
            "stream": True,
            "messages": [{"role": "user", "content": "a b"}],
        },
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = re.findall(r"^event: (\w+)$", raw.text, flags=re.MULTILINE)
    assert events == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_messages_errors_are_typed(ant: anthropic.Anthropic) -> None:
    user: Any = [{"role": "user", "content": "x"}]
    with pytest.raises(anthropic.BadRequestError) as bad:
        ant.messages.create(model="fake-400", max_tokens=10, messages=user)
    assert bad.value.type == "invalid_request_error"
    assert bad.value.body["request_id"] == bad.value.request_id  # type: ignore[index]
    with pytest.raises(anthropic.InternalServerError):
        ant.messages.create(model="fake-500", max_tokens=10, messages=user)
    with pytest.raises(anthropic.RateLimitError) as limited:
        ant.messages.create(model="fake-429-then-ok", max_tokens=10, messages=user)
    assert limited.value.response.headers["retry-after"] == "0"
    assert (
        ant.messages.create(model="fake-429-then-ok", max_tokens=10, messages=user).stop_reason
        == "end_turn"
    )
    for model in ("fake-529", "fake-overloaded-then-ok"):
        with pytest.raises(anthropic.OverloadedError) as overloaded:
            ant.messages.create(model=model, max_tokens=10, messages=user)
        assert overloaded.value.type == "overloaded_error"
        assert ant.messages.create(model=model, max_tokens=10, messages=user).content
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        ant.messages.create(model="fake-ok", max_tokens=0, messages=user)


def test_anthropic_auth_and_version(
    anthropic_served: tuple[FakeAnthropicAPI, ServerHandle], ant_fake: FakeAnthropicAPI
) -> None:
    handle = anthropic_served[1]
    with anthropic.Anthropic(base_url=handle.base_url, api_key="wrong", max_retries=0) as wrong:
        with pytest.raises(anthropic.AuthenticationError) as info:
            wrong.messages.batches.list()
    assert info.value.type == "authentication_error"
    response = httpx.get(f"{handle.url}/messages/batches", headers={"x-api-key": ANTHROPIC_KEY})
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "anthropic-version" in body["error"]["message"]
    assert body["request_id"] == response.headers["request-id"]
    # The documented header auth, and the beta namespace's ?beta=true, are accepted.
    headers = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
    response = httpx.get(f"{handle.url}/messages/batches?beta=true", headers=headers)
    assert response.status_code == 200
    assert set(response.json()) == {"data", "has_more", "first_id", "last_id"}
    missing = httpx.get(
        f"{handle.url}/messages/batches", headers={"anthropic-version": "2023-06-01"}
    )
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"


# -- Anthropic: message batches ------------------------------------------------------------------


def test_message_batch_flow(
    ant: anthropic.Anthropic,
    ant_fake: FakeAnthropicAPI,
    anthropic_served: tuple[FakeAnthropicAPI, ServerHandle],
) -> None:
    requests = [
        anthropic_request("ok-1", "alpha"),
        anthropic_request("ok-2", "beta", "fake-529"),
        anthropic_request("bad-model", "gamma", "fake-400"),
        {
            "custom_id": "no-max",
            "params": {"model": "fake-ok", "messages": [{"role": "user", "content": "x"}]},
        },
    ]
    created = ant.messages.batches.create(requests=requests)
    assert re.fullmatch(r"msgbatch_01[0-9A-Za-z]{22}", created.id)
    assert created.type == "message_batch"
    assert created.processing_status == "in_progress"
    assert created.request_counts.processing == 4 and created.request_counts.succeeded == 0
    assert created.results_url is None and created.ended_at is None
    assert (created.expires_at - created.created_at).total_seconds() == 86400

    ended = ant.messages.batches.retrieve(created.id)
    assert ended.processing_status == "ended" and ended.ended_at is not None
    counts = ended.request_counts
    assert (
        counts.processing,
        counts.succeeded,
        counts.errored,
        counts.canceled,
        counts.expired,
    ) == (0, 2, 2, 0, 0)
    assert (
        ended.results_url
        == f"{anthropic_served[1].base_url}/v1/messages/batches/{created.id}/results"
    )

    results = {item.custom_id: item.result for item in ant.messages.batches.results(created.id)}
    assert sorted(results) == ["bad-model", "no-max", "ok-1", "ok-2"]
    ok = results["ok-1"]
    assert isinstance(ok, MessageBatchSucceededResult)
    assert ok.message.content[0].text == "echo: alpha"  # type: ignore[union-attr]
    assert ok.message.usage.service_tier == "batch"
    assert isinstance(results["ok-2"], MessageBatchSucceededResult)
    for custom_id in ("bad-model", "no-max"):
        errored = results[custom_id]
        assert isinstance(errored, MessageBatchErroredResult)
        assert errored.error.type == "error"
        assert errored.error.error.type == "invalid_request_error"
    raw = ant_fake.requests[-1]
    assert raw.path.endswith("/results") and sent_key(raw.headers) == ANTHROPIC_KEY


def test_message_batch_create_validation(
    ant: anthropic.Anthropic, ant_fake: FakeAnthropicAPI
) -> None:
    bad: list[Any] = [
        [],
        [anthropic_request("has space", "x")],
        [anthropic_request("x" * 65, "x")],
        [anthropic_request("dup", "x"), anthropic_request("dup", "y")],
    ]
    for requests in bad:
        with pytest.raises(anthropic.BadRequestError):
            ant.messages.batches.create(requests=requests)
    ant_fake.refuse_batches = 1
    with pytest.raises(anthropic.BadRequestError):
        ant.messages.batches.create(requests=[anthropic_request("a", "x")])
    assert ant_fake.batches == {}
    assert (
        ant.messages.batches.create(requests=[anthropic_request("a", "x")]).processing_status
        == "in_progress"
    )


def test_message_batch_cancel(ant: anthropic.Anthropic, ant_fake: FakeAnthropicAPI) -> None:
    ant_fake.polls_per_step = 0  # only cancel and advance_all move it
    created = ant.messages.batches.create(
        requests=[anthropic_request(f"r{i}", f"t{i}") for i in range(4)]
    )
    assert ant.messages.batches.retrieve(created.id).processing_status == "in_progress"
    with pytest.raises(anthropic.BadRequestError):
        ant.messages.batches.delete(created.id)
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        ant.messages.batches.results(created.id)
    canceling = ant.messages.batches.cancel(created.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    assert ant_fake.advance_all() == 1
    ended = ant.messages.batches.retrieve(created.id)
    assert ended.processing_status == "ended"
    assert (ended.request_counts.succeeded, ended.request_counts.canceled) == (2, 2)
    results = {item.custom_id: item.result for item in ant.messages.batches.results(created.id)}
    assert all(isinstance(results[f"r{i}"], MessageBatchSucceededResult) for i in (0, 1))
    assert all(isinstance(results[f"r{i}"], MessageBatchCanceledResult) for i in (2, 3))
    with pytest.raises(anthropic.BadRequestError):
        ant.messages.batches.cancel(created.id)
    deleted = ant.messages.batches.delete(created.id)
    assert (deleted.id, deleted.type) == (created.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        ant.messages.batches.retrieve(created.id)


def test_message_batch_expiry(ant: anthropic.Anthropic, ant_fake: FakeAnthropicAPI) -> None:
    ant_fake.expire_batches = True
    created = ant.messages.batches.create(
        requests=[anthropic_request(f"r{i}", "x") for i in range(3)]
    )
    ended = ant.messages.batches.retrieve(created.id)
    assert (ended.request_counts.succeeded, ended.request_counts.expired) == (2, 1)
    results = {item.custom_id: item.result for item in ant.messages.batches.results(created.id)}
    assert isinstance(results["r2"], MessageBatchExpiredResult)


def test_message_batch_list_and_beta(ant: anthropic.Anthropic, ant_fake: FakeAnthropicAPI) -> None:
    ids = [ant.messages.batches.create(requests=[anthropic_request("a", "x")]).id for _ in range(3)]
    page = ant.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == [ids[2], ids[1]]
    assert page.has_more is True and page.first_id == ids[2] and page.last_id == ids[1]
    assert [b.id for b in ant.messages.batches.list(limit=2)] == ids[::-1]
    newer = ant.messages.batches.list(before_id=ids[0], limit=1)
    assert [b.id for b in newer.data] == [ids[1]] and newer.has_more is True
    assert ant.beta.messages.batches.retrieve(ids[0]).id == ids[0]


def test_results_before_end_is_400(
    anthropic_served: tuple[FakeAnthropicAPI, ServerHandle],
    ant: anthropic.Anthropic,
    ant_fake: FakeAnthropicAPI,
) -> None:
    ant_fake.polls_per_step = 0
    created = ant.messages.batches.create(requests=[anthropic_request("a", "x")])
    headers = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
    response = httpx.get(
        f"{anthropic_served[1].url}/messages/batches/{created.id}/results", headers=headers
    )
    assert response.status_code == 400
    ant_fake.finish_all()
    response = httpx.get(
        f"{anthropic_served[1].url}/messages/batches/{created.id}/results", headers=headers
    )
    assert response.status_code == 200
    assert response.text.endswith("\n") and "\n\n" not in response.text
    assert json.loads(response.text)["result"]["type"] == "succeeded"
