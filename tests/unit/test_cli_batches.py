"""The client commands' own logic, in process and without a gateway: usage errors, how a
batch's end becomes an exit code, polling with bounded retries, and the local files.

The commands against a real gateway are in tests/e2e/test_cli_batches.py.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from openai.types import Batch
from rich.console import Console
from typer.testing import CliRunner

from batchway.cli.batch_view import (
    BatchView,
    ExitCode,
    Outcome,
    from_message_batch,
    from_openai_batch,
)
from batchway.cli.batches import batches_app
from batchway.cli.input_file import InlineRequests, first_url, parse_metadata
from batchway.cli.remote import _lines, gateway_root
from batchway.cli.watch import MAX_POLL_FAILURES, follow
from batchway.errors import ClientError, GatewayRefused, GatewayUnreachable, UsageError


def openai_batch(status: str = "completed", **fields: Any) -> Batch:
    return Batch.model_validate(
        {
            "id": "batch_1",
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "input_file_id": "file-in",
            "status": status,
            "created_at": 1_700_000_000,
            "request_counts": {"total": 4, "completed": 3, "failed": 1},
            **fields,
        }
    )


def message_batch(status: str = "ended", **fields: Any) -> dict[str, Any]:
    return {
        "id": "msgbatch_1",
        "type": "message_batch",
        "processing_status": status,
        "request_counts": {
            "processing": 0,
            "succeeded": 2,
            "errored": 1,
            "canceled": 0,
            "expired": 0,
        },
        "created_at": "2026-01-01T00:00:00Z",
        "expires_at": "2026-01-02T00:00:00Z",
        "ended_at": None,
        "cancel_initiated_at": None,
        "results_url": None,
        "archived_at": None,
        **fields,
    }


# -- the end of a batch and the exit code -------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("completed", ExitCode.OK),
        ("failed", ExitCode.FAILED),
        ("expired", ExitCode.EXPIRED),
        ("cancelled", ExitCode.CANCELLED),
    ],
)
def test_an_openai_batch_ends_with_its_status_exit_code(status, code):
    view = from_openai_batch(openai_batch(status))
    assert view.outcome is not None and view.outcome.exit_code == code
    assert (view.total, view.succeeded, view.failed, view.done) == (4, 3, 1, 4)


def test_a_running_openai_batch_has_no_outcome_and_refused_lines_are_named():
    errors = {"data": [{"code": "url_mismatch", "message": "bad url", "line": 2}]}
    view = from_openai_batch(openai_batch("failed", errors=errors))
    assert view.errors == ("line 2: url_mismatch: bad url",)
    assert from_openai_batch(openai_batch("in_progress")).outcome is None
    assert from_openai_batch(openai_batch("cancelling")).outcome is None


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        ({}, Outcome.COMPLETED),
        ({"cancel_initiated_at": "2026-01-01T00:01:00Z"}, Outcome.CANCELLED),
        (
            {
                "request_counts": {
                    "processing": 0,
                    "succeeded": 1,
                    "errored": 0,
                    "canceled": 0,
                    "expired": 2,
                }
            },
            Outcome.EXPIRED,
        ),
    ],
)
def test_an_ended_message_batch_outcome(fields, outcome):
    view = from_message_batch(message_batch(**fields))
    assert view.outcome is outcome
    assert view.kind == "message" and not view.live


def test_a_message_batch_in_progress_counts_nothing_done_yet():
    counts = {"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    view = from_message_batch(message_batch("in_progress", request_counts=counts))
    assert view.outcome is None and (view.total, view.done) == (3, 0)
    assert ("requests", "3 processing") in view.rows


def test_an_answer_that_is_not_a_message_batch_is_a_client_error():
    with pytest.raises(ClientError):
        from_message_batch({"id": "x"})


# -- polling ----------------------------------------------------------------------------------


class FakeRemote:
    """Answers each poll with the next item: a view, or an error to raise."""

    def __init__(self, *answers: BatchView | ClientError) -> None:
        self.answers = list(answers)
        self.polls = 0

    def poll(self, batch_id: str) -> BatchView:
        self.polls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, ClientError):
            raise answer
        return answer


def view(status: str, done: int = 0) -> BatchView:
    return from_openai_batch(
        openai_batch(status, request_counts={"total": 4, "completed": done, "failed": 0})
    )


def quiet() -> Console:
    return Console(file=io.StringIO())


def test_follow_backs_off_to_5_seconds_and_starts_over_on_a_new_status():
    remote = FakeRemote(
        view("validating"),
        *[view("validating")] * 5,
        view("in_progress", 1),
        view("in_progress", 2),
        view("completed", 4),
    )
    waits: list[float] = []
    ended = follow(remote, "batch_1", quiet(), sleep=waits.append)  # type: ignore[arg-type]
    assert ended.outcome is Outcome.COMPLETED
    assert waits == [1.0, 1.5, 2.25, 3.375, 5.0, 5.0, 1.0, 1.5]


def test_follow_retries_a_failing_gateway_a_bounded_number_of_times():
    unreachable = GatewayUnreachable("cannot reach the gateway")
    remote = FakeRemote(view("in_progress"), *[unreachable] * MAX_POLL_FAILURES)
    with pytest.raises(GatewayUnreachable, match="may still be running"):
        follow(remote, "batch_1", quiet(), sleep=lambda _: None)  # type: ignore[arg-type]
    assert remote.polls == 1 + MAX_POLL_FAILURES

    # a failure or two in between is forgotten once a poll succeeds
    remote = FakeRemote(
        view("in_progress"),
        GatewayRefused("busy", status=503),
        unreachable,
        view("in_progress"),
        *[unreachable] * (MAX_POLL_FAILURES - 1),
        view("completed"),
    )
    assert follow(remote, "batch_1", quiet(), sleep=lambda _: None).ended  # type: ignore[arg-type]


def test_follow_stops_at_once_when_the_gateway_refuses():
    remote = FakeRemote(view("in_progress"), GatewayRefused("no such batch", status=404))
    with pytest.raises(GatewayRefused):
        follow(remote, "batch_1", quiet(), sleep=lambda _: None)  # type: ignore[arg-type]
    assert remote.polls == 2


# -- local files and arguments ------------------------------------------------------------------


def test_inline_requests_stream_as_one_body_and_refusals_name_lines(tmp_path: Path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'\xef\xbb\xbf{"custom_id": "a"}\r\n\n  \n{"custom_id": "b"}')
    requests = InlineRequests(source)
    assert requests.lines == [1, 4]
    assert b"".join(requests.body()) == b'{"requests":[{"custom_id": "a"},{"custom_id": "b"}]}'
    refused = GatewayRefused(
        "requests[1].params.model: no such model; requests[7].x: y (HTTP 400)", status=400
    )
    explained = requests.explain(refused)
    assert explained.message == (
        "line 4 (requests[1]).params.model: no such model; requests[7].x: y (HTTP 400)"
    )
    assert explained.status_code == 400


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"a": 1}\n{oops\n', "line 2: not JSON"),
        (b"[1]\n", "line 1: not a JSON object"),
        (b"\n", "no request"),
    ],
)
def test_inline_requests_refuse_a_bad_file_before_sending(tmp_path: Path, content, problem):
    source = tmp_path / "in.jsonl"
    source.write_bytes(content)
    with pytest.raises(UsageError, match=problem):
        InlineRequests(source)


@pytest.mark.parametrize(
    ("first", "endpoint"),
    [
        (b'{"url": "/v1/embeddings"}', "/v1/embeddings"),
        (b'{"url": "/chat/completions"}', "/v1/chat/completions"),
        (b'{"url": "/v1/unknown"}', "/v1/chat/completions"),
        (b"not json", "/v1/chat/completions"),
        (b"[]", "/v1/chat/completions"),
    ],
)
def test_the_endpoint_defaults_to_the_first_lines_url(tmp_path: Path, first, endpoint):
    source = tmp_path / "in.jsonl"
    source.write_bytes(first + b"\n{}\n")
    assert first_url(source) == endpoint


def test_metadata_pairs():
    assert parse_metadata(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    for bad in ("novalue", "=v"):
        with pytest.raises(UsageError):
            parse_metadata([bad])


def test_the_gateway_root_drops_v1_and_refuses_what_is_not_http():
    assert gateway_root("http://h:8080/v1/") == "http://h:8080"
    assert gateway_root("https://h/prefix") == "https://h/prefix"
    for bad in ("not a url", "ftp://h", "h:8080", "http://"):
        with pytest.raises(UsageError):
            gateway_root(bad)


def test_result_lines_split_on_newlines_only():
    chunks = [b'{"a": "x\xe2\x80\xa8y"}\n{"b"', b": 1}\n", b'{"c": 2}']
    assert list(_lines(chunks)) == [b'{"a": "x\xe2\x80\xa8y"}\n', b'{"b": 1}\n', b'{"c": 2}\n']


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["submit", "{source}", "--wait", "--output", "{tmp}/no/out.jsonl"], "no such directory"),
        (["submit", "{source}", "--wait", "--errors", "{tmp}"], "is a directory"),
        (["submit", "{source}", "--output", "{tmp}/out.jsonl"], "need --wait"),
        (["submit", "{source}", "--metadata", "novalue"], "key=value"),
        (["submit", "--inline", "{source}", "--window", "24h"], "do not apply to --inline"),
        (["submit", "--inline", "{tmp}/bad.jsonl"], "line 2: not JSON"),
        (["get", "../files"], "not a batch id"),
        (["cancel", ""], "not a batch id"),
        (["list", "--url", "not a url"], "not an http(s) URL"),
        (["list", "--api-key", ""], "no API key"),
        (["list", "--api-key", "two words"], "printable ASCII"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path, args, problem):
    source = tmp_path / "in.jsonl"
    source.write_text('{"custom_id": "a", "params": {}}\n')
    (tmp_path / "bad.jsonl").write_text('{"custom_id": "a", "params": {}}\n{oops\n')
    filled = [arg.format(source=source, tmp=tmp_path) for arg in args]
    env = {"BATCHWAY_URL": "http://127.0.0.1:9", "BATCHWAY_API_KEY": "bw-any"}
    result = CliRunner().invoke(batches_app, filled, env=env)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and problem in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


class FakeLister:
    def __init__(self, views: list[BatchView]) -> None:
        self.views = views

    def __enter__(self) -> FakeLister:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def list_batches(self, *, limit: int, every: bool) -> tuple[list[BatchView], bool]:
        return self.views, False


@pytest.mark.parametrize("columns", ["30", "80", "200"])
def test_list_never_cuts_an_id_however_narrow_the_terminal(monkeypatch, columns):
    ids = ["batch_82e4c36f4b1a135f75ae217205560bf0", "msgbatch_CKjY04TrAZfIxrleJ36g7eTL"]
    views = [
        from_openai_batch(openai_batch("in_progress", id=ids[0])),
        from_message_batch(message_batch(id=ids[1])),
    ]
    monkeypatch.setattr("batchway.cli.batches._connect", lambda url, key: FakeLister(views))
    result = CliRunner().invoke(batches_app, ["list"], env={"COLUMNS": columns})
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines() if "batch_" in line]
    assert [row[:3] for row in rows] == [[ids[0], "in_progress", "4/4"], [ids[1], "ended", "3/3"]]
