"""The OpenAI Files API through the official SDK: upload, retrieve, content, list, delete."""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import RunningGateway
from tests.helpers import blobs, chat_line, jsonl, multipart, post_multipart, upload

THIRTY_DAYS = 30 * 24 * 3600
FILE_KEYS = {
    "id",
    "object",
    "bytes",
    "created_at",
    "expires_at",
    "filename",
    "purpose",
    "status",
    "status_details",
}


def assert_error(response: Any, status: int, *, param: str | None, match: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param
    assert re.search(match, body["error"]["message"]), body["error"]["message"]


def test_upload_returns_every_field_of_the_file_object(gw: RunningGateway):
    key = gw.create_key()
    client = gw.client(key)
    data = jsonl([chat_line("a"), chat_line("b")])
    before = int(time.time())
    file = client.files.create(file=("input.jsonl", io.BytesIO(data)), purpose="batch")
    after = int(time.time())

    assert re.fullmatch(r"file-[0-9A-Za-z]{22}", file.id)
    assert file.object == "file"
    assert file.bytes == len(data)
    assert before <= file.created_at <= after
    assert file.expires_at == file.created_at + THIRTY_DAYS
    assert file.filename == "input.jsonl"
    assert file.purpose == "batch"
    assert file.status == "processed"
    assert file.status_details is None

    # every key is on the wire, nulls included (the SDK leaves missing keys unset)
    raw = httpx.get(f"{gw.url}/files/{file.id}", headers={"authorization": f"Bearer {key}"})
    assert raw.status_code == 200
    assert set(raw.json()) == FILE_KEYS
    assert raw.json()["status_details"] is None
    assert blobs(gw) == [file.id]


def test_files_of_other_purposes_never_expire_by_default(gw: RunningGateway):
    client = gw.client()
    file = client.files.create(file=("notes.txt", io.BytesIO(b"hello")), purpose="user_data")
    assert file.purpose == "user_data"
    assert file.expires_at is None
    assert client.files.retrieve(file.id).expires_at is None


@pytest.mark.parametrize("purpose", ["batch", "user_data"])
def test_expires_after_sets_expires_at(gw: RunningGateway, purpose):
    client = gw.client()
    file = client.files.create(
        file=("short.jsonl", io.BytesIO(b"{}\n")),
        purpose=purpose,
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert file.expires_at == file.created_at + 3600
    assert client.files.retrieve(file.id).expires_at == file.created_at + 3600


@pytest.mark.parametrize("style", ["expires_after.{}", "expires_after[{}]"])
def test_expires_after_in_dot_and_bracket_notation(gw: RunningGateway, style):
    key = gw.create_key()
    response = post_multipart(
        gw,
        key,
        multipart(
            ("purpose", None, b"batch"),
            (style.format("anchor"), None, b"created_at"),
            (style.format("seconds"), None, b"7200"),
            ("file", "dotted.jsonl", b"{}\n"),
        ),
    )
    assert response.status_code == 200, response.text
    file = response.json()
    assert file["expires_at"] == file["created_at"] + 7200
    assert gw.client(key).files.retrieve(file["id"]).expires_at == file["created_at"] + 7200


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ([("expires_after[anchor]", b"created_at"), ("expires_after[seconds]", b"60")], "3600"),
        (
            [("expires_after[anchor]", b"created_at"), ("expires_after[seconds]", b"2592001")],
            "2592000",
        ),
        ([("expires_after[anchor]", b"last_active_at"), ("expires_after[seconds]", b"3600")], ""),
        ([("expires_after[anchor]", b"created_at")], "seconds"),
        ([("expires_after.seconds", b"3600")], "anchor"),
        ([("expires_after[anchor]", b"created_at"), ("expires_after[seconds]", b"soon")], ""),
    ],
)
def test_bad_expires_after_is_refused_and_nothing_is_stored(gw: RunningGateway, fields, match):
    key = gw.create_key()
    client = gw.client(key)
    parts = [("purpose", None, b"batch"), *((name, None, value) for name, value in fields)]
    response = post_multipart(gw, key, multipart(*parts, ("file", "x.jsonl", b"{}\n")))
    assert_error(response, 400, param="expires_after", match=f"expires_after.*{match}")
    assert client.files.list().data == []
    assert blobs(gw) == []


