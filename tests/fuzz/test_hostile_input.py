"""Input that made the gateway fail before the limits on input: nesting past orjson's
serializing limit (about 254 levels: a 500 on the sync routes and inline batches, a batch
ended with ``internal_error`` and no line), filenames outside Latin-1 or with control
characters (a 500 or a dropped connection on reading the content), multipart boundaries
past 256 characters (a dropped connection), and JSON bodies of any size (read whole). The
answer is never a 5xx, an error comes in the route's envelope, a refusal leaves nothing
behind, and a batch always ends with the bad line named.

Below those, the simulated provider's answers to mistyped fields: a 400 as OpenAI's, never
a 500 (a bug this suite found).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import RunningGateway
from tests.fuzz.drain import drain_or_fail
from tests.fuzz.envelopes import assert_answer
from tests.fuzz.strategies import nested
from tests.helpers import BOUNDARY, blobs, multipart

MESSAGES = [{"role": "user", "content": "hi"}]


def plain_failures(test: Callable[..., None]) -> Callable[..., None]:
    """Report a failure as its message alone, without pytest's source excerpts.

    On Python 3.11, building those excerpts (``ast.parse``) at the moment the gateway's
    thread formats the traceback of the 500 it just logged can fail with "AST constructor
    recursion depth mismatch", an internal error of the whole run: ast's state is shared
    between threads there. The xfail cases below fail on purpose."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            test(*args, **kwargs)
        except Exception as exc:
            pytest.fail(f"{type(exc).__name__}: {exc}", pytrace=False)

    return wrapper


DEPTHS = [255, 1000]  # past the serializer's limit, within the parser's


def deep(depth: int, kind: str) -> bytes:
    return nested(depth, kind=kind).encode()


SYNC_FIELDS: dict[str, dict[str, object]] = {
    "/v1/chat/completions": {"messages": MESSAGES},
    "/v1/embeddings": {"input": "hi"},
    "/v1/completions": {"prompt": "hi"},
    "/v1/responses": {"input": "hi"},
    "/v1/messages": {"max_tokens": 8, "messages": MESSAGES},
}


def sync_body(path: str, inner: bytes) -> bytes:
    head = orjson.dumps({"model": "fake-ok", **SYNC_FIELDS[path]})
    return head[:-1] + b',"deep":' + inner + b"}"


@pytest.fixture
def http(fuzz_gw: RunningGateway, fuzz_key: str) -> Iterator[httpx.Client]:
    """A client of the test's own: after a 500 the server closes the connection, and a
    client shared with the next test could pick it up just as it closes."""
    with httpx.Client(
        base_url=fuzz_gw.base_url, headers={"authorization": f"Bearer {fuzz_key}"}, timeout=60
    ) as client:
        yield client


def newest(http: httpx.Client) -> tuple[str | None, str | None]:
    batches = http.get("/v1/batches", params={"limit": 1}).json()["data"]
    files = http.get("/v1/files", params={"limit": 1}).json()["data"]
    return (batches[0]["id"] if batches else None, files[0]["id"] if files else None)


# -- nesting ----------------------------------------------------------------------------

SYNC_PATHS = sorted(SYNC_FIELDS)


@pytest.mark.parametrize(("depth", "kind"), [(255, "list"), (1000, "object")])
@pytest.mark.parametrize("path", SYNC_PATHS)
@plain_failures
def test_deep_sync_bodies_are_answered(
    fuzz_gw: RunningGateway, http: httpx.Client, path: str, depth: int, kind: str
) -> None:
    response = http.post(path, content=sync_body(path, deep(depth, kind)))
    assert_answer(response, path)


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("path", ["/v1/batches", "/v1/messages/batches"])
@plain_failures
def test_deep_inline_batches_are_answered_and_leave_nothing(
    fuzz_gw: RunningGateway, http: httpx.Client, path: str, depth: int
) -> None:
    params = orjson.dumps({"model": "gpt-4o", "max_tokens": 4, "messages": MESSAGES})
    params = params[:-1] + b',"deep":' + deep(depth, "list") + b"}"
    body = b'{"requests":[{"custom_id":"deep","params":' + params + b"}]}"
    before = newest(http)
    response = http.post(path, content=body)
    assert_answer(response, path)
    if response.status_code >= 400:
        assert newest(http) == before
    else:
        drain_or_fail(fuzz_gw, http, response.json()["id"], seconds=10)


@pytest.mark.parametrize("depth", DEPTHS)
@plain_failures
def test_deep_batch_metadata_and_key_bodies_are_answered(
    fuzz_gw: RunningGateway, http: httpx.Client, depth: int
) -> None:
    body = (
        b'{"input_file_id":"file-x","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"k":'
        + deep(depth, "list")
        + b"}}"
    )
    assert_answer(http.post("/v1/batches", content=body), "/v1/batches")
    key = b'{"name":"deep","models":' + deep(depth, "list") + b"}"
    admin = {"authorization": f"Bearer {fuzz_gw.admin_key}"}
    assert_answer(
        httpx.post(f"{fuzz_gw.base_url}/admin/keys", content=key, headers=admin), "/admin/keys"
    )


