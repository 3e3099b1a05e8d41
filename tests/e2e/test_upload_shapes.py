"""Filenames in any script, and multipart bodies of every odd shape: a name is stored as
given and offered back with an RFC 6266 Content-Disposition; a body the gateway cannot
take is a 4xx in the OpenAI envelope that leaves nothing stored."""

from __future__ import annotations

import io
import json
import re
from urllib.parse import unquote

import httpx
import openai
import pytest

from tests.conftest import RunningGateway
from tests.e2e.test_bad_input import assert_error
from tests.helpers import BOUNDARY, blobs, chat_line, jsonl, multipart, post_multipart, unique

GOOD = jsonl([chat_line("a")])


def disposition_name(header: str) -> tuple[str, str]:
    """The ASCII fallback and the exact name of a ``Content-Disposition`` header."""
    assert header.startswith('attachment; filename="'), header
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    assert "filename*=UTF-8''" in header, header
    exact = unquote(header.split("filename*=UTF-8''", 1)[1], errors="strict")
    assert fallback.isascii() and '"' not in fallback and "%" not in fallback
    return fallback, exact


@pytest.mark.parametrize(
    "name",
    ["日本.jsonl", "naïve résumé.jsonl", 'quote"and\\slash.jsonl', "100% sure;x=1.jsonl"],
    ids=["cjk", "latin-1", "quote-backslash", "percent-semicolon"],
)
def test_a_filename_in_any_script_round_trips_through_the_sdk(gw: RunningGateway, name):
    client = gw.client()
    file = client.files.create(file=(name, io.BytesIO(GOOD)), purpose="batch")
    # httpx sends a quote as %22 (the HTML form encoding); the gateway keeps what it got
    sent = name.replace('"', "%22")
    assert file.filename == sent
    assert client.files.retrieve(file.id).filename == sent
    response = client.files.with_raw_response.content(file.id)
    assert response.http_response.content == GOOD
    fallback, exact = disposition_name(response.headers["content-disposition"])
    assert exact == sent
    assert len(fallback) == len(sent)


@pytest.mark.parametrize("char", ["\x1b", "\x7f"], ids=["escape", "delete"])
def test_a_control_character_in_a_filename_is_400_through_the_sdk(gw: RunningGateway, char):
    """The SDK (httpx) percent-encodes most control characters itself, but not these."""
    client = gw.client()
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=(f"a{char}b.jsonl", io.BytesIO(GOOD)), purpose="batch")
    assert refused.value.param == "file"
    assert "control characters" in refused.value.message
    assert client.files.list().data == []
    assert blobs(gw) == []


@pytest.mark.parametrize(
    "name",
    [b"a\x01b.jsonl", b"a\x00b.jsonl", b"tab\there.jsonl", "c1\u0085.jsonl".encode()],
    ids=["soh", "nul", "tab", "c1-next-line"],
)
def test_a_control_character_in_a_raw_filename_is_400(gw: RunningGateway, name):
    key = gw.create_key()
    body = multipart(("purpose", None, b"batch"), ("file", name, GOOD))
    assert_error(post_multipart(gw, key, body), 400, param="file", match="control characters")
    assert gw.client(key).files.list().data == []
    assert blobs(gw) == []


def test_a_filename_over_the_length_limit_is_400(make_gateway):
    gw = make_gateway(limits={"max_filename_length": 20})
    client = gw.client()
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("x" * 15 + ".jsonl", io.BytesIO(GOOD)), purpose="batch")
    assert "longer than 20 characters" in refused.value.message
    assert client.files.create(file=("x" * 14 + ".jsonl", io.BytesIO(GOOD)), purpose="batch")


def test_inline_results_and_the_logs_csv_use_the_same_header(gw: RunningGateway):
    key = gw.create_key()
    body = {
        "requests": [
            {
                "custom_id": "a",
                "params": {
                    "model": "fake-ok",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": unique()}],
                },
            }
        ]
    }
    auth = {"authorization": f"Bearer {key}"}
    batch = httpx.post(f"{gw.url}/batches", json=body, headers=auth).json()
    gw.drain()
    results = httpx.get(f"{gw.url}/batches/{batch['id']}/results", headers=auth)
    assert results.status_code == 200, results.text
    expected = f"{batch['id']}_results.jsonl"
    assert disposition_name(results.headers["content-disposition"]) == (expected, expected)
    csv = httpx.get(
        f"{gw.base_url}/admin/logs",
        params={"format": "csv"},
        headers={"authorization": f"Bearer {gw.admin_key}"},
    )
    assert csv.status_code == 200, csv.text
    name = "batchway-logs.csv"
    assert disposition_name(csv.headers["content-disposition"]) == (name, name)


