"""Providers that refuse every call, in every way the fake upstream knows: 401 and 400
answers quoting the credential they got, 403, an answer echoing the credentials, and 429s
with any ``Retry-After`` (none, a word, ``1e400``, ``inf``, ``nan``, negative, a day, an
HTTP date ahead or past).

On the sync routes the client gets an error in the route's envelope (a 502/503/504 at most,
never a 500), a 429 carries a ``Retry-After`` of whole seconds, and neither the provider's
key nor the client's own ever comes back. A batch of such lines still ends, every line in
its error file, with no key in it either.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import RunningGateway
from tests.fuzz.conftest import UPSTREAM_FAILURES, UPSTREAM_KEY, json_of
from tests.fuzz.drain import drain_or_fail
from tests.fuzz.envelopes import assert_answer

MESSAGES = [{"role": "user", "content": "hi"}]
BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"messages": MESSAGES},
    "/v1/embeddings": {"input": "hi"},
    "/v1/completions": {"prompt": "hi"},
    "/v1/responses": {"input": "hi"},
    "/v1/messages": {"max_tokens": 8, "messages": MESSAGES},
}
STREAMING = {"/v1/chat/completions", "/v1/messages"}
AUTH_HEADERS = ["authorization", "x-api-key", "api-key"]


def assert_no_secret(response: httpx.Response, client_key: str) -> None:
    seen = response.text + repr(dict(response.headers))
    assert UPSTREAM_KEY not in seen, "the provider's key reached the client"
    assert client_key not in seen, "the client's key came back"


@pytest.mark.parametrize("path", sorted(BODIES))
def test_a_failing_provider_is_an_error_in_the_route_envelope(
    fuzz_gw: RunningGateway, fuzz_key: str, path: str
) -> None:
    """Every failing model, streamed and not, the key in each header in turn."""
    streams = [False, True] if path in STREAMING else [False]
    cases = [(model, stream) for model in UPSTREAM_FAILURES for stream in streams]
    with httpx.Client(base_url=fuzz_gw.base_url, timeout=30) as client:
        for number, (model, stream) in enumerate(cases):
            body = {"model": model, **BODIES[path], **({"stream": True} if stream else {})}
            auth = AUTH_HEADERS[number % len(AUTH_HEADERS)]
            value = f"Bearer {fuzz_key}" if auth == "authorization" else fuzz_key
            response = client.post(path, content=orjson.dumps(body), headers={auth: value})
            try:
                check(response, path, model, stream, fuzz_key)
            except AssertionError as exc:
                raise AssertionError(f"POST {path} {body} ({auth}): {exc}") from exc


def check(response: httpx.Response, path: str, model: str, stream: bool, key: str) -> None:
    assert_answer(response, path, upstream_failed=True)
    assert_no_secret(response, key)
    if response.status_code == 429:
        retry_after = response.headers.get("retry-after", "")
        assert retry_after.isdigit() and int(retry_after) >= 1, retry_after
    elif model != "fake-echo-credentials":
        assert response.status_code >= 400 or stream, response.text[:300]


def test_a_batch_on_failing_providers_ends_and_keeps_the_keys_out(
    fuzz_gw: RunningGateway, http: httpx.Client, fuzz_key: str
) -> None:
    lines = [
        {
            "custom_id": f"line-{number}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, "messages": MESSAGES},
        }
        for number, model in enumerate(UPSTREAM_FAILURES)
    ]
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    upload = http.post(
        "/v1/files", files={"file": ("failing.jsonl", data)}, data={"purpose": "batch"}
    )
    file_id = json_of(upload)["id"]
    created = http.post(
        "/v1/batches",
        json={
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    batch_id = json_of(created)["id"]
    drain_or_fail(fuzz_gw, http, batch_id)
    batch = json_of(http.get(f"/v1/batches/{batch_id}"))
    assert batch["status"] == "completed", batch
    counts = batch["request_counts"]
    assert counts["total"] == len(lines)
    # the credential-echoing answer succeeds (masked); every other line fails
    assert counts["failed"] >= len(lines) - 1, counts
    for file_key in ("output_file_id", "error_file_id"):
        if batch[file_key] is None:
            continue
        content = http.get(f"/v1/files/{batch[file_key]}/content")
        assert content.status_code == 200
        assert UPSTREAM_KEY.encode() not in content.content
        assert fuzz_key.encode() not in content.content