@pytest.mark.parametrize("depth", [300, 1000])
@plain_failures
def test_a_deep_line_ends_its_batch(gw: RunningGateway, depth: int) -> None:
    """On a gateway of its own: a batch that never ends would keep any other from draining."""
    key = gw.create_key()
    with httpx.Client(base_url=gw.base_url, headers={"authorization": f"Bearer {key}"}) as http:
        good = orjson.dumps(
            {
                "custom_id": "good",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o", "messages": MESSAGES},
            }
        )
        line = good.replace(b'"good"', b'"deep"')[:-2] + b',"deep":' + deep(depth, "list") + b"}}"
        upload = http.post(
            "/v1/files",
            files={"file": ("deep.jsonl", good + b"\n" + line + b"\n")},
            data={"purpose": "batch"},
        )
        assert upload.status_code == 200, upload.text
        created = http.post(
            "/v1/batches",
            json={
                "input_file_id": upload.json()["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
        assert created.status_code == 200, created.text
        batch_id = created.json()["id"]
        drain_or_fail(gw, http, batch_id, seconds=5)
        batch = http.get(f"/v1/batches/{batch_id}").json()
        assert batch["status"] in ("completed", "failed"), batch
        if batch["status"] == "failed":
            assert [e["line"] for e in batch["errors"]["data"]] == [2], batch


# -- lone surrogates in inline batches ----------------------------------------------------

LONE = "an inline batch is parsed by yajl, which turns an escaped lone high surrogate into '?'"
INLINE_PARAMS = (
    '{"model": "gpt-4o", "max_tokens": 4, "messages": [{"role": "user", "content": %s}]}'
)
BOTH = ("/v1/batches", "/v1/messages/batches")
SURROGATE_BODIES = {
    "low-as-requests": ('{"requests": "\\udc00"}', ()),
    "low-as-key": ('{"\\udc00": 1}', ()),
    "low-in-params": (
        '{"requests": [{"custom_id": "a", "params": %s}]}' % (INLINE_PARAMS % '"\\udc00"'),
        (),
    ),
    "high-in-params": (
        '{"requests": [{"custom_id": "a", "params": %s}]}' % (INLINE_PARAMS % '"\\ud800"'),
        BOTH,
    ),
    "high-in-custom-id": (
        '{"requests": [{"custom_id": "\\ud800", "params": %s}]}' % (INLINE_PARAMS % '"hi"'),
        ("/v1/batches",),  # a message batch's custom_id pattern refuses '?' anyway
    ),
}


@pytest.mark.parametrize(
    ("body", "replaced_on"), SURROGATE_BODIES.values(), ids=SURROGATE_BODIES.keys()
)
@pytest.mark.parametrize("path", ["/v1/batches", "/v1/messages/batches"])
@plain_failures
def test_a_lone_surrogate_in_an_inline_batch_is_refused_as_json_everywhere_is(
    fuzz_gw: RunningGateway,
    http: httpx.Client,
    request: pytest.FixtureRequest,
    path: str,
    body: str,
    replaced_on: tuple[str, ...],
) -> None:
    """orjson refuses an escaped lone surrogate (sync routes, batch files); so must the
    streaming parser of inline batches. A lone low one was a 500 (fixed); a lone high one
    is still taken as '?' (reported)."""
    if path in replaced_on:
        request.applymarker(pytest.mark.xfail(reason=LONE, strict=False))
    before = newest(http)
    response = http.post(path, content=body.encode())
    assert_answer(response, path)
    assert response.status_code == 400, response.text
    assert newest(http) == before


# -- filenames --------------------------------------------------------------------------

NAMES = {
    "latin-1": "café.jsonl".encode(),
    "cjk": "日本語.jsonl".encode(),
    "emoji": "😀.jsonl".encode(),
    "rtl": "\u202egnp.jsonl".encode(),
    "tab": b"tab\tname.jsonl",
    "control": b"ctl\x01name.jsonl",
    "escape": b"esc\x1bname.jsonl",
    "delete": b"del\x7fname.jsonl",
    "backslash": b"back\\slash.jsonl",
    "percent": b"100%25.jsonl",
    "long": b"n" * 300 + b".jsonl",
}


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
@plain_failures
def test_any_filename_is_answered_on_upload_and_every_read(
    fuzz_gw: RunningGateway, fuzz_key: str, name: bytes
) -> None:
    line = (
        orjson.dumps(
            {
                "custom_id": "a",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o", "messages": MESSAGES},
            }
        )
        + b"\n"
    )
    headers = {
        "authorization": f"Bearer {fuzz_key}",
        "content-type": f"multipart/form-data; boundary={BOUNDARY}",
    }
    body = multipart(("purpose", None, b"batch"), ("file", name, line))
    with httpx.Client(
        base_url=fuzz_gw.base_url, headers={"authorization": f"Bearer {fuzz_key}"}
    ) as http:
        before = (newest(http), blobs(fuzz_gw))
        response = http.post("/v1/files", content=body, headers=headers)
        assert_answer(response, "/v1/files")
        if response.status_code >= 400:
            assert (newest(http), blobs(fuzz_gw)) == before
            return
        file_id = response.json()["id"]
        for path in (f"/v1/files/{file_id}", f"/v1/files/{file_id}/content", "/v1/files"):
            assert_answer(http.get(path), path)


# -- multipart boundaries ---------------------------------------------------------------


@pytest.mark.parametrize("length", [70, 256, 257, 300, 4000])
@plain_failures
def test_any_boundary_length_is_answered(
    fuzz_gw: RunningGateway, fuzz_key: str, length: int
) -> None:
    boundary = "b" * length
    body = multipart(("purpose", None, b"batch"), ("file", "x.jsonl", b"{}\n"))
    body = body.replace(BOUNDARY.encode(), boundary.encode())
    headers = {
        "authorization": f"Bearer {fuzz_key}",
        "content-type": f"multipart/form-data; boundary={boundary}",
    }
    with httpx.Client(
        base_url=fuzz_gw.base_url, headers={"authorization": f"Bearer {fuzz_key}"}
    ) as http:
        before = (newest(http), blobs(fuzz_gw))
        response = http.post("/v1/files", content=body, headers=headers)
        assert_answer(response, "/v1/files")
        if response.status_code >= 400:
            assert (newest(http), blobs(fuzz_gw)) == before


# -- body sizes -------------------------------------------------------------------------

BIG = 40 * 1024 * 1024  # past any sensible limit for one synchronous request


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/admin/keys"])
@plain_failures
def test_a_huge_json_body_is_refused_as_too_large(
    fuzz_gw: RunningGateway, fuzz_key: str, path: str
) -> None:
    text = "x" * BIG
    body = orjson.dumps(
        {
            "model": "no-such-model",
            "max_tokens": 8,
            "name": "big",
            "messages": [{"role": "user", "content": text}],
        }
    )
    key = fuzz_gw.admin_key if path.startswith("/admin") else fuzz_key
    response = httpx.post(
        f"{fuzz_gw.base_url}{path}",
        content=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert_answer(response, path)
    assert response.status_code == 413, response.text[:300]


# -- the simulated provider ---------------------------------------

MISTYPED = {
    "chat-max_tokens": ("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": "5"}),
    "chat-max_completion_tokens": (
        "/v1/chat/completions",
        {"messages": MESSAGES, "max_completion_tokens": [1]},
    ),
    "chat-messages": ("/v1/chat/completions", {"messages": 5}),
    "completions-max_tokens": ("/v1/completions", {"prompt": "hi", "max_tokens": "5"}),
    "completions-prompt": ("/v1/completions", {"prompt": 5}),
    "embeddings-dimensions": ("/v1/embeddings", {"input": "hi", "dimensions": "8"}),
    "embeddings-float-dimensions": ("/v1/embeddings", {"input": "hi", "dimensions": 1.5}),
    "responses-max_output_tokens": ("/v1/responses", {"input": "hi", "max_output_tokens": "5"}),
}


@pytest.mark.parametrize(("path", "fields"), MISTYPED.values(), ids=MISTYPED.keys())
@plain_failures
def test_the_simulated_provider_answers_mistyped_fields(
    fuzz_gw: RunningGateway, http: httpx.Client, path: str, fields: dict[str, object]
) -> None:
    response = http.post(path, content=orjson.dumps({"model": "gpt-4o", **fields}))
    assert_answer(response, path)
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("stream_options", ['"x"', "5", "[1]"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
@plain_failures
def test_a_stream_that_breaks_ends_with_an_error_event(
    http: httpx.Client, path: str, stream_options: str
) -> None:
    """The simulated provider breaks half-way through a chat stream on a ``stream_options``
    that is not an object; the client must still get a whole answer: a refusal, or a
    stream that ends with an error event (fixed in the relay)."""
    body = orjson.dumps({"model": "gpt-4o", "max_tokens": 8, "messages": MESSAGES, "stream": True})
    body = body[:-1] + b',"stream_options":' + stream_options.encode() + b"}"
    response = http.post(path, content=body)  # a stream cut off raises here
    assert_answer(response, path)
    if response.status_code == 200:
        events = [block for block in response.text.split("\n\n") if block.strip()]
        last = events[-1]
        assert "[DONE]" in last or '"error"' in last or "message_stop" in last, last
