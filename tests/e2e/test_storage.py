"""What keys store: files that expire (hidden at once, deleted by the sweep) and each key's
storage quota (bytes and number of live files), over HTTP with the official SDKs."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from batchway.core import clock
from batchway.core.models import Principal
from batchway.errors import StorageQuotaExceeded
from tests.conftest import RunningGateway
from tests.helpers import (
    BOUNDARY,
    blobs,
    chat_line,
    jsonl,
    multipart,
    post_multipart,
    read_results,
    unique,
    upload,
)

HOUR = 3600
DAY = 24 * HOUR


class MovableClock:
    """The gateway's clock (``core/clock.py``), moved forward by hand."""

    def __init__(self) -> None:
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def now_float(self) -> float:
        return time.time() + self.offset

    def now(self) -> int:
        return int(self.now_float())


@pytest.fixture
def moved(monkeypatch: pytest.MonkeyPatch) -> MovableClock:
    movable = MovableClock()
    monkeypatch.setattr(clock, "now", movable.now)
    monkeypatch.setattr(clock, "now_float", movable.now_float)
    return movable


def expiring(client: openai.OpenAI, data: bytes, seconds: int = HOUR, name: str = "e.jsonl"):
    return client.files.create(
        file=(name, io.BytesIO(data)),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": seconds},
    )


def sweep(gw: RunningGateway) -> int:
    return gw.run(gw.gateway.housekeeping.sweep())


def quota_error(error: openai.APIStatusError, param: str = "file") -> str:
    """The message of a storage-quota refusal, after checking its envelope."""
    assert error.status_code == 400
    body = error.response.json()["error"]
    assert (body["type"], body["code"], body["param"]) == (
        "invalid_request_error",
        "storage_quota_exceeded",
        param,
    )
    message: str = body["message"]
    return message


# -- expiry --------------------------------------------------------------------------------


