"""Stopping a key's work: revoking a key cancels every batch of it still running (of either
dialect, from a file or inline), and the admin may cancel any batch."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from batchway.core.keys import ADMIN
from batchway.core.models import Batch
from batchway.core.states import BatchStatus
from tests.conftest import RunningGateway
from tests.helpers import chat_line, start_batch, unique

BATCHWAY = Path(sys.executable).with_name("batchway")
ADMIN_HEADERS = {"authorization": "Bearer admin-secret"}


def new_key(gw: RunningGateway, name: str = "team") -> tuple[str, str]:
    """A new key: its id and its secret."""
    response = httpx.post(f"{gw.base_url}/admin/keys", json={"name": name}, headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["id"], body["key"]


def revoke(gw: RunningGateway, key_id: str) -> dict[str, Any]:
    response = httpx.delete(f"{gw.base_url}/admin/keys/{key_id}", headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def admin_client(gw: RunningGateway) -> openai.OpenAI:
    """The OpenAI SDK on the admin API: ``batches.cancel`` posts to
    ``/admin/batches/{id}/cancel`` and parses the answer as an OpenAI batch."""
    return openai.OpenAI(base_url=f"{gw.base_url}/admin", api_key=gw.admin_key, max_retries=0)


def anthropic_client(gw: RunningGateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0)


def message_request(custom_id: str, prompt: str) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": "fake-ok",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": prompt}],
        },
    }


def inline_batch(gw: RunningGateway, key: str, prompts: list[str]) -> str:
    """An inline batch on ``POST /v1/batches``; returns its id."""
    response = httpx.post(
        f"{gw.url}/batches",
        json={"requests": [message_request(f"i{n}", p) for n, p in enumerate(prompts)]},
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    batch_id: str = response.json()["id"]
    return batch_id


def stored(gw: RunningGateway, batch_id: str) -> Batch:
    """A batch as the gateway holds it (its key may no longer read it)."""
    return gw.run(gw.gateway.batches.get(ADMIN, batch_id))


def sent_with(gw: RunningGateway, tag: str) -> int:
    """How many upstream calls carried a prompt with ``tag``."""
    return sum(1 for r in gw.fake.requests if tag in r.body.decode(errors="replace"))


# -- revoking a key ------------------------------------------------------------------------


def test_revoking_a_key_cancels_every_batch_it_has_running(gw: RunningGateway):
    key_id, secret = new_key(gw, "leaving")
    client = gw.client(secret)
    tag = unique()
    done = start_batch(client, [chat_line("done", prompt=f"{tag} done")])
    gw.drain()
    assert client.batches.retrieve(done.id).status == "completed"
    sent_before = sent_with(gw, tag)

    from_file = start_batch(client, [chat_line(f"f{i}", prompt=f"{tag} f{i}") for i in range(5)])
    inline = inline_batch(gw, secret, [f"{tag} i{i}" for i in range(3)])
    message = anthropic_client(gw, secret).messages.batches.create(
        requests=[message_request(f"m{i}", f"{tag} m{i}") for i in range(4)]
    )
    other_client = gw.client()
    other_tag = unique()
    other = start_batch(other_client, [chat_line("o", prompt=f"{other_tag} o")])

    assert revoke(gw, key_id) == {"id": key_id, "revoked": True, "batches_cancelled": 3}
    # the key no longer authenticates, on any route
    with pytest.raises(openai.AuthenticationError):
        client.batches.retrieve(from_file.id)
    with pytest.raises(anthropic.AuthenticationError):
        anthropic_client(gw, secret).messages.batches.retrieve(message.id)
    for batch_id in (from_file.id, inline, message.id):
        assert stored(gw, batch_id).status is BatchStatus.CANCELLING

    gw.drain()
    for batch_id, lines in ((from_file.id, 5), (inline, 3), (message.id, 4)):
        batch = stored(gw, batch_id)
        assert batch.status is BatchStatus.CANCELLED
        assert batch.cancelled_at is not None
        assert (batch.counts.total, batch.counts.cancelled) == (lines, lines)
        assert batch.counts.succeeded == 0 and batch.error_file_id is not None
    assert sent_with(gw, tag) == sent_before  # not one line of the revoked key ran
    assert stored(gw, done.id).status is BatchStatus.COMPLETED
    # another key's batch is untouched
    assert other_client.batches.retrieve(other.id).status == "completed"
    assert sent_with(gw, other_tag) == 1


def test_lines_in_flight_at_revocation_finish_and_the_rest_are_cancelled(make_gateway):
    gw: RunningGateway = make_gateway(providers={"fake": {"max_concurrency": 1}})
    key_id, secret = new_key(gw)
    client = gw.client(secret)
    tag = unique()
    lines = [chat_line(f"s{i}", model="fake-slow", prompt=f"{tag} {i}") for i in range(30)]
    batch = start_batch(client, lines)

    draining = asyncio.run_coroutine_threadsafe(gw.gateway.worker.drain(), gw.app.state.loop)
    assert gw.fake.wait_for_requests(3)
    assert revoke(gw, key_id)["batches_cancelled"] == 1
    draining.result(120)

    ended = stored(gw, batch.id)
    assert ended.status is BatchStatus.CANCELLED
    counts = ended.counts
    assert 3 <= counts.succeeded < 30
    assert counts.succeeded + counts.cancelled == 30 and counts.failed == 0
    # every line that reached the provider finished and was kept; none started afterwards
    assert sent_with(gw, tag) == counts.succeeded


def test_a_process_still_trusting_the_key_cannot_start_a_batch(make_gateway):
    here: RunningGateway = make_gateway()
    there: RunningGateway = make_gateway()  # another process on the same database
    key_id, secret = new_key(here)
    client = there.client(secret)
    file_id = client.files.create(
        file=("in.jsonl", b'{"custom_id": "x"}\n'), purpose="batch"
    ).id  # ``there`` now trusts the key for a while

    revoke(here, key_id)
    with pytest.raises(openai.AuthenticationError) as info:
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert info.value.code == "invalid_api_key"
    assert "revoked" in info.value.message
    with pytest.raises(anthropic.AuthenticationError):
        anthropic_client(there, secret).messages.batches.create(
            requests=[message_request("m", "hi")]
        )
    response = httpx.post(
        f"{there.url}/batches",
        json={"requests": [message_request("i", "hi")]},
        headers={"authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 401, response.text
    # nothing of those batches was kept: no batch, no inline input file
    assert here.run(here.gateway.store.unfinished_batches(key_id)) == []
    assert [f.id for f in client.files.list()] == [file_id]


def test_revoking_again_is_harmless(gw: RunningGateway):
    key_id, secret = new_key(gw)
    batch = start_batch(gw.client(secret), [chat_line("a", prompt=unique())])
    assert revoke(gw, key_id)["batches_cancelled"] == 1
    assert revoke(gw, key_id)["batches_cancelled"] == 0  # already cancelling
    gw.drain()
    assert stored(gw, batch.id).status is BatchStatus.CANCELLED


def test_keys_revoke_cli_cancels_the_keys_batches(gw: RunningGateway, database_url, tmp_path):
    key_id, secret = new_key(gw)
    tag = unique()
    batch = start_batch(gw.client(secret), [chat_line(f"c{i}", prompt=tag) for i in range(4)])
    config = tmp_path / "cli.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": database_url,
                "files": gw.gateway.config.files,
                "providers": {"sim": {"kind": "simulated", "latency_ms": 0}},
                "models": {"gpt-4o": {"provider": "sim", "model": "gpt-4o"}},
            }
        )
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BATCHWAY), "keys", "revoke", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
        )

    result = cli(key_id)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"revoked {key_id}; 1 running batches cancelling", result.stdout)
    assert stored(gw, batch.id).status is BatchStatus.CANCELLING
    gw.drain()  # the serving process's worker finishes the cancel
    assert stored(gw, batch.id).status is BatchStatus.CANCELLED
    assert sent_with(gw, tag) == 0
    [entry] = httpx.get(f"{gw.base_url}/admin/keys", headers=ADMIN_HEADERS).json()["data"]
    assert entry["revoked"] is True

    unknown = cli("key_doesnotexist")
    assert unknown.returncode == 1
    assert "key_doesnotexist" in unknown.stdout


# -- the admin cancels a batch -------------------------------------------------------------


def test_the_admin_cancels_any_keys_batch(gw: RunningGateway):
    owner = gw.client()
    tag = unique()
    batch = start_batch(owner, [chat_line(f"a{i}", prompt=f"{tag} {i}") for i in range(6)])

    cancelled = admin_client(gw).batches.cancel(batch.id)
    assert cancelled.id == batch.id
    assert cancelled.status == "cancelling" and cancelled.cancelling_at is not None
    assert cancelled.input_file_id == batch.input_file_id
    # cancelling a cancelling batch answers it unchanged
    assert admin_client(gw).batches.cancel(batch.id) == cancelled
    assert owner.batches.retrieve(batch.id).status == "cancelling"

    gw.drain()
    seen = owner.batches.retrieve(batch.id)
    assert seen.status == "cancelled"
    assert seen.request_counts is not None
    assert (seen.request_counts.completed, seen.request_counts.failed) == (0, 6)
    assert sent_with(gw, tag) == 0
    # an ended batch cannot be cancelled: a 400 (the SDKs retry 409), as for its owner
    with pytest.raises(openai.BadRequestError) as info:
        admin_client(gw).batches.cancel(batch.id)
    assert info.value.response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("dialect", ["anthropic", "inline"])
def test_the_admin_cancel_answers_in_the_openai_shape_for_every_dialect(
    gw: RunningGateway, dialect: str
):
    key = gw.create_key()
    tag = unique()
    if dialect == "anthropic":
        batch_id = (
            anthropic_client(gw, key)
            .messages.batches.create(requests=[message_request("m", f"{tag} m")])
            .id
        )
    else:
        batch_id = inline_batch(gw, key, [f"{tag} i"])

    response = httpx.post(f"{gw.base_url}/admin/batches/{batch_id}/cancel", headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["object"], body["status"]) == (batch_id, "batch", "cancelling")
    assert body["endpoint"] == "/v1/messages"
    assert set(body) >= {"request_counts", "cancelling_at", "output_file_id", "error_file_id"}
    gw.drain()
    assert stored(gw, batch_id).status is BatchStatus.CANCELLED
    assert sent_with(gw, tag) == 0


def test_the_admin_cancel_of_an_unknown_batch_is_404(gw: RunningGateway):
    with pytest.raises(openai.NotFoundError) as info:
        admin_client(gw).batches.cancel("batch_doesnotexist")
    error = info.value.response.json()["error"]
    assert error["param"] == "batch_id" and "batch_doesnotexist" in error["message"]


@pytest.mark.parametrize("who", ["nobody", "gateway-key"])
def test_the_admin_cancel_needs_the_admin_key(gw: RunningGateway, who: str):
    owner = gw.client()
    batch = start_batch(owner, [chat_line("x", prompt=unique())])
    headers = {} if who == "nobody" else {"authorization": f"Bearer {gw.create_key()}"}
    response = httpx.post(f"{gw.base_url}/admin/batches/{batch.id}/cancel", headers=headers)
    assert response.status_code == 401, response.text
    assert "admin key" in response.json()["error"]["message"]
    assert owner.batches.retrieve(batch.id).status == "validating"
