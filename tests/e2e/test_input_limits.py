"""Hostile JSON input: nesting past the depth limit and bodies, lines and requests past the
size limits. Each is a clear 4xx (or a batch that fails validation on the right line), never
a 500 and never a batch stuck in ``validating``; nothing half-written is left behind."""

from __future__ import annotations

import json
import socket
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import RunningGateway
from tests.e2e.test_bad_input import assert_error
from tests.helpers import blobs, chat_line, jsonl, unique, upload

DEPTH = 16  # the depth limit of the gateways started here (the default is 128)


def nested(levels: int) -> str:
    """A JSON value of arrays nested ``levels`` deep, written by hand (json.dumps recurses)."""
    return "[" * levels + "]" * levels


def chat_body(extra_levels: int, model: str = "fake-ok") -> bytes:
    """A chat request whose body nests ``1 + extra_levels`` deep (``metadata`` holds them)."""
    prompt = json.dumps(f"deep {unique()}")
    return (
        f'{{"model": "{model}", "messages": [{{"role": "user", "content": {prompt}}}], '
        f'"max_tokens": 10, "extra": {nested(extra_levels)}}}'
    ).encode()


def messages_request(custom_id: str, extra_levels: int = 0) -> str:
    """An inline request as JSON text; ``extra_levels`` nests it ``2 + extra_levels`` deep."""
    extra = f', "extra": {nested(extra_levels)}' if extra_levels else ""
    return (
        f'{{"custom_id": "{custom_id}", "params": {{"model": "fake-ok", "max_tokens": 10, '
        f'"messages": [{{"role": "user", "content": "hi"}}]{extra}}}}}'
    )


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "content-type": "application/json"}


@pytest.fixture
def lgw(make_gateway) -> RunningGateway:
    gateway: RunningGateway = make_gateway(
        limits={
            "max_json_depth": DEPTH,
            "max_request_bytes": 4000,
            "max_message_batch_bytes": 20_000,
            "max_batch_line_bytes": 1000,
        }
    )
    return gateway


def assert_nothing_created(gw: RunningGateway, key: str) -> None:
    client = gw.client(key)
    assert client.batches.list().data == []
    assert client.files.list().data == []
    assert blobs(gw) == []


# -- nesting -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions"])
def test_a_body_at_the_depth_limit_passes_and_one_level_more_is_400(lgw: RunningGateway, path):
    key = lgw.create_key()
    ok = httpx.post(f"{lgw.base_url}{path}", content=chat_body(DEPTH - 1), headers=auth(key))
    assert ok.status_code == 200, ok.text
    deep = httpx.post(f"{lgw.base_url}{path}", content=chat_body(DEPTH), headers=auth(key))
    error = assert_error(deep, 400, code="json_too_deep", match=f"more than {DEPTH} levels")
    assert error["param"] is None


@pytest.mark.parametrize("levels", [300, 2000], ids=["past-orjson-write", "past-orjson-read"])
def test_the_reported_depths_are_400_on_every_json_route(gw: RunningGateway, levels):
    """Depth ~300 used to be a 500 (read, but not writable); 2000 is past what orjson reads."""
    key = gw.create_key()
    client = gw.client(key)
    before = gw.fake.count()
    response = httpx.post(
        f"{gw.url}/chat/completions", content=chat_body(levels), headers=auth(key)
    )
    assert_error(response, 400, code="json_too_deep", match="more than 128 levels")

    messages = anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as refused:
        messages.messages.create(
            model="fake-ok",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"extra": json.loads(nested(min(levels, 300)))},
        )
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "levels deep" in refused.value.body["error"]["message"]  # type: ignore[index]

    inline = f'{{"requests": [{messages_request("ok")}, {messages_request("deep", levels)}]}}'
    for path in ("/v1/batches", "/v1/messages/batches"):
        response = httpx.post(f"{gw.base_url}{path}", content=inline, headers=auth(key))
        assert response.status_code == 400, response.text
        message = json.dumps(response.json())
        assert "requests[1]" in message and "levels deep" in message
    admin = httpx.post(
        f"{gw.base_url}/admin/keys",
        content=f'{{"name": "x", "models": {nested(levels)}}}',
        headers=auth(gw.admin_key),
    )
    assert_error(admin, 400, code="json_too_deep", match="levels deep")
    assert gw.fake.count() == before
    assert client.batches.list().data == [] and client.files.list().data == []
    assert blobs(gw) == []