# -- malformed multipart -------------------------------------------------------------------


def raw_upload(gw: RunningGateway, key: str, body: bytes, content_type: str) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/files",
        content=body,
        headers={"authorization": f"Bearer {key}", "content-type": content_type},
    )


FORM = f"multipart/form-data; boundary={BOUNDARY}"
PART = b'Content-Disposition: form-data; name="file"; filename="a.jsonl"\r\n'


def form(*lines: bytes, boundary: bytes = BOUNDARY.encode()) -> bytes:
    """A one-file form whose file part has the header ``lines`` given."""
    purpose = b'Content-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
    return (
        b"--"
        + boundary
        + b"\r\n"
        + purpose
        + b"--"
        + boundary
        + b"\r\n"
        + b"".join(lines)
        + b"\r\n"
        + GOOD
        + b"\r\n--"
        + boundary
        + b"--\r\n"
    )


@pytest.mark.parametrize(
    ("body", "content_type", "match"),
    [
        (form(PART, boundary=b"b" * 300), "multipart/form-data; boundary=" + "b" * 300, "boundary"),
        (
            form(PART, boundary=b"b" * 257),
            'multipart/form-data; boundary="' + "b" * 257 + '"',
            "boundary",
        ),
        (form(PART), "multipart/form-data", "boundary"),
        (form(PART), "multipart/form-data; boundary=", "boundary"),
        (form(PART), "multipart/form-data; boundary=other", "malformed|incomplete|'file'"),
        (form(b"X-Long: " + b"v" * 20_000 + b"\r\n", PART), FORM, "header"),
        (form(*[f"X-{i}: v\r\n".encode() for i in range(40)], PART), FORM, "header"),
        (form(b"no colon at all\r\n", PART), FORM, "malformed"),
        (form(b": no name\r\n", PART), FORM, "malformed|'file'"),
        (form(b"Content-Disposition: form-data\r\n"), FORM, "'file'"),
        (form(b"Content-Disposition: \xff\xfe\r\n"), FORM, "'file'"),
        (
            form(b'Content-Disposition: form-data; name="file"; filename=""\r\n'),
            FORM,
            "jsonl|'file'",
        ),
        (b"--" + BOUNDARY.encode() + b"\r\n" + b"x" * 50_000, FORM, "malformed|incomplete|header"),
        (b"\r\n" * 1000, FORM, "malformed|incomplete|'file'"),
        (b"--" + BOUNDARY.encode() + b"--\r\n", FORM, "'file'"),
    ],
    ids=[
        "boundary-300",
        "quoted-boundary-257",
        "no-boundary",
        "empty-boundary",
        "wrong-boundary",
        "huge-header-line",
        "many-headers",
        "header-without-colon",
        "header-without-name",
        "no-name",
        "binary-disposition",
        "empty-filename",
        "endless-headers",
        "only-newlines",
        "no-parts",
    ],
)
def test_a_malformed_multipart_body_is_4xx_and_leaves_nothing(
    gw: RunningGateway, body, content_type, match
):
    key = gw.create_key()
    response = raw_upload(gw, key, body, content_type)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert re.search(match, error["message"]), error["message"]
    assert gw.client(key).files.list().data == []
    assert blobs(gw) == []


def test_whatever_follows_the_closing_boundary_is_not_read(gw: RunningGateway):
    key = gw.create_key()
    body = multipart(("purpose", None, b"batch"), ("file", b"a.jsonl", GOOD)) + b"x" * 100_000
    response = post_multipart(gw, key, body)
    assert response.status_code == 200, response.text
    assert json.loads(gw.client(key).files.content(response.json()["id"]).text.strip()) == (
        chat_line("a")
    )


def test_part_headers_are_held_to_the_configured_size(make_gateway):
    gw = make_gateway(limits={"max_form_header_bytes": 500})
    key = gw.create_key()
    body = form(b"X-Pad: " + b"v" * 450 + b"\r\n", PART)
    assert_error(raw_upload(gw, key, body, FORM), 400, param="file", match="500 bytes allowed")
    assert blobs(gw) == []
    assert raw_upload(gw, key, form(PART), FORM).status_code == 200