def test_an_expired_file_is_gone_at_once_and_the_sweep_deletes_it(
    gw: RunningGateway, moved: MovableClock
):
    client = gw.client()
    short = expiring(client, jsonl([chat_line("a")]))
    assert short.expires_at == short.created_at + HOUR
    forever = client.files.create(file=("keep.txt", io.BytesIO(b"keep")), purpose="user_data")

    moved.advance(HOUR)  # expiry is exclusive: at expires_at the file is gone
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(short.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(short.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(short.id)
    assert [f.id for f in client.files.list()] == [forever.id]
    # as a batch's input it is an unknown file (a 400 on batch create, as OpenAI answers)
    with pytest.raises(openai.BadRequestError) as info:
        client.batches.create(
            input_file_id=short.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert info.value.response.json()["error"]["param"] == "input_file_id"
    assert short.id in blobs(gw)  # hidden, but its bytes wait for the sweep

    assert sweep(gw) == 1
    assert blobs(gw) == [forever.id]
    assert client.files.retrieve(forever.id).id == forever.id
    assert sweep(gw) == 0


def test_the_sweep_deletes_in_chunks_and_spares_live_files(make_gateway, moved: MovableClock):
    gw: RunningGateway = make_gateway(file_expiry={"chunk": 2})
    client = gw.client()
    gone = [expiring(client, b"{}\n").id for _ in range(5)]
    later = expiring(client, b"{}\n", seconds=2 * HOUR)
    moved.advance(HOUR + 1)
    assert sweep(gw) == 5
    assert blobs(gw) == [later.id]
    for file_id in gone:
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(file_id)
    assert client.files.retrieve(later.id).expires_at == later.expires_at


def test_batch_result_files_expire_and_are_swept(gw: RunningGateway, moved: MovableClock):
    client = gw.client()
    tag = unique()
    lines = [chat_line("ok", prompt=tag), chat_line("bad", model="fake-400", prompt=tag)]
    batch = client.batches.create(
        input_file_id=upload(client, jsonl(lines)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
        output_expires_after={"anchor": "created_at", "seconds": HOUR},
    )
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    for file_id in (batch.output_file_id, batch.error_file_id):
        assert file_id is not None
        file = client.files.retrieve(file_id)
        assert file.purpose == "batch_output" and file.expires_at == file.created_at + HOUR
    assert [r.custom_id for r in read_results(client, batch.output_file_id)] == ["ok"]

    moved.advance(HOUR)
    for file_id in (batch.output_file_id, batch.error_file_id):
        with pytest.raises(openai.NotFoundError):
            client.files.content(file_id)
    assert sweep(gw) == 2
    assert blobs(gw) == [batch.input_file_id]  # the input file lives 30 days
    # the batch still names its result files, as OpenAI's do once they expired
    assert client.batches.retrieve(batch.id).output_file_id == batch.output_file_id


def test_message_batch_results_outlive_the_result_files(gw: RunningGateway, moved: MovableClock):
    key = gw.create_key()
    messages = anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0)
    request = {
        "custom_id": "m",
        "params": {
            "model": "fake-ok",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "still here"}],
        },
    }
    batch = messages.messages.batches.create(requests=[request])  # type: ignore[list-item]
    gw.drain()
    moved.advance(31 * DAY)  # the input and result files have all expired
    assert sweep(gw) == 2
    assert blobs(gw) == []
    # Message Batches results are read from the batch's lines, kept until it is deleted
    [result] = list(messages.messages.batches.results(batch.id))
    assert result.result.type == "succeeded"


def test_expires_after_before_the_file_part_is_checked_before_its_bytes(make_gateway):
    gw: RunningGateway = make_gateway(limits={"max_file_bytes": 100})
    key = gw.create_key()
    body = multipart(
        ("purpose", None, b"user_data"),
        ("expires_after[anchor]", None, b"created_at"),
        ("expires_after[seconds]", None, b"60"),
        ("file", "big.txt", b"x" * 1000),  # over the size limit too: never read that far
    )
    response = post_multipart(gw, key, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "expires_after"
    assert blobs(gw) == []


# -- the storage quota ---------------------------------------------------------------------


def test_an_upload_over_the_byte_quota_is_refused_and_leaves_nothing(make_gateway):
    gw: RunningGateway = make_gateway(limits={"max_storage_bytes_per_key": 1000})
    client = gw.client()
    first = client.files.create(file=("a.txt", io.BytesIO(b"a" * 600)), purpose="user_data")

    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=("b.txt", io.BytesIO(b"b" * 600)), purpose="user_data")
    assert "400 bytes left" in quota_error(info.value)
    assert [f.id for f in client.files.list()] == [first.id]
    assert blobs(gw) == [first.id]  # no blob, not even a partial one

    exact = client.files.create(file=("c.txt", io.BytesIO(b"c" * 400)), purpose="user_data")
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("d.txt", io.BytesIO(b"d")), purpose="user_data")
    # another key has its own quota
    gw.client().files.create(file=("e.txt", io.BytesIO(b"e" * 900)), purpose="user_data")
    # deleting makes room
    client.files.delete(first.id)
    client.files.create(file=("f.txt", io.BytesIO(b"f" * 600)), purpose="user_data")
    assert exact.id in blobs(gw) and first.id not in blobs(gw)


def test_the_file_count_cap_counts_live_files_only(make_gateway, moved: MovableClock):
    gw: RunningGateway = make_gateway(limits={"max_files_per_key": 2})
    client = gw.client()
    kept = client.files.create(file=("a.txt", io.BytesIO(b"a")), purpose="user_data")
    expiring(client, b"{}\n")
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=("c.txt", io.BytesIO(b"c")), purpose="user_data")
    assert "already holds 2 files" in quota_error(info.value)
    assert len(blobs(gw)) == 2

    moved.advance(HOUR)  # an expired file no longer counts, even before the sweep
    client.files.create(file=("d.txt", io.BytesIO(b"d")), purpose="user_data")
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("e.txt", io.BytesIO(b"e")), purpose="user_data")
    assert kept.id in blobs(gw)


def test_a_key_may_carry_its_own_quota(make_gateway):
    gw: RunningGateway = make_gateway(
        limits={"max_storage_bytes_per_key": 100, "max_files_per_key": 1}
    )
    response = httpx.post(
        f"{gw.base_url}/admin/keys",
        json={"name": "big", "max_storage_bytes": 5000, "max_files": 3},
        headers={"authorization": f"Bearer {gw.admin_key}"},
    )
    assert response.status_code == 200, response.text
    created = response.json()
    assert (created["max_storage_bytes"], created["max_files"]) == (5000, 3)
    big = gw.client(created["key"])
    for name in ("a", "b", "c"):
        big.files.create(file=(f"{name}.txt", io.BytesIO(b"x" * 1500)), purpose="user_data")
    with pytest.raises(openai.BadRequestError) as info:
        big.files.create(file=("d.txt", io.BytesIO(b"x")), purpose="user_data")
    assert "(3)" in quota_error(info.value)

    small = gw.client()  # the config's quota
    keys = gw.run(gw.gateway.keys.list())
    assert [k.max_storage_bytes for k in keys if k.id != created["id"]] == [None]
    with pytest.raises(openai.BadRequestError):
        small.files.create(file=("e.txt", io.BytesIO(b"x" * 101)), purpose="user_data")


