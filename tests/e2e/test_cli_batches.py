"""``batchway batches``, run as a user runs it: the real CLI in a child process, driving a
gateway on loopback over HTTP.

The gateway's worker runs in drain mode, so a CLI that waits (``--wait``, ``watch``) runs in
the background: the test reads the batch id from its stdout, drains the worker, and then
waits for the CLI to exit (it sees the end at its next poll, at most 5 s later).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import batchway
from tests.conftest import RunningGateway
from tests.helpers import chat_line, jsonl, start_batch, unique

SRC = Path(batchway.__file__).resolve().parents[1]  # the code under test, not an install
ROOT = SRC.parent
CLI = [sys.executable, "-m", "batchway.cli.main", "batches"]
BATCH_ID = re.compile(r"^(batch_[0-9a-f]+|msgbatch_[0-9A-Za-z]+)$")
EXIT_TIMEOUT = 120  # seconds a CLI may take (polls back off to 5 s; a busy machine is slow)


def cli_env(gw: RunningGateway | None = None, key: str | None = None) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("BATCHWAY_", "OPENAI_"))
    }
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(ROOT)])
    if gw is not None:
        env["BATCHWAY_URL"] = gw.base_url
    if key is not None:
        env["BATCHWAY_API_KEY"] = key
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=EXIT_TIMEOUT
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


_STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def no_cli_left_running() -> Iterator[None]:
    """A test that fails half-way leaves no CLI running behind it."""
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait()


class Background:
    """The CLI running in the background; its stdout is read line by line as it comes."""

    def __init__(self, env: dict[str, str], tmp_path: Path, *args: str) -> None:
        self._stderr_path = tmp_path / f"stderr-{unique()}.txt"
        self._stderr = self._stderr_path.open("wb")
        self.process = subprocess.Popen(
            [*CLI, *args], env=env, stdout=subprocess.PIPE, stderr=self._stderr
        )
        _STARTED.append(self.process)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.decode())

    def batch_id(self) -> str:
        """The id the CLI prints once the batch exists (it is created by then)."""
        try:
            line = self.lines.get(timeout=EXIT_TIMEOUT).strip()
        except queue.Empty:
            self.process.kill()
            raise AssertionError("no batch id:\n" + self.stderr()) from None
        assert BATCH_ID.match(line), line
        return line

    def stderr(self) -> str:
        return self._stderr_path.read_text()

    def finish(self) -> tuple[int, str]:
        """Wait for the exit; its code and stderr."""
        try:
            code = self.process.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("the CLI did not exit:\n" + self.stderr()) from None
        finally:
            self._stderr.close()
        stderr = self.stderr()
        assert "Traceback" not in stderr, stderr
        return code, stderr


@pytest.fixture
def env(gw: RunningGateway) -> dict[str, str]:
    return cli_env(gw, gw.create_key())


def sdk(gw: RunningGateway, env: dict[str, str]) -> Any:
    return gw.client(env["BATCHWAY_API_KEY"])


def message_request(custom_id: str, model: str = "fake-ok", **params: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": model,
            "max_tokens": 16,
            "messages": [{"role": "user", "content": f"{unique()} {custom_id}"}],
            **params,
        },
    }


def anthropic_http(gw: RunningGateway, env: dict[str, str]) -> httpx.Client:
    return httpx.Client(
        base_url=gw.base_url, headers={"x-api-key": env["BATCHWAY_API_KEY"]}, timeout=30
    )


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- submit and wait ----------------------------------------------------------------------------


def test_submit_wait_downloads_what_the_sdk_downloads(gw, env, tmp_path):
    tag = unique()
    lines = [chat_line(f"ok-{i}", prompt=f"{tag} {i}") for i in range(4)]
    lines.append(chat_line("refused", model="fake-400", prompt=tag))
    source = write(tmp_path / "requests.jsonl", jsonl(lines))
    output, errors = tmp_path / "results.jsonl", tmp_path / "errors.jsonl"
    cli = Background(
        env,
        tmp_path,
        "submit",
        str(source),
        "--wait",
        "--output",
        str(output),
        "--errors",
        str(errors),
        "--metadata",
        "team=search",
        "--metadata",
        "run=7",
    )
    batch_id = cli.batch_id()
    gw.drain()
    code, stderr = cli.finish()

    assert code == 0, stderr
    assert "completed" in stderr and "5 requests, 4 succeeded, 1 failed" in stderr
    client = sdk(gw, env)
    batch = client.batches.retrieve(batch_id)
    assert batch.status == "completed"
    assert batch.endpoint == "/v1/chat/completions"  # from the first line's url
    assert batch.metadata == {"team": "search", "run": "7"}
    assert output.read_bytes() == client.files.content(batch.output_file_id).content
    assert errors.read_bytes() == client.files.content(batch.error_file_id).content
    assert [json.loads(line)["custom_id"] for line in errors.read_text().splitlines()] == [
        "refused"
    ]
    assert not list(tmp_path.glob("*.part"))


def test_a_refused_input_file_fails_with_exit_1_naming_the_line(gw, env, tmp_path):
    bad = chat_line("b", prompt=unique())
    bad["url"] = "/v1/embeddings"
    source = write(tmp_path / "bad.jsonl", jsonl([chat_line("a", prompt=unique()), bad]))
    output = tmp_path / "results.jsonl"
    cli = Background(env, tmp_path, "submit", str(source), "--wait", "--output", str(output))
    batch_id = cli.batch_id()
    gw.drain()
    code, stderr = cli.finish()

    assert code == 1
    assert sdk(gw, env).batches.retrieve(batch_id).status == "failed"
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: batch {batch_id} failed: line 2: url_mismatch")
    assert not output.exists()  # nothing ran, so there is nothing to write


def test_a_cancelled_batch_exits_4_and_keeps_its_partial_results(gw, env, tmp_path):
    source = write(
        tmp_path / "in.jsonl", jsonl([chat_line(f"c{i}", prompt=unique()) for i in range(3)])
    )
    errors = tmp_path / "errors.jsonl"
    cli = Background(env, tmp_path, "submit", str(source), "--wait", "--errors", str(errors))
    batch_id = cli.batch_id()
    sdk(gw, env).batches.cancel(batch_id)
    gw.drain()
    code, stderr = cli.finish()

    assert code == 4
    assert f"error: batch {batch_id} was cancelled" in stderr
    assert sorted(json.loads(line)["custom_id"] for line in errors.read_text().splitlines()) == [
        "c0",
        "c1",
        "c2",
    ]


def test_an_expired_batch_exits_3(gw, env, tmp_path):
    source = write(tmp_path / "in.jsonl", jsonl([chat_line("e", prompt=unique())]))
    cli = Background(env, tmp_path, "submit", str(source), "--wait")
    batch_id = cli.batch_id()

    async def window_over() -> None:
        from sqlalchemy import update

        from batchway.store.tables import batches

        async with gw.gateway.store.engine.begin() as conn:
            await conn.execute(update(batches).where(batches.c.id == batch_id).values(expires_at=0))

    gw.run(window_over())
    gw.drain()
    assert sdk(gw, env).batches.retrieve(batch_id).status == "expired"
    code, stderr = cli.finish()
    assert code == 3
    assert f"error: batch {batch_id} expired" in stderr


def test_ctrl_c_stops_watching_only_and_watch_reattaches(gw, env, tmp_path):
    source = write(
        tmp_path / "in.jsonl", jsonl([chat_line(f"w{i}", prompt=unique()) for i in range(3)])
    )
    cli = Background(env, tmp_path, "submit", str(source), "--wait")
    batch_id = cli.batch_id()
    cli.process.send_signal(signal.SIGINT)
    code, stderr = cli.finish()

    assert code == 130
    assert f"batchway batches watch {batch_id}" in stderr
    client = sdk(gw, env)
    assert client.batches.retrieve(batch_id).status == "validating"  # untouched

    output = tmp_path / "results.jsonl"
    watcher = Background(env, tmp_path, "watch", batch_id, "--output", str(output))
    gw.drain()
    code, stderr = watcher.finish()
    assert code == 0, stderr
    batch = client.batches.retrieve(batch_id)
    assert batch.status == "completed"
    assert output.read_bytes() == client.files.content(batch.output_file_id).content


# -- list, get, cancel, results -----------------------------------------------------------------


def test_file_batches_list_get_cancel_and_results(gw, env, tmp_path):
    client = sdk(gw, env)
    done = start_batch(
        client,
        [chat_line("d1", prompt=unique()), chat_line("d2", model="fake-400", prompt=unique())],
    )
    gw.drain()
    running = start_batch(client, [chat_line("r1", prompt=unique())])
    done = client.batches.retrieve(done.id)

    listed = run(env, "list")
    assert listed.returncode == 0, listed.stderr
    rows = {
        line.split()[0]: line.split()[1] for line in listed.stdout.splitlines() if "batch_" in line
    }
    assert rows == {done.id: "completed", running.id: "validating"}  # whole ids

    shown = run(env, "get", done.id)
    assert shown.returncode == 0, shown.stderr
    for text in (
        "completed",
        "2 total, 1 succeeded, 1 failed",
        done.output_file_id,
        done.error_file_id,
    ):
        assert text in shown.stdout

    results = run(env, "results", done.id)
    assert results.returncode == 0, results.stderr
    assert results.stdout.encode() == client.files.content(done.output_file_id).content
    failures = tmp_path / "failures.jsonl"
    written = run(env, "results", done.id, "--errors", "-o", str(failures))
    assert written.returncode == 0, written.stderr
    assert failures.read_bytes() == client.files.content(done.error_file_id).content

    cancelled = run(env, "cancel", running.id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.split() == [running.id, "cancelling"]
    early = run(env, "results", running.id)
    assert early.returncode == 2
    assert "has not ended yet (cancelling)" in early.stderr


def test_message_batches_list_get_cancel_results_and_watch(gw, env, tmp_path):
    with anthropic_http(gw, env) as http:
        requests = [message_request("m1"), message_request("m2", model="fake-400")]
        ended = http.post("/v1/messages/batches", json={"requests": requests}).json()["id"]
        gw.drain()
        running = http.post("/v1/messages/batches", json={"requests": [message_request("m3")]})
        running_id = running.json()["id"]
        expected = http.get(f"/v1/messages/batches/{ended}/results").content

    listed = run(env, "list", "--limit", "1")
    assert listed.returncode == 0, listed.stderr
    assert running_id in listed.stdout and ended not in listed.stdout
    assert "--all" in listed.stderr  # there are more

    shown = run(env, "get", ended)
    assert shown.returncode == 0, shown.stderr
    assert "ended" in shown.stdout and "1 succeeded, 1 errored" in shown.stdout
    assert f"/v1/messages/batches/{ended}/results" in shown.stdout

    results = run(env, "results", ended)
    assert results.stdout.encode() == expected
    failures = run(env, "results", ended, "--errors")
    assert [json.loads(line)["custom_id"] for line in failures.stdout.splitlines()] == ["m2"]

    watched = run(env, "watch", ended)  # already ended: at once
    assert watched.returncode == 0, watched.stderr

    cancelled = run(env, "cancel", running_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.split() == [running_id, "canceling"]
    gw.drain()
    watched = run(env, "watch", running_id)
    assert watched.returncode == 4
    assert f"error: batch {running_id} was cancelled" in watched.stderr


def test_inline_batch_submit_wait_results_and_a_refusal_naming_the_line(gw, env, tmp_path):
    lines = [message_request("i1"), message_request("i2"), message_request("i3", model="fake-400")]
    source = write(tmp_path / "inline.jsonl", jsonl(lines))
    output, errors = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    cli = Background(
        env,
        tmp_path,
        "submit",
        "--inline",
        str(source),
        "--wait",
        "--output",
        str(output),
        "--errors",
        str(errors),
    )
    batch_id = cli.batch_id()
    assert batch_id.startswith("msgbatch_")
    gw.drain()
    code, stderr = cli.finish()
    assert code == 0, stderr

    with anthropic_http(gw, env) as http:
        expected = http.get(f"/v1/messages/batches/{batch_id}/results").content
    assert output.read_bytes() == expected
    assert [json.loads(line)["custom_id"] for line in errors.read_text().splitlines()] == ["i3"]

    shown = run(env, "get", batch_id)
    assert "ended" in shown.stdout and "2 succeeded, 1 errored" in shown.stdout
    listed = run(env, "list")
    assert batch_id in listed.stdout
    again = run(env, "cancel", batch_id)
    assert again.returncode == 2 and again.stderr.startswith("error: ")

    # a request the gateway refuses: named by its line in the file (blank lines count)
    refused = write(
        tmp_path / "refused.jsonl",
        jsonl([message_request("ok")]) + b"\n" + jsonl([message_request("bad", model="nope")]),
    )
    answer = run(env, "submit", "--inline", str(refused))
    assert answer.returncode == 2
    assert answer.stderr.startswith("error: line 3 (requests[1]).params.model")
    assert answer.stdout == ""


# -- user errors ------------------------------------------------------------------------------


def test_user_errors_against_a_gateway(gw, env, tmp_path):
    cases = [
        ({"BATCHWAY_API_KEY": "bw-wrong"}, ["list"], "(HTTP 401); check --api-key"),
        ({}, ["get", "batch_0123456789abcdef0123456789abcdef"], "(HTTP 404)"),
        ({}, ["results", "msgbatch_nope"], "(HTTP 404)"),
    ]
    for overrides, args, message in cases:
        result = run({**env, **overrides}, *args)
        assert (result.returncode, result.stdout) == (2, ""), (args, result.stderr)
        assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr


def test_user_errors_without_a_gateway(tmp_path):
    """The other usage errors are in tests/unit/test_cli_batches.py, in process."""
    cases = [
        ({"BATCHWAY_URL": "http://127.0.0.1:9"}, ["list"], 5, "cannot reach the gateway"),
        ({}, ["submit", str(tmp_path / "missing.jsonl")], 2, "no such file"),
    ]
    for overrides, args, code, message in cases:
        result = run({**cli_env(key="bw-any"), **overrides}, *args)
        assert (result.returncode, result.stdout) == (code, ""), (args, result.stderr)
        assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
