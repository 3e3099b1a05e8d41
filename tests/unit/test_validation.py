"""Unit tests of ``batchway.core.validation``: line-by-line checks of a batch input file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from batchway.config import BatchLimits, Config
from batchway.core import validation
from batchway.core.endpoints import BATCH_ENDPOINTS, Endpoint
from batchway.core.models import BatchError, NewItem, Principal
from batchway.core.routing import Router
from batchway.core.validation import (
    MAX_CUSTOM_ID_LENGTH,
    InputValidator,
    RefusedLine,
    input_lines,
    split_lines,
)

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"

CONFIG = Config.model_validate(
    {
        "providers": {
            "sim": {"kind": "simulated", "latency_ms": 0},
            "other": {"kind": "openai-compatible", "base_url": "http://upstream.invalid/v1"},
        },
        "models": {
            "team-chat": {"provider": "sim", "model": "upstream-chat"},
            "team-embed": {"provider": "other", "model": "upstream-embed"},
            "secret-model": {"provider": "sim", "model": "upstream-secret"},
        },
    }
)
ROUTER = Router(CONFIG)
# configured, but this key may not use "secret-model"
PRINCIPAL = Principal(
    key_id="key_test", name="tester", models=frozenset({"team-chat", "team-embed"})
)
LIMITS = BatchLimits(max_batch_lines=5, max_reported_errors=3)


def request(custom_id: Any = "req-1", **overrides: Any) -> dict[str, Any]:
    """A good chat request line (as a dict); ``overrides`` replace or add top-level keys."""
    line: dict[str, Any] = {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": "team-chat", "messages": [{"role": "user", "content": "hi"}]},
    }
    line.update(overrides)
    return line


def body(**changes: Any) -> dict[str, Any]:
    """A good chat body with ``changes`` applied (a value of ``...`` removes the key)."""
    result: dict[str, Any] = {"model": "team-chat", "messages": [{"role": "user", "content": "x"}]}
    for key, value in changes.items():
        if value is ...:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def raw(line: Any) -> bytes:
    return json.dumps(line).encode()


def make_validator(endpoint: str = CHAT, limits: BatchLimits = LIMITS) -> InputValidator:
    return InputValidator(endpoint=endpoint, router=ROUTER, principal=PRINCIPAL, limits=limits)


def validate(
    lines: list[bytes | RefusedLine], endpoint: str = CHAT, limits: BatchLimits = LIMITS
) -> tuple[InputValidator, list[NewItem | None]]:
    """Feed ``lines`` (numbered from 1) to a new validator, then call ``finish()``."""
    validator = make_validator(endpoint, limits)
    items = [validator.check(number, line) for number, line in enumerate(lines, start=1)]
    validator.finish()
    return validator, items


def summary(errors: list[BatchError]) -> list[tuple[str, int | None, str | None]]:
    return [(e.code, e.line, e.param) for e in errors]


async def stream(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


# --- one bad line after a good one: its code, 1-based line number and param --------------

BAD_LINES = [
    pytest.param(b'{"custom_id": "a", "method": ', "invalid_json_line", None, id="truncated-json"),
    pytest.param(b"not json at all", "invalid_json_line", None, id="garbage"),
    pytest.param(b"{'custom_id': 'a'}", "invalid_json_line", None, id="single-quotes"),
    pytest.param(b'{"custom_id": "caf\xe9"}', "invalid_json_line", None, id="latin-1-bytes"),
    pytest.param(b"\xff\xfe{}", "invalid_json_line", None, id="utf-16-bom"),
    pytest.param(b"[1, 2]", "invalid_request", None, id="array"),
    pytest.param(b'"a string"', "invalid_request", None, id="string"),
    pytest.param(b"42", "invalid_request", None, id="number"),
    pytest.param(b"null", "invalid_request", None, id="null"),
    pytest.param(
        raw({k: v for k, v in request().items() if k != "custom_id"}),
        "invalid_request",
        "custom_id",
        id="custom-id-missing",
    ),
    pytest.param(raw(request("")), "invalid_request", "custom_id", id="custom-id-empty"),
    pytest.param(raw(request(7)), "invalid_request", "custom_id", id="custom-id-number"),
    pytest.param(raw(request(None)), "invalid_request", "custom_id", id="custom-id-null"),
    pytest.param(
        raw(request("x" * (MAX_CUSTOM_ID_LENGTH + 1))),
        "invalid_request",
        "custom_id",
        id="custom-id-too-long",
    ),
    pytest.param(raw(request(method="GET")), "invalid_request", "method", id="method-get"),
    pytest.param(raw(request(method="post")), "invalid_request", "method", id="method-lower"),
    pytest.param(raw(request(method=None)), "invalid_request", "method", id="method-null"),
    pytest.param(raw(request(url=EMBEDDINGS)), "url_mismatch", "url", id="url-other-endpoint"),
    pytest.param(raw(request(url="/embeddings")), "url_mismatch", "url", id="url-azure-other"),
    pytest.param(raw(request(url="/v1/models")), "url_mismatch", "url", id="url-unsupported"),
    pytest.param(raw(request(url="chat/completions")), "url_mismatch", "url", id="url-relative"),
    pytest.param(raw(request(url=None)), "url_mismatch", "url", id="url-null"),
    pytest.param(raw(request(url=["/v1/chat/completions"])), "url_mismatch", "url", id="url-list"),
    pytest.param(raw(request(body="{}")), "invalid_request", "body", id="body-string"),
    pytest.param(raw(request(body=[body()])), "invalid_request", "body", id="body-list"),
    pytest.param(raw(request(body=None)), "invalid_request", "body", id="body-null"),
    pytest.param(
        raw(request(body=body(model=...))), "invalid_request", "body.model", id="model-missing"
    ),
    pytest.param(
        raw(request(body=body(model=""))), "invalid_request", "body.model", id="model-empty"
    ),
    pytest.param(
        raw(request(body=body(model=4))), "invalid_request", "body.model", id="model-number"
    ),
    pytest.param(
        raw(request(body=body(model="gpt-unknown"))),
        "model_not_found",
        "body.model",
        id="model-unknown",
    ),
    pytest.param(
        raw(request(body=body(model="upstream-chat"))),
        "model_not_found",
        "body.model",
        id="model-upstream-name",
    ),
    pytest.param(
        raw(request(body=body(model="secret-model"))),
        "model_not_found",
        "body.model",
        id="model-not-allowed-for-key",
    ),
    pytest.param(
        raw(request(body=body(stream=True))), "invalid_request", "body.stream", id="stream-true"
    ),
]


@pytest.mark.parametrize(("bad", "code", "param"), BAD_LINES)
def test_bad_line_is_reported_with_its_code_line_and_param(
    bad: bytes, code: str, param: str | None
) -> None:
    validator, items = validate([raw(request("good")), bad])

    assert summary(validator.errors) == [(code, 2, param)]
    assert validator.errors[0].message
    assert validator.error_count == 1
    assert not validator.ok
    assert items[1] is None
    assert isinstance(items[0], NewItem)


def test_non_utf8_line_says_so() -> None:
    validator, _ = validate([b'{"custom_id": "\xff"}'])

    assert summary(validator.errors) == [("invalid_json_line", 1, None)]
    assert "UTF-8" in validator.errors[0].message


def test_invalid_json_message_is_not_the_utf8_one() -> None:
    validator, _ = validate([b"{oops"])

    assert "JSON" in validator.errors[0].message
    assert "UTF-8" not in validator.errors[0].message


def test_unknown_and_forbidden_models_get_the_same_message_shape() -> None:
    """A key must not learn which models exist but are closed to it."""
    validator, _ = validate(
        [
            raw(request("a", body=body(model="no-such-model"))),
            raw(request("b", body=body(model="secret-model"))),
        ]
    )

    unknown, forbidden = validator.errors
    assert unknown.code == forbidden.code == "model_not_found"
    assert unknown.message.replace("no-such-model", "M") == forbidden.message.replace(
        "secret-model", "M"
    )


def test_a_key_without_model_restrictions_may_use_every_configured_model() -> None:
    validator = InputValidator(
        endpoint=CHAT,
        router=ROUTER,
        principal=Principal(key_id="key_all", name="all"),
        limits=LIMITS,
    )

    item = validator.check(1, raw(request(body=body(model="secret-model"))))

    assert item is not None
    assert item.model == "secret-model"
    assert validator.ok


@pytest.mark.parametrize(
    "stream_value",
    [pytest.param(False, id="false"), pytest.param(None, id="null")],
)
def test_stream_false_or_null_is_accepted(stream_value: Any) -> None:
    validator, items = validate([raw(request(body=body(stream=stream_value)))])

    assert validator.ok
    assert items[0] is not None
    assert json.loads(items[0].body)["stream"] == stream_value


def test_custom_id_of_the_maximum_length_is_accepted() -> None:
    custom_id = "x" * MAX_CUSTOM_ID_LENGTH
    validator, items = validate([raw(request(custom_id))])

    assert validator.ok
    assert items[0] is not None
    assert items[0].custom_id == custom_id


# --- url and endpoint ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        pytest.param(CHAT, "/v1/chat/completions", id="chat-openai"),
        pytest.param(CHAT, "/chat/completions", id="chat-azure"),
        pytest.param(EMBEDDINGS, "/embeddings", id="embeddings-azure"),
        pytest.param("/v1/completions", "/completions", id="completions-azure"),
        pytest.param("/v1/responses", "/v1/responses", id="responses"),
    ],
)
def test_url_matching_the_endpoint_is_accepted(endpoint: str, url: str) -> None:
    line = request(url=url, body=body(model="team-embed", input="hello"))
    validator, items = validate([raw(line)], endpoint=endpoint)

    assert validator.ok, validator.errors
    assert items[0] is not None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("/v1/chat/completions", "/v1/chat/completions", id="chat"),
        pytest.param("/chat/completions", "/v1/chat/completions", id="chat-azure"),
        pytest.param("/v1/embeddings", "/v1/embeddings", id="embeddings"),
        pytest.param("/embeddings", "/v1/embeddings", id="embeddings-azure"),
        pytest.param("/v1/completions", "/v1/completions", id="completions"),
        pytest.param("/completions", "/v1/completions", id="completions-azure"),
        pytest.param("/v1/responses", "/v1/responses", id="responses"),
        pytest.param("/responses", "/v1/responses", id="responses-azure"),
        pytest.param("/v1/models", None, id="unsupported"),
        pytest.param("/v1/messages", "/v1/messages", id="anthropic-messages"),
        pytest.param("chat/completions", None, id="no-leading-slash"),
        pytest.param("/v1/chat/completions/", None, id="trailing-slash"),
        pytest.param("/v1/v1/chat/completions", None, id="doubled-prefix"),
        pytest.param("https://api.openai.com/v1/chat/completions", None, id="absolute-url"),
        pytest.param("", None, id="empty"),
    ],
)
def test_a_line_url_names_an_endpoint(url: str, expected: str | None) -> None:
    assert Endpoint.parse(url) == expected


def test_every_batch_endpoint_parses_to_itself() -> None:
    assert [Endpoint.parse(e) for e in BATCH_ENDPOINTS] == list(BATCH_ENDPOINTS)


def test_batch_endpoints_are_listed_in_the_order_error_messages_give() -> None:
    assert ", ".join(BATCH_ENDPOINTS) == (
        "/v1/chat/completions, /v1/embeddings, /v1/completions, /v1/responses, /v1/messages"
    )


@pytest.mark.parametrize("endpoint", [CHAT, Endpoint.CHAT], ids=["str", "endpoint"])
def test_a_url_mismatch_names_the_batch_endpoint_by_its_path(endpoint: str) -> None:
    validator = make_validator(endpoint)

    assert validator.check(1, raw(request(url=EMBEDDINGS))) is None

    assert validator.errors[0].message == (
        "The url '/v1/embeddings' does not match the batch endpoint '/v1/chat/completions'."
    )


# --- whole files: duplicates, limits, blank lines, BOM, CRLF --------------------------------


def test_duplicate_custom_id_is_reported_on_the_second_occurrence() -> None:
    validator, items = validate([raw(request("a")), raw(request("b")), raw(request("a"))])

    assert summary(validator.errors) == [("duplicate_custom_id", 3, "custom_id")]
    assert "'a'" in validator.errors[0].message
    assert items[0] is not None and items[1] is not None and items[2] is None


def test_custom_id_of_a_line_rejected_later_still_counts_as_seen() -> None:
    validator, _ = validate([raw(request("a", method="GET")), raw(request("a"))])

    assert summary(validator.errors) == [
        ("invalid_request", 1, "method"),
        ("duplicate_custom_id", 2, "custom_id"),
    ]


def test_too_many_lines_is_reported_once_on_the_first_line_over() -> None:
    limits = BatchLimits(max_batch_lines=3, max_reported_errors=10)
    lines = [raw(request(f"r{i}")) for i in range(7)]

    validator, items = validate(lines, limits=limits)

    assert summary(validator.errors) == [("too_many_tasks", 4, None)]
    assert validator.error_count == 1
    assert "3" in validator.errors[0].message
    assert [item is not None for item in items] == [True, True, True] + [False] * 4
    assert validator.requests == 7


def test_exactly_the_line_limit_is_fine() -> None:
    limits = BatchLimits(max_batch_lines=3)
    validator, items = validate([raw(request(f"r{i}")) for i in range(3)], limits=limits)

    assert validator.ok
    assert all(item is not None for item in items)


def test_lines_over_the_limit_are_not_parsed() -> None:
    """Garbage past the limit adds no errors: the file is already too big."""
    limits = BatchLimits(max_batch_lines=1, max_reported_errors=10)
    validator, _ = validate([raw(request("a")), raw(request("b")), b"{garbage"], limits=limits)

    assert summary(validator.errors) == [("too_many_tasks", 2, None)]


@pytest.mark.parametrize(
    ("inputs", "bad_line"),
    [
        pytest.param(["a", ["b", "c"], "d"], None, id="at-the-limit"),
        pytest.param([["a", "b", "c"], ["d", "e"]], 2, id="list-crosses-limit"),
        pytest.param(["a", "b", "c", "d", "e"], 5, id="strings-cross-limit"),
    ],
)
def test_embedding_inputs_are_counted_across_lines(
    monkeypatch: pytest.MonkeyPatch, inputs: list[Any], bad_line: int | None
) -> None:
    monkeypatch.setattr(validation, "MAX_EMBEDDING_INPUTS", 4)
    lines = [
        raw(request(f"e{i}", url=EMBEDDINGS, body={"model": "team-embed", "input": given}))
        for i, given in enumerate(inputs)
    ]

    validator, _ = validate(lines, endpoint=EMBEDDINGS)

    expected = [] if bad_line is None else [("too_many_tasks", bad_line, None)]
    assert summary(validator.errors) == expected


def test_embedding_input_limit_is_fifty_thousand() -> None:
    line = request(url=EMBEDDINGS, body={"model": "team-embed", "input": ["a"] * 50_001})

    validator, _ = validate([raw(line)], endpoint=EMBEDDINGS)

    assert summary(validator.errors) == [("too_many_tasks", 1, None)]
    assert "embedding" in validator.errors[0].message


def test_embedding_inputs_are_not_limited_on_other_endpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(validation, "MAX_EMBEDDING_INPUTS", 1)
    line = request(body=body(input=["a", "b", "c"]))

    validator, _ = validate([raw(line)])

    assert validator.ok


def test_a_token_array_is_one_embedding_input(monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenAI: input is a string, an array of tokens, an array of strings or an array of
    # token arrays; [1, 2, 3, 4, 5] is ONE input of five tokens.
    monkeypatch.setattr(validation, "MAX_EMBEDDING_INPUTS", 4)
    line = request(url=EMBEDDINGS, body={"model": "team-embed", "input": [1, 2, 3, 4, 5]})

    validator, _ = validate([raw(line)], endpoint=EMBEDDINGS)

    assert validator.ok, validator.errors


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([], id="no-lines"),
        pytest.param([b""], id="one-blank-line"),
        pytest.param([b"", b"  ", b"\r"], id="only-blank-lines"),
    ],
)
def test_a_file_without_requests_is_empty_file(lines: list[bytes]) -> None:
    validator, _ = validate(lines)

    assert summary(validator.errors) == [("empty_file", None, None)]
    assert validator.requests == 0


def test_finish_adds_nothing_when_there_were_requests() -> None:
    validator, _ = validate([raw(request())])

    assert validator.errors == []
    assert validator.ok


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param([raw(request("a")), b""], [], id="one-trailing-blank"),
        pytest.param([raw(request("a")), b"", b"", b" "], [], id="several-trailing-blanks"),
        pytest.param(
            [raw(request("a")), b"", raw(request("b"))],
            [("invalid_json_line", 2, None)],
            id="blank-in-the-middle",
        ),
        pytest.param(
            [raw(request("a")), b" \t ", raw(request("b"))],
            [("invalid_json_line", 2, None)],
            id="whitespace-in-the-middle",
        ),
        pytest.param(
            [raw(request("a")), b"", b"", raw(request("b"))],
            [("invalid_json_line", 2, None)],
            id="run-of-blanks-reported-once-at-its-start",
        ),
        pytest.param(
            [b"", raw(request("a"))],
            [("invalid_json_line", 1, None)],
            id="leading-blank",
        ),
        pytest.param(
            [raw(request("a")), b"", raw(request("b")), b"", raw(request("c")), b""],
            [("invalid_json_line", 2, None), ("invalid_json_line", 4, None)],
            id="two-gaps-then-trailing",
        ),
    ],
)
def test_blank_lines(lines: list[bytes], expected: list[tuple[str, int, None]]) -> None:
    validator, _ = validate(lines, limits=BatchLimits(max_reported_errors=10))

    assert summary(validator.errors) == expected


def test_blank_lines_are_not_requests() -> None:
    validator, _ = validate([raw(request("a")), b"", b""])

    assert validator.requests == 1


def test_leading_bom_is_accepted() -> None:
    validator, items = validate([b"\xef\xbb\xbf" + raw(request("a")), raw(request("b"))])

    assert validator.ok, validator.errors
    assert [item.custom_id for item in items if item] == ["a", "b"]


def test_bom_is_only_skipped_on_the_first_line() -> None:
    validator, _ = validate([raw(request("a")), b"\xef\xbb\xbf" + raw(request("b"))])

    assert summary(validator.errors) == [("invalid_json_line", 2, None)]


async def test_crlf_file_is_accepted() -> None:
    data = b"\xef\xbb\xbf" + b"".join(raw(request(f"r{i}")) + b"\r\n" for i in range(3))
    validator = make_validator()
    items = []
    number = 0
    async for line in split_lines(stream([data[:50], data[50:51], data[51:]])):
        number += 1
        items.append(validator.check(number, line))
    validator.finish()

    assert validator.ok, validator.errors
    assert [item.custom_id for item in items if item] == ["r0", "r1", "r2"]
    assert all(not item.body.endswith(b"\r") for item in items if item)


def test_reported_errors_are_capped_but_all_are_counted() -> None:
    limits = BatchLimits(max_batch_lines=100, max_reported_errors=3)
    lines = [raw(request(f"r{i}", method="GET")) for i in range(8)]

    validator, _ = validate(lines, limits=limits)

    assert [e.line for e in validator.errors] == [1, 2, 3]
    assert validator.error_count == 8
    assert not validator.ok


def test_empty_file_error_respects_the_cap_too() -> None:
    limits = BatchLimits(max_reported_errors=0)
    validator, _ = validate([], limits=limits)

    assert validator.errors == []
    assert validator.error_count == 1
    assert not validator.ok


# --- a good line ---------------------------------------------------------------------------


def test_good_line_becomes_a_new_item_with_the_upstream_model() -> None:
    sent = {
        "model": "team-chat",
        "messages": [{"role": "user", "content": 'héllo ✓ \n quoted "x"'}],
        "temperature": 0.7,
        "top_p": 1e-05,
        "frequency_penalty": -1.5,
        "max_tokens": 64,
        "logit_bias": {"50256": -100},
        "stop": None,
        "response_format": {"type": "json_object"},
        "x_vendor_extension": {"nested": [1, 2.5, None, True, {"deep": "value"}]},
        "tools": [],
    }
    line = {"custom_id": "task-1", "method": "POST", "url": "/chat/completions", "body": sent}

    validator, items = validate([raw(request("first")), raw(line)])
    item = items[1]

    assert validator.ok
    assert item is not None
    assert item == NewItem(
        line=2, custom_id="task-1", model="team-chat", provider="sim", body=item.body
    )
    forwarded = json.loads(item.body)
    assert forwarded == {**sent, "model": "upstream-chat"}
    assert list(forwarded) == list(sent)  # key order kept, model rewritten in place
    assert isinstance(forwarded["temperature"], float)
    assert isinstance(forwarded["max_tokens"], int)


def test_good_lines_update_models_and_requests() -> None:
    lines = [
        raw(request("a")),
        raw(request("b", body=body(model="team-embed"))),
        raw(request("c")),
    ]

    validator, items = validate(lines)

    assert validator.models == {"team-chat", "team-embed"}
    assert validator.requests == 3
    assert [item.provider for item in items if item] == ["sim", "other", "sim"]
    assert [item.line for item in items if item] == [1, 2, 3]


def test_rejected_lines_add_no_model() -> None:
    validator, _ = validate([raw(request("a", body=body(stream=True)))])

    assert validator.models == set()


# --- split_lines -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param([], [], id="no-chunks"),
        pytest.param([b""], [], id="one-empty-chunk"),
        pytest.param([b"a\nb\n"], [b"a", b"b"], id="one-chunk"),
        pytest.param([b"a\nb"], [b"a", b"b"], id="no-trailing-newline"),
        pytest.param([b"ab", b"c\nd", b"e\n"], [b"abc", b"de"], id="split-mid-line"),
        pytest.param([b"a", b"\n", b"b", b"\n"], [b"a", b"b"], id="newline-alone"),
        pytest.param([b"", b"a\n", b"", b"", b"b"], [b"a", b"b"], id="empty-chunks"),
        pytest.param([b"a\n\nb\n"], [b"a", b"", b"b"], id="blank-line-kept"),
        pytest.param([b"a\n", b"\n"], [b"a", b""], id="trailing-blank-line"),
        pytest.param([b"\n"], [b""], id="only-newline"),
        pytest.param([b"a\r\n", b"b\r", b"\n"], [b"a\r", b"b\r"], id="crlf-kept-for-check"),
        pytest.param([b"\xe2\x9c", b"\x93\n"], [b"\xe2\x9c\x93"], id="utf8-char-split"),
    ],
)
async def test_split_lines(chunks: list[bytes], expected: list[bytes]) -> None:
    assert [line async for line in split_lines(stream(chunks))] == expected


async def test_split_lines_byte_by_byte_equals_one_chunk() -> None:
    data = b'{"a": 1}\n\n{"b": "two"}\r\nlast'
    one_by_one = [data[i : i + 1] for i in range(len(data))]

    assert [line async for line in split_lines(stream(one_by_one))] == data.split(b"\n")


# --- input_lines: lines held to a size as they pass -----------------------------------------

TOO_LARGE = RefusedLine("line_too_large", "This line is longer than the 4 bytes allowed.")


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param([b"abcd\nabcde\n"], [b"abcd", TOO_LARGE], id="at-and-over"),
        pytest.param([b"ab", b"cd", b"e", b"\nok\n"], [TOO_LARGE, b"ok"], id="over-across-chunks"),
        pytest.param([b"abcdefgh" * 1000, b"ij\nok"], [TOO_LARGE, b"ok"], id="huge-then-last"),
        pytest.param([b"ok\nabcdefgh"], [b"ok", TOO_LARGE], id="over-at-the-end"),
        pytest.param([b"ab", b"cd\n", b"\n"], [b"abcd", b""], id="exactly-at-the-limit"),
    ],
)
async def test_input_lines_refuse_a_long_line_without_holding_it(
    chunks: list[bytes], expected: list[bytes | RefusedLine]
) -> None:
    assert [line async for line in input_lines(stream(chunks), 4)] == expected


async def test_a_refused_line_is_reported_on_its_line_and_counts_as_a_request() -> None:
    validator, items = validate([raw(request("a")), TOO_LARGE, raw(request("b"))])
    assert summary(validator.errors) == [("line_too_large", 2, None)]
    assert validator.requests == 3
    assert items[0] is not None and items[2] is not None


def test_a_line_over_the_line_limit_is_refused_even_when_read_whole() -> None:
    limits = BatchLimits(max_batch_line_bytes=50)
    validator, _ = validate([raw(request("a"))], limits=limits)
    assert summary(validator.errors) == [("line_too_large", 1, None)]


@pytest.mark.parametrize("levels", [5, 6, 300, 1100], ids=["at", "one-over", "300", "1100"])
def test_a_line_nested_past_the_depth_limit_is_json_too_deep(levels: int) -> None:
    limits = BatchLimits(max_json_depth=5)
    # the line itself is one level, body.messages two more, and the rest in "extra"
    extra = b"[" * (levels - 2) + b"]" * (levels - 2)
    line = raw(request("a")).replace(b'"body": {', b'"body": {"extra": ' + extra + b", ", 1)
    validator, _ = validate([line], limits=limits)
    if levels <= 5:
        assert validator.ok, validator.errors
    else:
        assert summary(validator.errors) == [("json_too_deep", 1, None)]
        assert "more than 5 levels" in validator.errors[0].message