def test_a_deep_field_of_a_file_batch_create_is_400(lgw: RunningGateway):
    key = lgw.create_key()
    body = (
        '{"input_file_id": "file-x", "endpoint": "/v1/chat/completions", '
        f'"completion_window": "24h", "metadata": {{"a": {nested(DEPTH)}}}}}'
    )
    response = httpx.post(f"{lgw.url}/batches", content=body, headers=auth(key))
    assert_error(response, 400, param="metadata", code="json_too_deep", match="levels deep")


def test_a_deep_line_fails_its_batch_by_line_number_and_never_wedges(lgw: RunningGateway):
    key = lgw.create_key()
    client = lgw.client(key)
    good = json.dumps(chat_line("good", prompt=unique())).encode()
    deep = (
        b'{"custom_id": "deep", "method": "POST", "url": "/v1/chat/completions", "body": '
        + chat_body(300)
        + b"}"
    )
    data = good + b"\n" + deep + b"\n" + good.replace(b'"good"', b'"again"') + b"\n"
    assert len(deep) < 1000  # under the line limit: the depth alone refuses it
    wedged = client.batches.create(
        input_file_id=upload(client, data),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    client.batches.cancel(wedged.id)  # cancelled while validating: must still end
    batch = client.batches.create(
        input_file_id=upload(client, data),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    lgw.drain()
    assert client.batches.retrieve(wedged.id).status == "cancelled"
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data is not None
    [error] = batch.errors.data
    assert (error.code, error.line) == ("json_too_deep", 2)
    assert f"more than {DEPTH} levels" in (error.message or "")
    # validation goes on for everyone
    after = client.batches.create(
        input_file_id=upload(client, jsonl([chat_line("next", prompt=unique())])),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    lgw.drain()
    assert client.batches.retrieve(after.id).status == "completed"


# -- sizes ---------------------------------------------------------------------------------


def exchange(gw: RunningGateway, head: str, *body: bytes) -> tuple[int, dict[str, Any]]:
    """Send a request by hand — its head, then ``body`` — and read the answer without ever
    sending more; a gateway that waited for the rest of the body would time out here."""
    with socket.create_connection((gw.handle.host, gw.handle.port), timeout=30) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + b"".join(body))
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in lines[1:])
        while len(rest) < int(fields["content-length"]):
            rest += sock.recv(65536)
    return int(lines[0].split()[1]), json.loads(rest)


def head(gw: RunningGateway, path: str, key: str, framing: str) -> str:
    return (
        f"POST {path} HTTP/1.1\nhost: {gw.handle.host}\nauthorization: Bearer {key}\n"
        f"content-type: application/json\n{framing}\n"
    )


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@pytest.mark.parametrize(
    ("path", "limit"),
    [("/v1/chat/completions", 4000), ("/v1/messages", 4000), ("/v1/batches", 20_000)],
)
def test_a_content_length_over_the_limit_is_413_before_the_body_is_read(
    lgw: RunningGateway, path, limit
):
    key = lgw.create_key()
    status, body = exchange(lgw, head(lgw, path, key, "content-length: 1000000000"))
    assert status == 413
    error = body["error"]
    assert error["type"] in ("invalid_request_error", "request_too_large")
    assert "larger than" in error["message"]
    assert_nothing_created(lgw, key)


@pytest.mark.parametrize(
    ("path", "limit"),
    [("/v1/chat/completions", 4000), ("/v1/messages", 4000), ("/v1/messages/batches", 20_000)],
)
def test_a_chunked_body_is_413_as_soon_as_it_passes_the_limit(lgw: RunningGateway, path, limit):
    key = lgw.create_key()
    start = b'{"requests": [' if "batches" in path else b'{"model": "fake-ok", "x": "'
    pieces = [chunk(start)] + [chunk(b"x" * 1000) for _ in range(limit // 1000 + 1)]
    # the body's last chunk (and its end) is never sent
    status, body = exchange(lgw, head(lgw, path, key, "transfer-encoding: chunked"), *pieces)
    assert status == 413, body
    if path.startswith("/v1/messages"):
        assert body == {
            "type": "error",
            "error": {"type": "request_too_large", "message": body["error"]["message"]},
        }
    assert "larger than" in body["error"]["message"]
    assert_nothing_created(lgw, key)


def test_a_sync_body_over_the_limit_is_413_through_the_sdk(lgw: RunningGateway):
    client = lgw.client()
    big = "x" * 5000
    with pytest.raises(openai.APIStatusError) as refused:  # no class of its own for a 413
        client.chat.completions.create(model="fake-ok", messages=[{"role": "user", "content": big}])
    assert refused.value.status_code == 413
    assert refused.value.code == "request_too_large"
    ok = client.chat.completions.create(
        model="fake-ok", messages=[{"role": "user", "content": "x" * 3000}]
    )
    assert ok.choices[0].message.content


def test_a_line_over_the_line_limit_fails_the_batch_on_its_line(lgw: RunningGateway):
    key = lgw.create_key()
    client = lgw.client(key)
    lines = [chat_line(f"r{i}", prompt=unique()) for i in range(3)]
    lines[1]["body"]["messages"][0]["content"] = "y" * 5000  # the line limit is 1000 bytes
    batch = client.batches.create(
        input_file_id=upload(client, jsonl(lines)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    lgw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data is not None
    [error] = batch.errors.data
    assert (error.code, error.line) == ("line_too_large", 2)
    assert "1,000 bytes" in (error.message or "")
    assert lgw.fake.count() == 0


def test_every_bad_inline_request_is_named_and_nothing_is_kept(lgw: RunningGateway):
    key = lgw.create_key()
    big = messages_request("big").replace('"hi"', json.dumps("z" * 2000))
    body = (
        f'{{"requests": [{messages_request("a")}, {big}, {messages_request("deep", DEPTH)}, '
        f"{messages_request('b')}, 7, {messages_request('a')}]}}"
    )
    for path in ("/v1/batches", "/v1/messages/batches"):
        response = httpx.post(f"{lgw.base_url}{path}", content=body, headers=auth(key))
        assert response.status_code == 400, response.text
        text = json.dumps(response.json())
        for named in ("requests[1]", "requests[2]", "requests[4]", "requests[5].custom_id"):
            assert named in text, (named, text)
        assert "requests[0]" not in text and "requests[3]" not in text
        assert "1,000 bytes" in text and f"more than {DEPTH} levels" in text
    assert_nothing_created(lgw, key)


def test_an_inline_batch_still_runs_once_streamed(lgw: RunningGateway):
    key = lgw.create_key()
    body = f'{{"requests": [{messages_request("one")}, {messages_request("two", DEPTH - 3)}]}}'
    response = httpx.post(f"{lgw.base_url}/v1/messages/batches", content=body, headers=auth(key))
    assert response.status_code == 200, response.text
    batch_id = response.json()["id"]
    lgw.drain()
    stored = lgw.client(key).batches.retrieve(batch_id)
    assert stored.request_counts is not None and stored.request_counts.total == 2
    content = lgw.client(key).files.content(stored.input_file_id).text
    assert [json.loads(line)["custom_id"] for line in content.splitlines()] == ["one", "two"]


@pytest.mark.parametrize(
    "tail",
    ["", ", {", ', "x": 1}', "]} trailing", '], "requests": []}'],
    ids=["cut-short", "cut-inside-a-request", "field-after", "trailing-garbage", "twice"],
)
def test_an_inline_body_that_breaks_off_half_way_leaves_nothing(lgw: RunningGateway, tail):
    key = lgw.create_key()
    body = f'{{"requests": [{messages_request("a")}, {messages_request("b")}{tail}'
    for path in ("/v1/batches", "/v1/messages/batches"):
        response = httpx.post(f"{lgw.base_url}{path}", content=body, headers=auth(key))
        assert response.status_code == 400, response.text
    assert_nothing_created(lgw, key)