def test_retrieve_returns_the_uploaded_object(gw: RunningGateway):
    client = gw.client()
    created = client.files.create(file=("r.jsonl", io.BytesIO(b"{}\n")), purpose="batch")
    assert client.files.retrieve(created.id) == created


def test_content_is_byte_exact(gw: RunningGateway):
    key = gw.create_key()
    client = gw.client(key)
    data = (
        '{"custom_id": "ü-1", "text": "héllo wörld ✓ 日本語 🚀"}\n'
        '{"custom_id": "crlf"}\r\n'
        "\n"
        '  {"custom_id": "indented", "tab": "\t"}\n'
        "last line with no newline: ñ"
    ).encode()
    file = client.files.create(file=("exact.jsonl", io.BytesIO(data)), purpose="batch")
    assert file.bytes == len(data)
    assert client.files.content(file.id).content == data

    raw = httpx.get(f"{gw.url}/files/{file.id}/content", headers={"authorization": f"Bearer {key}"})
    assert raw.status_code == 200
    assert raw.content == data
    assert raw.headers["content-length"] == str(len(data))
    assert raw.headers["content-type"] == "application/octet-stream"


def test_a_3_mb_upload_round_trips_byte_exact(gw: RunningGateway):
    client = gw.client()
    data = os.urandom(3 * 1024 * 1024 + 123)  # spans several blob chunks, every byte value
    file = client.files.create(file=("big.bin", io.BytesIO(data)), purpose="user_data")
    assert file.bytes == len(data)
    content = client.files.content(file.id).content
    assert len(content) == len(data)
    assert hashlib.sha256(content).hexdigest() == hashlib.sha256(data).hexdigest()
    stored = Path(gw.gateway.config.files) / file.id
    assert stored.read_bytes() == data


def test_purpose_may_come_after_the_file_part(gw: RunningGateway):
    key = gw.create_key()
    data = jsonl([chat_line("late")])
    response = post_multipart(
        gw, key, multipart(("file", "late.jsonl", data), ("purpose", None, b"batch"))
    )
    assert response.status_code == 200, response.text
    file = response.json()
    assert file["purpose"] == "batch"
    assert file["filename"] == "late.jsonl"
    assert file["bytes"] == len(data)
    assert file["expires_at"] == file["created_at"] + THIRTY_DAYS
    client = gw.client(key)
    assert client.files.content(file["id"]).content == data

    # and the file is a valid batch input
    batch = client.batches.create(
        input_file_id=file["id"], endpoint="/v1/chat/completions", completion_window="24h"
    )
    gw.drain()
    assert client.batches.retrieve(batch.id).status == "completed"


def test_purpose_after_the_file_part_is_still_checked(gw: RunningGateway):
    key = gw.create_key()
    response = post_multipart(
        gw, key, multipart(("file", "late.txt", b"{}\n"), ("purpose", None, b"batch"))
    )
    assert_error(response, 400, param="file", match="Must be .jsonl")
    response = post_multipart(
        gw, key, multipart(("file", "late.jsonl", b"{}\n"), ("purpose", None, b"homework"))
    )
    assert_error(response, 400, param="purpose", match="'homework' is not a valid purpose")
    assert gw.client(key).files.list().data == []
    assert blobs(gw) == []


