"""Bad input of every kind: it is refused with a clear error, and nothing runs or is stored.

Content problems in a batch input file fail the batch (``status: failed`` with
``errors.data``); envelope problems are 4xx answers at create or upload time. No request
may ever answer 500.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import RunningGateway
from tests.helpers import blobs, chat_line, multipart, post_multipart, read_results, unique, upload

MISSING = object()  # a missing parameter: code null today, missing_required_parameter per spec


def assert_error(
    response: Any,
    status: int,
    *,
    param: str | None = None,
    code: Any = None,
    match: str,
) -> dict[str, Any]:
    """``response`` is an error in the OpenAI envelope, every key present."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if code is MISSING:
        assert error["code"] in (None, "missing_required_parameter")
    else:
        assert error["code"] == code
    assert re.search(match, error["message"]), error["message"]
    return error


@dataclass(frozen=True)
class Snapshot:
    """What a key can see, what is on disk and what the upstream received."""

    files: list[str]
    batches: list[str]
    blobs: list[str]
    upstream: int


def snapshot(gw: RunningGateway, client: openai.OpenAI) -> Snapshot:
    return Snapshot(
        files=[f.id for f in client.files.list()],
        batches=[b.id for b in client.batches.list()],
        blobs=blobs(gw),
        upstream=gw.fake.count(),
    )


def line(custom_id: str, **changes: Any) -> dict[str, Any]:
    result = chat_line(custom_id, prompt=unique())
    body = changes.pop("body", {})
    result.update(changes)
    result["body"].update(body)
    return result


