"""Unit tests of ``batchway.dialects.openai.results``: output and error file lines and their ids."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from batchway.core.ids import item_line_id, result_file_id
from batchway.core.states import ItemState
from batchway.dialects.openai.results import NOT_RUN, result_line
from batchway.dialects.openai.wire import OpenAIBatchOutputLine

LINE_ID = item_line_id("batch_0123456789abcdef0123456789abcdef", 1)
CHAT_BODY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
ERROR_BODY = {
    "error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": None}
}


def render(**fields: Any) -> bytes:
    values: dict[str, Any] = {
        "line_id": LINE_ID,
        "custom_id": "task-1",
        "state": ItemState.SUCCEEDED,
        "status_code": None,
        "response": None,
        "request_id": None,
        "error_code": None,
        "error_message": None,
    }
    values.update(fields)
    return result_line(**values)


CASES = [
    pytest.param(
        dict(
            state=ItemState.SUCCEEDED,
            status_code=200,
            response=json.dumps(CHAT_BODY, separators=(",", ":")).encode(),
            request_id="req_abc",
        ),
        {"status_code": 200, "request_id": "req_abc", "body": CHAT_BODY},
        None,
        id="success",
    ),
    pytest.param(
        dict(
            state=ItemState.SUCCEEDED,
            status_code=200,
            response=json.dumps(CHAT_BODY).encode(),
            request_id=None,
        ),
        {"status_code": 200, "request_id": "", "body": CHAT_BODY},
        None,
        id="success-without-request-id",
    ),
    pytest.param(
        dict(
            state=ItemState.FAILED,
            status_code=400,
            response=json.dumps(ERROR_BODY).encode(),
            request_id="req_def",
        ),
        {"status_code": 400, "request_id": "req_def", "body": ERROR_BODY},
        None,
        id="http-failure",
    ),
    pytest.param(
        dict(state=ItemState.CANCELLED),
        None,
        {"code": "batch_cancelled", "message": NOT_RUN[ItemState.CANCELLED][1]},
        id="cancelled",
    ),
    pytest.param(
        dict(state=ItemState.EXPIRED),
        None,
        {"code": "batch_expired", "message": NOT_RUN[ItemState.EXPIRED][1]},
        id="expired",
    ),
    pytest.param(
        dict(
            state=ItemState.CANCELLED,
            error_code="request_timeout",
            error_message="ignored: the line never ran",
        ),
        None,
        {"code": "batch_cancelled", "message": NOT_RUN[ItemState.CANCELLED][1]},
        id="cancelled-wins-over-stored-error",
    ),
    pytest.param(
        dict(
            state=ItemState.FAILED,
            error_code="request_timeout",
            error_message="The upstream provider did not answer in time. (after 3 attempts)",
        ),
        None,
        {
            "code": "request_timeout",
            "message": "The upstream provider did not answer in time. (after 3 attempts)",
        },
        id="timeout",
    ),
    pytest.param(
        dict(state=ItemState.FAILED),
        None,
        {"code": "request_failed", "message": ""},
        id="failure-without-details",
    ),
]


@pytest.mark.parametrize(("fields", "response", "error"), CASES)
def test_result_line_is_valid_json_of_the_wire_shape(
    fields: dict[str, Any], response: dict[str, Any] | None, error: dict[str, Any] | None
) -> None:
    data = render(**fields)

    parsed = json.loads(data)
    line = OpenAIBatchOutputLine.model_validate_json(data)
    assert list(parsed) == ["id", "custom_id", "response", "error"]
    assert line.id == LINE_ID
    assert line.custom_id == "task-1"
    assert parsed["response"] == response
    assert parsed["error"] == error


@pytest.mark.parametrize(("fields", "response", "error"), CASES)
def test_result_line_ends_with_exactly_one_newline(
    fields: dict[str, Any], response: Any, error: Any
) -> None:
    data = render(**fields)

    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    assert b"\r" not in data


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(json.dumps(CHAT_BODY, indent=2).encode(), id="pretty-printed"),
        pytest.param(json.dumps(CHAT_BODY, indent=2).replace("\n", "\r\n").encode(), id="crlf"),
        pytest.param(b'{"a": 1}\n', id="trailing-newline"),
        pytest.param(b'\n\n{\n"text": "two\\nlines"\n}\n', id="escaped-newline-kept"),
    ],
)
def test_multiline_body_is_compacted_onto_one_line(response: bytes) -> None:
    data = render(status_code=200, response=response, request_id="req_1")

    assert data.count(b"\n") == 1 and data.endswith(b"\n")
    assert b"\r" not in data
    assert json.loads(data)["response"]["body"] == json.loads(response)
    OpenAIBatchOutputLine.model_validate_json(data)


def test_one_line_body_is_spliced_as_sent() -> None:
    response = b'{"b":1.10,"a":"\\u00e9"}'

    data = render(status_code=200, response=response, request_id="req_1")

    assert b',"body":' + response + b'},"error":null}\n' in data


@pytest.mark.parametrize(
    "custom_id",
    [
        pytest.param('quote " and backslash \\', id="quotes"),
        pytest.param("line\nbreak", id="newline"),
        pytest.param("naïve ✓ 日本", id="unicode"),
    ],
)
def test_custom_id_is_escaped(custom_id: str) -> None:
    data = render(custom_id=custom_id, state=ItemState.EXPIRED)

    assert data.count(b"\n") == 1
    assert OpenAIBatchOutputLine.model_validate_json(data).custom_id == custom_id


# --- ids ----------------------------------------------------------------------------------

LINE_ID_PATTERN = re.compile(r"^batch_req_[0-9a-f]{32}$")
FILE_ID_PATTERN = re.compile(r"^file-[0-9A-Za-z]{22}$")
BATCH_IDS = ["batch_0123456789abcdef0123456789abcdef", "batch_x", "msgbatch_ABC", ""]


@pytest.mark.parametrize("batch_id", BATCH_IDS)
@pytest.mark.parametrize("line", [1, 2, 50_000])
def test_item_line_id_is_stable_and_well_formed(batch_id: str, line: int) -> None:
    first = item_line_id(batch_id, line)

    assert LINE_ID_PATTERN.match(first)
    assert item_line_id(batch_id, line) == first


def test_item_line_ids_differ_by_line_and_batch() -> None:
    ids = {item_line_id(batch, line) for batch in BATCH_IDS for line in range(1, 201)}

    assert len(ids) == len(BATCH_IDS) * 200


def test_item_line_id_is_a_known_value() -> None:
    """Pinned: a result file rewritten by a later release must keep its line ids."""
    assert item_line_id("b", 1) == "batch_req_34340f0e82d75a3446150f4a916c20c1"


@pytest.mark.parametrize("batch_id", BATCH_IDS)
@pytest.mark.parametrize("kind", ["output", "error"])
def test_result_file_id_is_stable_and_well_formed(batch_id: str, kind: str) -> None:
    first = result_file_id(batch_id, kind)

    assert FILE_ID_PATTERN.match(first)
    assert result_file_id(batch_id, kind) == first


def test_result_file_ids_differ_by_kind_and_batch() -> None:
    ids = {result_file_id(b, kind) for b in BATCH_IDS for kind in ("output", "error")}

    assert len(ids) == len(BATCH_IDS) * 2


def test_result_file_id_is_a_known_value() -> None:
    assert result_file_id("batch_x", "output") == "file-ELmC0SEKOK5tEtL8lENnNQ"


def test_line_ids_pass_the_wire_pattern() -> None:
    data = render(line_id=item_line_id("batch_y", 7), state=ItemState.CANCELLED)

    assert OpenAIBatchOutputLine.model_validate_json(data).id == item_line_id("batch_y", 7)
