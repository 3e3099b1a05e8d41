"""A gateway whose files live on S3-compatible storage (moto's server on loopback): uploads,
batches of both dialects, results and deletes, driven with the official SDKs."""

from __future__ import annotations

import re
from typing import Any

import anthropic
import httpx
import openai

from tests.conftest import RunningGateway, S3Bucket
from tests.helpers import chat_line, jsonl, read_results, unique, upload

PREFIX = "gateway/files"


def _s3_gateway(make_gateway: Any, bucket: S3Bucket) -> RunningGateway:
    gateway: RunningGateway = make_gateway(
        files=f"s3://{bucket.bucket}/{PREFIX}", s3=bucket.config()
    )
    return gateway


def _objects(bucket: S3Bucket) -> list[str]:
    listing = httpx.get(f"{bucket.endpoint}/{bucket.bucket}?list-type=2").text
    return sorted(re.findall(rf"<Key>{PREFIX}/([^<]+)</Key>", listing))


def test_a_batch_runs_on_files_kept_in_s3(make_gateway: Any, s3_bucket: S3Bucket) -> None:
    gw = _s3_gateway(make_gateway, s3_bucket)
    client = gw.client()
    tag = unique()
    lines = [chat_line(f"line-{i}", prompt=f"{tag} {i}") for i in range(30)]
    lines.append(chat_line("bad", model="fake-400", prompt=f"{tag} bad"))
    input_id = upload(client, jsonl(lines))
    assert _objects(s3_bucket) == [input_id]
    assert client.files.content(input_id).content == jsonl(lines)

    batch = client.batches.create(
        input_file_id=input_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    gw.drain()
    batch = client.batches.retrieve(batch.id)

    assert batch.status == "completed"
    outputs = read_results(client, batch.output_file_id)
    errors = read_results(client, batch.error_file_id)
    assert sorted(line.custom_id for line in outputs) == sorted(f"line-{i}" for i in range(30))
    assert [line.custom_id for line in errors] == ["bad"]
    assert _objects(s3_bucket) == sorted([input_id, batch.output_file_id, batch.error_file_id])

    client.files.delete(batch.output_file_id)
    assert batch.output_file_id not in _objects(s3_bucket)


def test_a_message_batch_on_s3(make_gateway: Any, s3_bucket: S3Bucket) -> None:
    gw = _s3_gateway(make_gateway, s3_bucket)
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.create_key(), max_retries=0)
    tag = unique()
    requests: list[Any] = [
        {
            "custom_id": f"m-{i}",
            "params": {
                "model": "fake-ok",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": f"{tag} {i}"}],
            },
        }
        for i in range(5)
    ]
    batch = client.messages.batches.create(requests=requests)
    gw.drain()

    assert client.messages.batches.retrieve(batch.id).processing_status == "ended"
    results = list(client.messages.batches.results(batch.id))
    assert sorted(r.custom_id for r in results) == [f"m-{i}" for i in range(5)]
    assert all(r.result.type == "succeeded" for r in results)
    assert _objects(s3_bucket)  # the inline input and the results are objects


def test_an_upload_over_the_limit_leaves_no_object_or_part(
    make_gateway: Any, s3_bucket: S3Bucket
) -> None:
    # parts of 5 MiB go up while the upload streams in; the 12 MiB upload is refused past
    # its limit, and the multipart upload it had begun is aborted on the server
    gw: RunningGateway = make_gateway(
        files=f"s3://{s3_bucket.bucket}/{PREFIX}",
        s3={**s3_bucket.config(), "part_size": 5 << 20},
        limits={"max_file_bytes": 11 << 20, "max_batch_file_bytes": 11 << 20},
    )
    key = gw.create_key()
    line = jsonl([chat_line("x", prompt="y" * 1000)])
    response = httpx.post(
        f"{gw.url}/files",
        headers={"authorization": f"Bearer {key}"},
        files={"file": ("b.jsonl", line * ((12 << 20) // len(line)))},
        data={"purpose": "batch"},
        timeout=60,
    )
    assert response.status_code == 413, response.text
    assert _objects(s3_bucket) == []
    uploads = httpx.get(f"{s3_bucket.endpoint}/{s3_bucket.bucket}?uploads").text
    assert "<UploadId>" not in uploads


def test_an_unreachable_store_is_a_503_in_the_envelope(make_gateway: Any) -> None:
    gw: RunningGateway = make_gateway(
        files="s3://nowhere/files",
        s3={
            "endpoint_url": "http://127.0.0.1:9",
            "access_key_id": "x",
            "secret_access_key": "x",
            "max_retries": 1,
            "timeout_seconds": 2,
        },
    )
    client = gw.client()
    line = jsonl([chat_line("a")])
    try:
        upload(client, line)
    except openai.APIStatusError as exc:
        # the storage is down, not the gateway: a status the SDKs retry, a message that
        # names neither the endpoint nor the credentials
        assert exc.status_code == 503
        error = exc.response.json()["error"]
        assert error["message"].startswith("object storage is unavailable")
        assert "127.0.0.1" not in error["message"] and "nowhere" not in error["message"]
    else:
        raise AssertionError("an upload to an unreachable store succeeded")