def raw(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode() + b"\n"


# -- input files that fail validation -----------------------------------------------------

GOOD = raw(line("good"))

BAD_FILES = {
    "malformed-json": (
        GOOD + b'{"custom_id": "half", "method": "POST",\n',
        [(2, "invalid_json_line", None, "not parseable as valid JSON")],
    ),
    "duplicate-custom-id": (
        GOOD + raw(line("good")),
        [(2, "duplicate_custom_id", "custom_id", "'good'.*unique")],
    ),
    "wrong-url": (
        GOOD + raw(line("emb", url="/v1/embeddings")),
        [(2, "url_mismatch", "url", "/v1/embeddings.*/v1/chat/completions")],
    ),
    "unknown-model": (
        GOOD + raw(line("who", body={"model": "gpt-nonexistent"})),
        [(2, "model_not_found", "body.model", "gpt-nonexistent")],
    ),
    "stream-true": (
        GOOD + raw(line("streamy", body={"stream": True})),
        [(2, "invalid_request", "body.stream", "stream")],
    ),
    "wrong-method": (
        GOOD + raw(line("getter", method="GET")),
        [(2, "invalid_request", "method", "POST")],
    ),
    "not-utf8": (
        GOOD + b'{"custom_id": "latin1", "text": "caf\xe9"}\n',
        [(2, "invalid_json_line", None, "UTF-8")],
    ),
    "not-utf8-at-all": (
        b"\xff\xfe\x00\x01\x80\x81\n" + GOOD,
        [(1, "invalid_json_line", None, "UTF-8")],
    ),
    "not-an-object": (
        GOOD + b'["custom_id", "x"]\n',
        [(2, "invalid_request", None, "JSON object")],
    ),
    "missing-body": (
        GOOD + b'{"custom_id": "nobody", "method": "POST", "url": "/v1/chat/completions"}\n',
        [(2, "invalid_request", "body", "body")],
    ),
    "blank-line-in-the-middle": (
        GOOD + b"\n" + raw(line("after-blank")),
        [(2, "invalid_json_line", None, "Blank lines")],
    ),
    "empty": (b"", [(None, "empty_file", None, "no requests")]),
    "only-whitespace": (b"  \n\n\t \r\n\n", [(None, "empty_file", None, "no requests")]),
    "several-problems": (
        GOOD
        + b"{not json}\n"
        + raw(line("good"))
        + raw(line("u", url="/v1/completions"))
        + raw(line("m", body={"model": "nope"}))
        + raw(line("s", body={"stream": True}))
        + raw(line("g", method="PUT"))
        + b"\xc3\x28\n"
        + b"\n"
        + raw(line("last")),
        [
            (2, "invalid_json_line", None, "not parseable"),
            (3, "duplicate_custom_id", "custom_id", "good"),
            (4, "url_mismatch", "url", "/v1/completions"),
            (5, "model_not_found", "body.model", "nope"),
            (6, "invalid_request", "body.stream", "stream"),
            (7, "invalid_request", "method", "POST"),
            (8, "invalid_json_line", None, "UTF-8"),
            (9, "invalid_json_line", None, "Blank lines"),
        ],
    ),
}


@pytest.mark.parametrize(("data", "expected"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_bad_input_file_fails_the_batch_and_nothing_runs(gw: RunningGateway, data, expected):
    key = gw.create_key()
    client = gw.client(key)
    file_id = upload(client, data)
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "validating"
    gw.drain()

    batch = client.batches.retrieve(batch.id)
    assert batch.status == "failed"
    assert batch.failed_at is not None and batch.failed_at >= batch.created_at
    assert batch.in_progress_at is None
    assert batch.finalizing_at is None and batch.completed_at is None
    assert batch.output_file_id is None and batch.error_file_id is None
    assert batch.request_counts is not None
    counts = batch.request_counts
    assert (counts.total, counts.completed, counts.failed) == (0, 0, 0)
    assert batch.usage is None

    body = httpx.get(
        f"{gw.url}/batches/{batch.id}", headers={"authorization": f"Bearer {key}"}
    ).json()
    assert body["errors"]["object"] == "list"
    errors = body["errors"]["data"]
    assert [(e["line"], e["code"], e["param"]) for e in errors] == [
        (number, code, param) for number, code, param, _ in expected
    ]
    for error, (*_, match) in zip(errors, expected, strict=True):
        assert set(error) == {"code", "message", "param", "line"}
        assert re.search(match, error["message"]), error["message"]

    assert gw.fake.count() == 0
    assert [f.id for f in client.files.list()] == [file_id]
    assert blobs(gw) == [file_id]


def test_a_line_for_a_model_the_key_may_not_use_fails_the_batch(gw: RunningGateway):
    client = gw.client(gw.create_key(models=["fake-ok"]))
    file_id = upload(client, GOOD + raw(line("slow", body={"model": "fake-slow"})))
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data is not None
    assert [(e.line, e.code) for e in batch.errors.data] == [(2, "model_not_found")]
    assert gw.fake.count() == 0


def test_an_input_file_deleted_before_validation_fails_the_batch(gw: RunningGateway):
    client = gw.client()
    file_id = upload(client, GOOD)
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    client.files.delete(file_id)
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data is not None
    assert [e.code for e in batch.errors.data] == ["file_not_found"]
    assert gw.fake.count() == 0


def test_a_nul_character_in_a_custom_id_does_not_wedge_the_worker(
    gw: RunningGateway, request, database_url
):
    client = gw.client()
    file_id = upload(client, GOOD + raw(line("nul\u0000id")))
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    gw.run(asyncio.wait_for(gw.gateway.worker.drain(), 10))
    batch = client.batches.retrieve(batch.id)
    assert batch.status in ("completed", "failed")
    if batch.status == "failed":  # refusing the line is fine, with its line number
        assert batch.errors is not None and batch.errors.data is not None
        assert [(e.line, e.param) for e in batch.errors.data] == [(2, "custom_id")]
    else:
        results = read_results(client, batch.output_file_id)
        assert sorted(r.custom_id for r in results) == ["good", "nul\u0000id"]


# -- create-time errors --------------------------------------------------------------------


def create_batch(gw: RunningGateway, key: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{gw.url}/batches", headers={"authorization": f"Bearer {key}"}, **kwargs)


CREATE_ERRORS = {
    "unknown-file": (
        {"input_file_id": "file-doesnotexist"},
        "input_file_id",
        None,
        "Cannot find file file-doesnotexist",
    ),
    "moderations": ({"endpoint": "/v1/moderations"}, "endpoint", None, "not supported"),
    "images": ({"endpoint": "/v1/images/generations"}, "endpoint", None, "not supported"),
    "garbage-endpoint": ({"endpoint": "chat please"}, "endpoint", None, "not supported"),
    "endpoint-not-a-string": ({"endpoint": 42}, "endpoint", None, "endpoint"),
    "window-48h": ({"completion_window": "48h"}, "completion_window", None, "24h"),
    "metadata-17-pairs": (
        {"metadata": {f"k{i}": "v" for i in range(17)}},
        "metadata",
        None,
        "16",
    ),
    "metadata-long-key": ({"metadata": {"k" * 65: "v"}}, "metadata", None, "64"),
    "metadata-long-value": ({"metadata": {"k": "v" * 513}}, "metadata", None, "512"),
    "metadata-not-strings": ({"metadata": {"k": 1}}, "metadata", None, "string"),
    "output-expiry-too-short": (
        {"output_expires_after": {"anchor": "created_at", "seconds": 60}},
        "output_expires_after",
        None,
        "3600",
    ),
    "missing-input-file-id": ({"input_file_id": None}, "input_file_id", MISSING, "input_file_id"),
    "missing-endpoint": ({"endpoint": None}, "endpoint", MISSING, "endpoint"),
    "missing-window": ({"completion_window": None}, "completion_window", MISSING, "window"),
    "unknown-field": ({"priority": "high"}, "priority", None, "Unrecognized.*priority"),
}


@pytest.mark.parametrize(
    ("changes", "param", "code", "match"), CREATE_ERRORS.values(), ids=CREATE_ERRORS.keys()
)
def test_create_refuses_bad_parameters(gw: RunningGateway, changes, param, code, match):
    key = gw.create_key()
    client = gw.client(key)
    body = {
        "input_file_id": upload(client, GOOD),
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    body.update(changes)
    body = {k: v for k, v in body.items() if v is not None}
    before = snapshot(gw, client)
    response = create_batch(gw, key, json=body)
    assert_error(response, 400, param=param, code=code, match=match)
    assert snapshot(gw, client) == before
    assert before.batches == []


def test_create_refuses_a_file_that_is_not_for_batches(gw: RunningGateway):
    client = gw.client()
    file = client.files.create(file=("a.jsonl", io.BytesIO(GOOD)), purpose="assistants")
    with pytest.raises(openai.BadRequestError) as info:
        client.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert_error(info.value.response, 400, param="input_file_id", match="purpose 'batch'")
    assert client.batches.list().data == []
    assert gw.fake.count() == 0


def test_create_refuses_batch_output_as_input(gw: RunningGateway):
    client = gw.client()
    batch = client.batches.create(
        input_file_id=upload(client, GOOD),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    gw.drain()
    output = client.batches.retrieve(batch.id).output_file_id
    assert output is not None
    with pytest.raises(openai.BadRequestError) as info:
        client.batches.create(
            input_file_id=output, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert_error(info.value.response, 400, param="input_file_id", match="batch_output")
    assert len(client.batches.list().data) == 1


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"input_file_id=file-x&endpoint=/v1/chat/completions", "application/json"),
        (b'{"input_file_id": "file-x",', "application/json"),
        (b"", "application/json"),
        (b"\xff\xfe{}", "application/json"),
        (b"input_file_id=file-x", "application/x-www-form-urlencoded"),
    ],
    ids=["form-as-json", "truncated", "empty", "binary", "form"],
)
def test_create_refuses_a_body_that_is_not_json(gw: RunningGateway, content, content_type):
    key = gw.create_key()
    client = gw.client(key)
    response = httpx.post(
        f"{gw.url}/batches",
        content=content,
        headers={"authorization": f"Bearer {key}", "content-type": content_type},
    )
    assert_error(response, 400, match="not valid JSON")
    assert client.batches.list().data == []


@pytest.mark.parametrize("body", [[], "batch", 42, None])
def test_create_refuses_a_json_body_that_is_not_an_object(gw: RunningGateway, body):
    key = gw.create_key()
    response = create_batch(gw, key, content=json.dumps(body).encode())
    error = assert_error(response, 400, match="object")
    assert "None" not in error["message"]


@pytest.mark.parametrize("missing", ["input_file_id", "endpoint", "purpose"])
def test_a_missing_parameter_has_code_missing_required_parameter(gw: RunningGateway, missing):
    key = gw.create_key()
    if missing == "purpose":
        response = post_multipart(gw, key, multipart(("file", b"a.jsonl", GOOD)))
    else:
        body = {"input_file_id": "file-x", "endpoint": "/v1/chat/completions"}
        body["completion_window"] = "24h"
        del body[missing]
        response = create_batch(gw, key, json=body)
    assert_error(response, 400, param=missing, code="missing_required_parameter", match=missing)


# -- upload-time errors --------------------------------------------------------------------


@pytest.mark.parametrize("purpose", ["fine-tuning", "BATCH", "batch_output", "anything"])
def test_upload_refuses_an_unknown_purpose(gw: RunningGateway, purpose):
    key = gw.create_key()
    response = post_multipart(
        gw, key, multipart(("purpose", None, purpose.encode()), ("file", b"a.jsonl", GOOD))
    )
    assert_error(response, 400, param="purpose", match=f"'{purpose}' is not a valid purpose")
    assert gw.client(key).files.list().data == []
    assert blobs(gw) == []


def test_upload_through_the_sdk_refuses_an_unknown_purpose(gw: RunningGateway):
    client = gw.client()
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=("a.jsonl", io.BytesIO(GOOD)), purpose="homework")  # type: ignore[arg-type]
    assert_error(info.value.response, 400, param="purpose", match="homework")
    assert client.files.list().data == []
    assert blobs(gw) == []


@pytest.mark.parametrize("filename", ["batch.txt", "batch.json", "batch", "batch.jsonl.gz"])
def test_a_batch_file_must_be_jsonl(gw: RunningGateway, filename):
    client = gw.client()
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=(filename, io.BytesIO(GOOD)), purpose="batch")
    assert_error(info.value.response, 400, param="file", match=r"Must be \.jsonl")
    assert client.files.list().data == []
    assert blobs(gw) == []


@pytest.mark.parametrize(
    ("body", "param", "match"),
    [
        (multipart(("purpose", None, b"batch")), "file", "'file'"),
        (multipart(("file", b"a.jsonl", GOOD)), "purpose", "'purpose'"),
        (multipart(("purpose", None, b"batch"), ("data", None, GOOD)), "file", "'file'"),
        (
            multipart(("purpose", None, b"batch"), ("document", b"a.jsonl", GOOD)),
            "file",
            "field 'file'",
        ),
        (
            multipart(
                ("purpose", None, b"batch"), ("file", b"a.jsonl", GOOD), ("file", b"b.jsonl", GOOD)
            ),
            "file",
            "exactly one file",
        ),
        (b"this is not multipart at all", "file", "malformed"),
        (b"", "file", "'file'"),
    ],
    ids=["no-file", "no-purpose", "file-as-text", "wrong-field", "two-files", "garbage", "empty"],
)
def test_upload_refuses_an_incomplete_form(gw: RunningGateway, body, param, match):
    key = gw.create_key()
    response = post_multipart(gw, key, body)
    assert_error(response, 400, param=param, code=MISSING, match=match)
    assert gw.client(key).files.list().data == []
    assert blobs(gw) == []


@pytest.mark.parametrize(
    ("kwargs", "content_type"),
    [
        ({"json": {"purpose": "batch", "file": "{}"}}, None),
        ({"data": {"purpose": "batch"}}, None),
        ({"content": GOOD}, "application/jsonl"),
        ({"content": multipart(("purpose", None, b"batch"))}, "multipart/form-data"),
    ],
    ids=["json", "urlencoded", "raw-bytes", "no-boundary"],
)
def test_upload_must_be_multipart(gw: RunningGateway, kwargs, content_type):
    key = gw.create_key()
    headers = {"authorization": f"Bearer {key}"}
    if content_type:
        headers["content-type"] = content_type
    response = httpx.post(f"{gw.url}/files", headers=headers, **kwargs)
    assert_error(response, 400, param="file", match="multipart/form-data")
    assert gw.client(key).files.list().data == []
    assert blobs(gw) == []


LIMITS = {"limits": {"max_batch_file_bytes": 1000, "max_file_bytes": 2000}}


@pytest.mark.parametrize(
    ("parts", "size"),
    [
        (lambda data: [("purpose", None, b"batch"), ("file", b"big.jsonl", data)], 1001),
        (lambda data: [("file", b"big.jsonl", data), ("purpose", None, b"batch")], 1500),
        (lambda data: [("purpose", None, b"user_data"), ("file", b"big.bin", data)], 2001),
        (lambda data: [("file", b"big.bin", data), ("purpose", None, b"user_data")], 2500),
        (lambda data: [("purpose", None, b"batch"), ("file", b"big.jsonl", data)], 50_000),
    ],
    ids=["batch", "batch-purpose-last", "other", "other-purpose-last", "far-over"],
)
def test_a_file_over_the_limit_is_413_and_leaves_nothing(make_gateway, parts, size):
    gw = make_gateway(**LIMITS)
    key = gw.create_key()
    response = post_multipart(gw, key, multipart(*parts(b"x" * size)))
    assert_error(response, 413, param="file", match="larger|at most")
    assert gw.client(key).files.list().data == []
    assert blobs(gw) == []


def test_a_file_at_the_limit_is_accepted(make_gateway):
    gw = make_gateway(**LIMITS)
    client = gw.client()
    assert (
        client.files.create(file=("edge.jsonl", io.BytesIO(b"x" * 1000)), purpose="batch").bytes
        == 1000
    )
    assert (
        client.files.create(file=("edge.bin", io.BytesIO(b"x" * 2000)), purpose="user_data").bytes
        == 2000
    )


def test_the_413_message_states_the_real_limit(make_gateway):
    gw = make_gateway(**LIMITS)
    key = gw.create_key()
    body = multipart(("purpose", None, b"batch"), ("file", b"big.jsonl", b"x" * 1500))
    error = assert_error(post_multipart(gw, key, body), 413, param="file", match="")
    assert not re.search(r"\b0 MB", error["message"]), error["message"]
    assert re.search(r"\b1000 bytes|\b1 ?KB|0\.00095", error["message"]), error["message"]


@pytest.mark.parametrize("cut", [10, 40], ids=["no-closing-boundary", "cut-inside-the-file"])
def test_a_truncated_multipart_body_is_refused(gw: RunningGateway, cut):
    key = gw.create_key()
    body = multipart(("purpose", None, b"batch"), ("file", b"cut.jsonl", GOOD * 3))
    response = post_multipart(gw, key, body[:-cut])
    assert_error(response, 400, param="file", match="multipart")
    assert gw.client(key).files.list().data == []
    assert blobs(gw) == []


def test_a_nul_byte_in_the_filename_is_handled(gw: RunningGateway, request, database_url):
    key = gw.create_key()
    client = gw.client(key)
    response = post_multipart(
        gw, key, multipart(("purpose", None, b"batch"), ("file", b"a\x00b.jsonl", GOOD))
    )
    # whatever the answer, no blob may outlive its file
    assert blobs(gw) == sorted(f.id for f in client.files.list())
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert_error(response, 400, param="file", match="filename")
        assert blobs(gw) == []
    else:
        assert blobs(gw) == [response.json()["id"]]


# -- unknown objects, routes and methods ---------------------------------------------------


def test_unknown_ids_are_404(gw: RunningGateway):
    client = gw.client()
    calls = [
        (lambda: client.batches.retrieve("batch_nope"), "batch_id", "batch_nope"),
        (lambda: client.batches.cancel("batch_nope"), "batch_id", "batch_nope"),
        (lambda: client.files.retrieve("file-nope"), "file_id", "file-nope"),
        (lambda: client.files.content("file-nope"), "file_id", "file-nope"),
        (lambda: client.files.delete("file-nope"), "file_id", "file-nope"),
    ]
    for call, param, name in calls:
        with pytest.raises(openai.NotFoundError) as info:
            call()
        assert_error(info.value.response, 404, param=param, match=name)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/nope",
        "/v1/files/file-x/content/more",
        "/v1/batch",
        "/nope",
        "/v2/files",
        "/admin/nope",
    ],
)
def test_an_unknown_route_is_404_in_the_openai_envelope(gw: RunningGateway, path):
    key = gw.create_key()
    response = httpx.get(gw.base_url + path, headers={"authorization": f"Bearer {key}"})
    assert_error(response, 404, match=f"Unknown request URL: GET {re.escape(path)}")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/files"),
        ("DELETE", "/v1/batches"),
        ("PATCH", "/v1/files/file-x"),
        ("POST", "/v1/files/file-x"),
        ("GET", "/v1/batches/batch_x/cancel"),
        ("DELETE", "/v1/batches/batch_x"),
        ("PUT", "/admin/keys"),
    ],
)
def test_a_wrong_method_is_405_in_the_openai_envelope(gw: RunningGateway, method, path):
    key = gw.create_key()
    client = gw.client(key)
    response = httpx.request(method, gw.base_url + path, headers={"authorization": f"Bearer {key}"})
    assert_error(response, 405, match=f"Method {method} is not allowed on {re.escape(path)}")
    assert "allow" in response.headers
    assert client.files.list().data == [] and client.batches.list().data == []


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/files", {"GET", "POST"}),
        ("PUT", "/v1/batches", {"GET", "POST"}),
        ("PUT", "/v1/files/file-x", {"GET", "DELETE"}),
    ],
)
def test_a_405_lists_every_allowed_method(gw: RunningGateway, method, path, allowed):
    response = httpx.request(method, gw.base_url + path)
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} >= allowed


