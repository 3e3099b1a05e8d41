"""JSON bodies of every shape, posted to every route that reads one, on a real gateway.

Whatever the body (any JSON type at the top and in every field, duplicate keys, huge and
odd numbers, escaped lone surrogates, nesting, any encoding, junk around it), the answer is
never a 5xx; an error comes in the route's own envelope (OpenAI's everywhere but on
``/v1/messages*``, Anthropic's there); and a refused request leaves nothing behind: no
batch, no file, no key, no blob. A batch that was accepted is drained to its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import orjson
import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

from tests.conftest import RunningGateway
from tests.fuzz.conftest import ADMIN_KEY, fuzz_settings, json_of
from tests.fuzz.drain import drain_or_fail
from tests.fuzz.envelopes import assert_answer
from tests.fuzz.strategies import FILE_ID, GOOD_MODEL, any_json, body_bytes, request_bodies
from tests.helpers import blobs

SYNC_ROUTES = {
    "/v1/chat/completions": "chat",
    "/chat/completions": "chat",
    "/v1/embeddings": "embeddings",
    "/embeddings": "embeddings",
    "/v1/completions": "completions",
    "/v1/responses": "responses",
    "/v1/messages": "messages",
}
CREATE_ROUTES = {
    "/v1/batches": ("batch", "inline"),
    "/batches": ("batch", "inline"),
    "/v1/messages/batches": ("message_batch",),
    "/admin/keys": ("key",),
}
# routes that take no JSON body: whatever is sent, they answer as they would without it
OTHER_ROUTES = [
    "/v1/batches/batch_nonexistent/cancel",
    "/v1/messages/batches/msgbatch_nonexistent/cancel",
    "/v1/files",
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=utf-16",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    None,
]


@dataclass(frozen=True)
class State:
    """What a refused request must not change."""

    newest_batch: str | None
    newest_file: str | None
    keys: int
    blobs: tuple[str, ...]


def state(gw: RunningGateway, http: httpx.Client, admin: httpx.Client) -> State:
    batches = json_of(http.get("/v1/batches", params={"limit": 1}))["data"]
    files = json_of(http.get("/v1/files", params={"limit": 1}))["data"]
    keys = json_of(admin.get("/admin/keys"))["data"]
    return State(
        newest_batch=batches[0]["id"] if batches else None,
        newest_file=files[0]["id"] if files else None,
        keys=len(keys),
        blobs=tuple(blobs(gw)),
    )


@pytest.fixture(scope="module")
def admin(fuzz_gw: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=fuzz_gw.base_url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture(scope="module")
def input_file(http: httpx.Client) -> str:
    """A good input file of one line, for the batches the bodies create."""
    line = {
        "custom_id": "only",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": GOOD_MODEL, "messages": [{"role": "user", "content": "hi"}]},
    }
    response = http.post(
        "/v1/files",
        files={"file": ("input.jsonl", orjson.dumps(line) + b"\n")},
        data={"purpose": "batch"},
    )
    assert response.status_code == 200, response.text
    file_id: str = response.json()["id"]
    return file_id


@st.composite
def headers(draw: st.DrawFn, key: str) -> dict[str, str]:
    """The key in any of the headers the gateway reads, and any content type."""
    auth = draw(st.sampled_from(["authorization", "x-api-key", "api-key"]))
    result = {auth: f"Bearer {key}" if auth == "authorization" else key}
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    if content_type is not None:
        result["content-type"] = content_type
    return result


def post(
    http: httpx.Client, path: str, body: bytes, sent_headers: dict[str, str]
) -> httpx.Response:
    note(f"POST {path} {sent_headers} {body[:2000]!r}")
    # a fresh header set: the module client's own authorization must not win over the drawn one
    request = http.build_request("POST", path, content=body)
    for name in ("authorization", "content-type"):
        request.headers.pop(name, None)
    request.headers.update(sent_headers)
    response = http.send(request)
    event(f"{path} {response.status_code}")  # see --hypothesis-show-statistics
    return response


@pytest.mark.parametrize("path", sorted(SYNC_ROUTES))
@given(data=st.data())
@fuzz_settings(max_examples=14)
def test_sync_routes_answer_every_body(
    fuzz_gw: RunningGateway,
    http: httpx.Client,
    admin: httpx.Client,
    fuzz_key: str,
    path: str,
    data: st.DataObject,
) -> None:
    body = data.draw(body_bytes(request_bodies(SYNC_ROUTES[path])), "body")
    before = state(fuzz_gw, http, admin)
    response = post(http, path, body, data.draw(headers(fuzz_key)))
    assert_answer(response, path)
    assert state(fuzz_gw, http, admin) == before


@pytest.mark.parametrize("path", sorted(CREATE_ROUTES))
@given(data=st.data())
@fuzz_settings(max_examples=16)
def test_create_routes_answer_every_body_and_refusals_leave_nothing(
    fuzz_gw: RunningGateway,
    http: httpx.Client,
    admin: httpx.Client,
    fuzz_key: str,
    input_file: str,
    path: str,
    data: st.DataObject,
) -> None:
    kinds = CREATE_ROUTES[path]
    body = data.draw(body_bytes(st.one_of(*(request_bodies(kind) for kind in kinds))), "body")
    body = body.replace(FILE_ID.encode(), input_file.encode())
    key = ADMIN_KEY if path.startswith("/admin") else fuzz_key
    before = state(fuzz_gw, http, admin)
    response = post(http, path, body, data.draw(headers(key)))
    assert_answer(response, path)
    after = state(fuzz_gw, http, admin)
    if response.status_code >= 400:
        assert after == before, "a refused request left something behind"
        return
    if path.startswith("/admin"):
        assert after.keys == before.keys + 1
        assert (after.newest_batch, after.newest_file) == (before.newest_batch, before.newest_file)
        return
    batch_id = json_of(response)["id"]
    assert after.newest_batch == batch_id != before.newest_batch
    drain_or_fail(fuzz_gw, http, batch_id)
    ended = json_of(http.get("/v1/batches", params={"limit": 1}))["data"][0]
    assert ended["id"] == batch_id
    assert ended["status"] in ("completed", "failed", "expired", "cancelled"), ended


@given(
    path=st.sampled_from(OTHER_ROUTES),
    body=body_bytes(any_json()),
    data=st.data(),
)
@fuzz_settings(max_examples=20)
def test_routes_without_a_json_body_answer_any_body(
    fuzz_gw: RunningGateway,
    http: httpx.Client,
    admin: httpx.Client,
    fuzz_key: str,
    path: str,
    body: bytes,
    data: st.DataObject,
) -> None:
    before = state(fuzz_gw, http, admin)
    response = post(http, path, body, data.draw(headers(fuzz_key)))
    assert_answer(response, path)
    assert response.status_code >= 400  # no such batch; an upload that is not multipart
    assert state(fuzz_gw, http, admin) == before
