"""Batch input files of every shape, uploaded and run through a real gateway.

Whatever a file holds, validation ends: after a drain the batch is ``completed`` (every line
ran) or ``failed`` with one error per bad line, each naming its 1-based line, and never
still ``validating``; no request answers 5xx. Lines built to be good must run, lines built to
be bad must be reported by number, and doubtful ones may go either way.
"""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import event, given, note
from hypothesis import strategies as st

from tests.conftest import RunningGateway
from tests.fuzz.conftest import fuzz_settings, json_of
from tests.fuzz.drain import drain_or_fail
from tests.fuzz.strategies import BatchFile, batch_files

ERROR_CODES = {
    "invalid_json_line",
    "invalid_request",
    "duplicate_custom_id",
    "url_mismatch",
    "model_not_found",
    "too_many_tasks",
    "empty_file",
    "json_too_deep",  # a line nested past the depth limit
    "line_too_large",  # a line past the size limit
}


def upload(http: httpx.Client, data: bytes, name: str = "fuzz.jsonl") -> str:
    response = http.post("/v1/files", files={"file": (name, data)}, data={"purpose": "batch"})
    assert response.status_code == 200, response.text
    file_id: str = json_of(response)["id"]
    return file_id


def run_batch(gw: RunningGateway, http: httpx.Client, data: bytes, endpoint: str) -> dict[str, Any]:
    """Upload ``data``, create a batch on it, drain the worker; the batch as it ended."""
    file_id = upload(http, data)
    created = http.post(
        "/v1/batches",
        json={"input_file_id": file_id, "endpoint": endpoint, "completion_window": "24h"},
    )
    assert created.status_code == 200, created.text
    batch = json_of(created)
    assert batch["status"] == "validating"
    drain_or_fail(gw, http, batch["id"])
    response = http.get(f"/v1/batches/{batch['id']}")
    assert response.status_code == 200, response.text
    ended: dict[str, Any] = json_of(response)
    return ended


def check_errors(batch: dict[str, Any], data: bytes) -> list[int | None]:
    """The errors of a failed batch are well-formed; their line numbers."""
    lines = data.count(b"\n") + 1
    assert batch["errors"]["object"] == "list"
    errors = batch["errors"]["data"]
    assert errors, batch
    numbers = []
    for error in errors:
        assert set(error) == {"code", "message", "param", "line"}, error
        assert error["code"] in ERROR_CODES, error
        assert isinstance(error["message"], str) and error["message"]
        if error["code"] == "empty_file":
            assert error["line"] is None
        else:
            assert isinstance(error["line"], int) and 1 <= error["line"] <= max(lines, 1), error
        numbers.append(error["line"])
    assert numbers == sorted(numbers, key=lambda n: n or 0), "errors are in line order"
    return numbers


@given(file=batch_files())
@fuzz_settings(max_examples=25)
def test_validation_always_ends_and_names_the_bad_lines(
    fuzz_gw: RunningGateway, http: httpx.Client, file: BatchFile
) -> None:
    note(f"file: {file.data!r}")
    batch = run_batch(fuzz_gw, http, file.data, "/v1/chat/completions")
    assert batch["status"] in ("completed", "failed"), batch
    event(f"{batch['status']}, readable={file.readable}")
    counts = batch["request_counts"]
    if batch["status"] == "failed":
        reported = set(check_errors(batch, file.data))
        assert (counts["total"], counts["completed"], counts["failed"]) == (0, 0, 0)
        assert batch["output_file_id"] is None and batch["error_file_id"] is None
    else:
        reported = set()
        assert batch["errors"] is None
        assert counts["completed"] + counts["failed"] == counts["total"]
        assert counts["total"] == len(file.lines)
    if not file.readable:  # UTF-16, or Latin-1 bytes that are not UTF-8: nothing can run
        assert batch["status"] == "failed", batch
        return
    bad = {n for n, line in enumerate(file.lines, 1) if line.valid is False}
    good = {n for n, line in enumerate(file.lines, 1) if line.valid is True}
    assert bad <= reported, f"bad lines not reported: {sorted(bad - reported)}"
    assert not good & reported, f"good lines reported: {sorted(good & reported)}"
    if not file.lines:
        assert reported == {None}
    elif len(good) == len(file.lines):
        assert batch["status"] == "completed", batch
        assert counts["completed"] == counts["total"] == len(file.lines)


ENDPOINTS = ["/v1/embeddings", "/v1/completions", "/v1/responses", "/v1/messages"]


@given(file=batch_files(max_lines=6), endpoint=st.sampled_from(ENDPOINTS))
@fuzz_settings(max_examples=12)
def test_validation_ends_on_every_endpoint(
    fuzz_gw: RunningGateway, http: httpx.Client, file: BatchFile, endpoint: str
) -> None:
    """The lines were written for chat completions: on another endpoint every line is bad
    (its url does not match) or doubtful, and the batch still ends."""
    note(f"file: {file.data!r}")
    batch = run_batch(fuzz_gw, http, file.data, endpoint)
    assert batch["status"] in ("completed", "failed"), batch
    if batch["status"] == "failed":
        check_errors(batch, file.data)