@pytest.mark.parametrize(
    ("path", "query", "param"),
    [
        ("/v1/files", "limit=0", "limit"),
        ("/v1/files", "limit=abc", "limit"),
        ("/v1/files", "limit=-1", "limit"),
        ("/v1/files", "limit=10001", "limit"),
        ("/v1/files", "limit=2.5", "limit"),
        ("/v1/files", "order=sideways", "order"),
        ("/v1/batches", "limit=0", "limit"),
        ("/v1/batches", "limit=abc", "limit"),
        ("/v1/batches", "limit=101", "limit"),
    ],
)
def test_bad_list_parameters_are_400(gw: RunningGateway, path, query, param):
    key = gw.create_key()
    response = httpx.get(f"{gw.base_url}{path}?{query}", headers={"authorization": f"Bearer {key}"})
    assert_error(response, 400, param=param, match=param)


def test_cancelling_a_finished_batch_is_400_not_409(gw: RunningGateway):
    client = gw.client()
    done = client.batches.create(
        input_file_id=upload(client, GOOD),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    failed = client.batches.create(
        input_file_id=upload(client, b""),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    gw.drain()
    for batch_id, status in ((done.id, "completed"), (failed.id, "failed")):
        with pytest.raises(openai.BadRequestError) as info:
            client.batches.cancel(batch_id)
        assert_error(info.value.response, 400, match=f"{status} cannot")
        batch = client.batches.retrieve(batch_id)
        assert batch.status == status
        assert batch.cancelling_at is None and batch.cancelled_at is None
    assert gw.fake.count() == 1


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/v1/files/file-%00", {}),
        ("GET", "/v1/files/file-%00/content", {}),
        ("DELETE", "/v1/files/file-%00", {}),
        ("GET", "/v1/files?after=file-%00", {}),
        ("GET", "/v1/files?purpose=%00", {}),
        ("GET", "/v1/batches/batch_%00", {}),
        ("POST", "/v1/batches/batch_%00/cancel", {}),
        ("GET", "/v1/batches?after=batch_%00", {}),
        (
            "POST",
            "/v1/batches",
            {
                "json": {
                    "input_file_id": "file-\u0000",
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                }
            },
        ),
        ("POST", "/admin/keys", {"json": {"name": "nul\u0000name"}}),
        ("DELETE", "/admin/keys/key_%00", {}),
    ],
)
def test_a_nul_character_never_causes_a_500(
    gw: RunningGateway, request, database_url, method, path, kwargs
):
    key = gw.create_key()
    secret = "admin-secret" if path.startswith("/admin") else key
    response = httpx.request(
        method, gw.base_url + path, headers={"authorization": f"Bearer {secret}"}, **kwargs
    )
    assert response.status_code in (200, 400, 404), response.text
    if response.status_code != 200:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