@pytest.mark.parametrize("field", ["max_storage_bytes", "max_files"])
@pytest.mark.parametrize("value", [0, -5, "lots"])
def test_a_bad_key_quota_is_refused(gw: RunningGateway, field: str, value: Any):
    response = httpx.post(
        f"{gw.base_url}/admin/keys",
        json={"name": "x", field: value},
        headers={"authorization": f"Bearer {gw.admin_key}"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == field


def test_inline_batches_are_held_to_the_quota(make_gateway):
    gw: RunningGateway = make_gateway(limits={"max_storage_bytes_per_key": 200})
    key = gw.create_key()
    request = {
        "custom_id": "r",
        "params": {
            "model": "fake-ok",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "x" * 300}],
        },
    }
    auth = {"authorization": f"Bearer {key}"}
    response = httpx.post(f"{gw.url}/batches", json={"requests": [request]}, headers=auth)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("storage_quota_exceeded", "requests")

    messages = anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as info:
        messages.messages.batches.create(requests=[request])  # type: ignore[list-item]
    body = info.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "storage quota" in body["error"]["message"]
    assert blobs(gw) == []
    assert gw.client(key).batches.list().data == []


def test_result_files_are_never_refused_but_count(make_gateway):
    client_data = jsonl([chat_line("r", prompt="y" * 200)])
    gw: RunningGateway = make_gateway(limits={"max_storage_bytes_per_key": len(client_data) + 10})
    client = gw.client()
    batch = client.batches.create(
        input_file_id=upload(client, client_data),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    [result] = read_results(client, batch.output_file_id)  # written though over the quota
    assert result.custom_id == "r"
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=("z.txt", io.BytesIO(b"z")), purpose="user_data")
    assert "files take" in quota_error(info.value)


def test_two_uploads_at_once_never_both_pass_a_quota_for_one(make_gateway):
    gw: RunningGateway = make_gateway(limits={"max_storage_bytes_per_key": 1500})
    key = gw.create_key()
    barrier = threading.Barrier(2, timeout=30)

    def body(name: str) -> Iterator[bytes]:
        whole = multipart(("purpose", None, b"user_data"), ("file", name, b"q" * 1000))
        yield whole[:-600]  # the fields, the file part's headers and some of its bytes
        barrier.wait()  # both uploads are under way before either ends
        yield whole[-600:]

    answers: dict[str, httpx.Response] = {}

    def send(name: str) -> None:
        answers[name] = httpx.post(
            f"{gw.url}/files",
            content=body(name),
            headers={
                "authorization": f"Bearer {key}",
                "content-type": f"multipart/form-data; boundary={BOUNDARY}",
            },
            timeout=60,
        )

    threads = [threading.Thread(target=send, args=(name,)) for name in ("one.txt", "two.txt")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(response.status_code for response in answers.values())
    assert statuses == [200, 400], {n: r.text for n, r in answers.items()}
    [winner] = [r.json()["id"] for r in answers.values() if r.status_code == 200]
    assert blobs(gw) == [winner]


def test_the_quota_check_that_decides_is_atomic(make_gateway):
    """Both uploads pass the early check, then are recorded at once: one must lose."""
    gw: RunningGateway = make_gateway(limits={"max_storage_bytes_per_key": 1500})
    key, _ = gw.run(gw.gateway.keys.create(name="racer"))
    principal: Principal = key.principal()
    files = gw.gateway.files

    async def race() -> list[Any]:
        uploads = [await files.begin(principal, "user_data") for _ in range(2)]
        for each in uploads:
            await each.write(b"r" * 1000)
        return await asyncio.gather(
            *(files.finish(principal, u, filename="r.txt", purpose="user_data") for u in uploads),
            return_exceptions=True,
        )

    outcomes = gw.run(race())
    refused = [o for o in outcomes if isinstance(o, StorageQuotaExceeded)]
    stored = [o for o in outcomes if not isinstance(o, BaseException)]
    assert (len(stored), len(refused)) == (1, 1), outcomes
    assert blobs(gw) == [stored[0].id]
    assert gw.run(files.storage_use(principal)).bytes == 1000