def test_list_files_with_limit_after_order_and_purpose(gw: RunningGateway):
    key = gw.create_key()
    client = gw.client(key)
    ids: list[str] = []
    purposes: list[Any] = ["batch", "user_data", "batch", "user_data", "batch"]
    for i, purpose in enumerate(purposes):
        ids.append(
            client.files.create(file=(f"f{i}.jsonl", io.BytesIO(b"{}\n")), purpose=purpose).id
        )
    newest_first = list(reversed(ids))

    page = client.files.list()
    assert [f.id for f in page.data] == newest_first  # default order: desc
    assert page.has_more is False
    assert [f.id for f in client.files.list(order="asc").data] == ids

    page = client.files.list(limit=2)
    assert [f.id for f in page.data] == newest_first[:2]
    assert page.has_more is True
    page = client.files.list(limit=2, after=newest_first[1])
    assert [f.id for f in page.data] == newest_first[2:4]
    assert page.has_more is True
    page = client.files.list(limit=2, after=newest_first[3])
    assert [f.id for f in page.data] == newest_first[4:]
    assert page.has_more is False

    page = client.files.list(order="asc", after=ids[1], limit=10)
    assert [f.id for f in page.data] == ids[2:]

    batch_ids = [i for i, p in zip(ids, purposes, strict=True) if p == "batch"]
    assert [f.id for f in client.files.list(purpose="batch")] == list(reversed(batch_ids))
    assert [f.id for f in client.files.list(purpose="user_data", order="asc")] == [
        ids[1],
        ids[3],
    ]
    assert client.files.list(purpose="fine-tune").data == []

    # the raw list envelope
    raw = httpx.get(
        f"{gw.url}/files",
        params={"limit": 2, "order": "asc"},
        headers={"authorization": f"Bearer {key}"},
    ).json()
    assert set(raw) == {"object", "data", "first_id", "last_id", "has_more"}
    assert raw["object"] == "list"
    assert (raw["first_id"], raw["last_id"], raw["has_more"]) == (ids[0], ids[1], True)
    assert all(set(f) == FILE_KEYS for f in raw["data"])


def test_list_files_auto_pagination_walks_every_page(gw: RunningGateway):
    client = gw.client()
    ids = [upload(client, b"{}\n", name=f"p{i}.jsonl") for i in range(7)]
    assert [f.id for f in client.files.list(limit=2)] == list(reversed(ids))
    assert [f.id for f in client.files.list(limit=3, order="asc")] == ids
    pages = list(client.files.list(limit=3).iter_pages())
    assert [len(p.data) for p in pages] == [3, 3, 1]


def test_an_empty_listing_has_null_cursors(gw: RunningGateway):
    key = gw.create_key()
    raw = httpx.get(f"{gw.url}/files", headers={"authorization": f"Bearer {key}"}).json()
    assert raw == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


def test_delete_then_everything_is_404(gw: RunningGateway):
    key = gw.create_key()
    client = gw.client(key)
    keep = upload(client, b"{}\n", name="keep.jsonl")
    gone = upload(client, b'{"a": 1}\n', name="gone.jsonl")
    assert blobs(gw) == sorted([keep, gone])

    raw = httpx.delete(f"{gw.url}/files/{gone}", headers={"authorization": f"Bearer {key}"})
    assert raw.status_code == 200
    assert raw.json() == {"id": gone, "object": "file", "deleted": True}

    with pytest.raises(openai.NotFoundError) as info:
        client.files.retrieve(gone)
    assert_error(info.value.response, 404, param="file_id", match=gone)
    with pytest.raises(openai.NotFoundError) as info:
        client.files.content(gone)
    assert_error(info.value.response, 404, param="file_id", match=gone)
    with pytest.raises(openai.NotFoundError) as info:
        client.files.delete(gone)
    assert_error(info.value.response, 404, param="file_id", match=gone)

    assert [f.id for f in client.files.list()] == [keep]
    assert blobs(gw) == [keep]
    assert client.files.content(keep).content == b"{}\n"


def test_delete_through_the_sdk(gw: RunningGateway):
    client = gw.client()
    file_id = upload(client, b"{}\n")
    deleted = client.files.delete(file_id)
    assert (deleted.id, deleted.object, deleted.deleted) == (file_id, "file", True)


def test_wait_for_processing_returns_at_once(gw: RunningGateway):
    client = gw.client()
    file_id = upload(client, b"{}\n")
    started = time.monotonic()
    file = client.files.wait_for_processing(file_id, poll_interval=30, max_wait_seconds=60)
    assert time.monotonic() - started < 5  # a single poll, no 30 s sleep
    assert file.id == file_id
    assert file.status == "processed"
