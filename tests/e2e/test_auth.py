"""Gateway keys: who may call, what each key may see and run, and the admin key API."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from typer.testing import CliRunner

from batchway.cli.main import app
from batchway.core.ids import hash_key
from tests.conftest import RunningGateway
from tests.helpers import blobs, chat_line, jsonl, read_results, unique, upload

BATCHWAY = Path(sys.executable).with_name("batchway")
ADMIN = {"authorization": "Bearer admin-secret"}
KEY_FIELDS = {
    "id",
    "object",
    "name",
    "created_at",
    "models",
    "rpm",
    "tpm",
    "tph",
    "rph",
    "budget_usd",
    "budget_period",
    "max_storage_bytes",
    "max_files",
    "revoked",
}


def assert_error(
    response: Any, status: int, *, param: str | None = None, code: str | None = None, match: str
) -> None:
    """``response`` is an error in the OpenAI envelope, every key present."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code)
    assert re.search(match, error["message"]), error["message"]


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def listed_keys(gw: RunningGateway) -> list[dict[str, Any]]:
    response = httpx.get(f"{gw.base_url}/admin/keys", headers=ADMIN)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def new_batch(client: openai.OpenAI, lines: list[dict[str, Any]]) -> str:
    return client.batches.create(
        input_file_id=upload(client, jsonl(lines)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    ).id


# -- the key on OpenAI routes -------------------------------------------------------------

ROUTES = [
    ("GET", "/files", None),
    ("POST", "/files", {"files": {"file": ("x.jsonl", b"{}\n")}, "data": {"purpose": "batch"}}),
    ("GET", "/files/file-abc", None),
    ("GET", "/files/file-abc/content", None),
    ("DELETE", "/files/file-abc", None),
    ("GET", "/batches", None),
    (
        "POST",
        "/batches",
        {
            "json": {
                "input_file_id": "file-abc",
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            }
        },
    ),
    ("GET", "/batches/batch_abc", None),
    ("POST", "/batches/batch_abc/cancel", None),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), ROUTES)
def test_no_key_is_401(gw: RunningGateway, method, path, kwargs):
    response = httpx.request(method, gw.url + path, **(kwargs or {}))
    assert_error(response, 401, match="didn't provide an API key")
    assert blobs(gw) == []
    assert gw.fake.count() == 0


@pytest.mark.parametrize(("method", "path", "kwargs"), ROUTES)
def test_wrong_key_is_401_invalid_api_key(gw: RunningGateway, method, path, kwargs):
    headers = auth("bw-not-a-real-key")
    response = httpx.request(method, gw.url + path, headers=headers, **(kwargs or {}))
    assert_error(response, 401, code="invalid_api_key", match="Incorrect API key")
    assert blobs(gw) == []


def test_wrong_key_through_the_sdk(gw: RunningGateway):
    client = gw.client("bw-not-a-real-key")
    with pytest.raises(openai.AuthenticationError) as info:
        client.files.create(file=("x.jsonl", io.BytesIO(b"{}\n")), purpose="batch")
    assert info.value.code == "invalid_api_key"
    assert_error(info.value.response, 401, code="invalid_api_key", match="Incorrect API key")
    assert blobs(gw) == []
    # the admin key is not a gateway key
    with pytest.raises(openai.AuthenticationError):
        gw.client("admin-secret").files.list()


@pytest.mark.parametrize(
    "header",
    [
        lambda key: {"authorization": f"Bearer {key}"},
        lambda key: {"authorization": f"bearer {key}"},
        lambda key: {"x-api-key": key},
        lambda key: {"api-key": key},
    ],
    ids=["bearer", "bearer-lowercase", "x-api-key", "api-key"],
)
def test_the_key_works_in_every_header_clients_use(gw: RunningGateway, header):
    key = gw.create_key()
    file_id = upload(gw.client(key), b"{}\n")
    response = httpx.get(f"{gw.url}/files", headers=header(key))
    assert response.status_code == 200, response.text
    assert [f["id"] for f in response.json()["data"]] == [file_id]
    response = httpx.get(f"{gw.url}/files/{file_id}/content", headers=header(key))
    assert response.content == b"{}\n"


# -- keys are isolated from each other -----------------------------------------------------


def test_another_keys_file_is_not_found(gw: RunningGateway):
    owner = gw.client()
    intruder = gw.client()
    data = jsonl([chat_line("mine", prompt=unique())])
    file_id = upload(owner, data)

    for call in (
        lambda: intruder.files.retrieve(file_id),
        lambda: intruder.files.content(file_id),
        lambda: intruder.files.delete(file_id),
    ):
        with pytest.raises(openai.NotFoundError) as info:
            call()
        assert_error(info.value.response, 404, param="file_id", match=f"No such File.*{file_id}")
    assert intruder.files.list().data == []

    with pytest.raises(openai.BadRequestError) as refused:
        intruder.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert_error(
        refused.value.response, 400, param="input_file_id", match=f"Cannot find file {file_id}"
    )
    assert intruder.batches.list().data == []

    # the owner's file is untouched
    assert [f.id for f in owner.files.list()] == [file_id]
    assert owner.files.content(file_id).content == data
    assert blobs(gw) == [file_id]
    assert gw.fake.count() == 0


def test_another_keys_batch_is_not_found(gw: RunningGateway):
    owner = gw.client()
    intruder = gw.client()
    batch_id = new_batch(owner, [chat_line("mine", prompt=unique())])

    for call in (
        lambda: intruder.batches.retrieve(batch_id),
        lambda: intruder.batches.cancel(batch_id),
    ):
        with pytest.raises(openai.NotFoundError) as info:
            call()
        assert_error(info.value.response, 404, param="batch_id", match=batch_id)
    assert intruder.batches.list().data == []

    batch = owner.batches.retrieve(batch_id)
    assert batch.status == "validating" and batch.cancelling_at is None
    gw.drain()
    batch = owner.batches.retrieve(batch_id)
    assert batch.status == "completed"
    assert batch.output_file_id is not None

    # nor can it read the batch's output
    with pytest.raises(openai.NotFoundError):
        intruder.files.content(batch.output_file_id)
    assert [r.custom_id for r in read_results(owner, batch.output_file_id)] == ["mine"]


# -- the admin API -------------------------------------------------------------------------

ADMIN_CALLS = [
    ("POST", "/admin/keys", {"json": {"name": "sneaky"}}),
    ("GET", "/admin/keys", {}),
    ("DELETE", "/admin/keys/key_0000000000000000", {}),
    ("PATCH", "/admin/keys/key_0000000000000000", {"json": {"rpm": 1}}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), ADMIN_CALLS)
@pytest.mark.parametrize("who", ["nobody", "wrong", "gateway-key"])
def test_admin_routes_need_the_admin_key(gw: RunningGateway, method, path, kwargs, who):
    headers: dict[str, str] = {}
    if who == "wrong":
        headers = auth("not-the-admin-secret")
    elif who == "gateway-key":
        headers = auth(gw.create_key(name="not-admin"))
    before = listed_keys(gw)
    response = httpx.request(method, gw.base_url + path, headers=headers, **kwargs)
    assert_error(response, 401, match="admin key")
    assert listed_keys(gw) == before


def test_without_an_admin_key_configured_the_admin_api_is_closed(make_gateway):
    gw = make_gateway(admin_key=None)
    for headers in ({}, ADMIN):
        response = httpx.post(f"{gw.base_url}/admin/keys", json={"name": "x"}, headers=headers)
        assert_error(response, 401, match="admin key")


@pytest.mark.parametrize(
    ("body", "param", "match"),
    [
        ({}, "name", "Missing required parameter: 'name'"),
        ({"rpm": 5}, "name", "Missing required parameter: 'name'"),
        ({"name": ""}, "name", "name"),
        ({"name": "   "}, "name", "name must not be empty"),
        ({"name": "x" * 201}, "name", "name"),
        ({"name": "x", "owner": "bob"}, "owner", "Unrecognized request argument: 'owner'"),
        ({"name": "x", "rpm": -1}, "rpm", "greater than or equal to 1"),
        ({"name": "x", "rpm": 0}, "rpm", "greater than or equal to 1"),
        ({"name": "x", "tpm": -5}, "tpm", "greater than or equal to 1"),
        ({"name": "x", "budget_usd": -0.01}, "budget_usd", "greater than or equal to 0"),
        ({"name": "x", "rpm": "lots"}, "rpm", "rpm"),
        ({"name": "x", "models": "fake-ok"}, "models", "models"),
    ],
)
def test_admin_create_key_rejects_a_bad_body(gw: RunningGateway, body, param, match):
    before = listed_keys(gw)
    response = httpx.post(f"{gw.base_url}/admin/keys", json=body, headers=ADMIN)
    code = "missing_required_parameter" if match.startswith("Missing") else None
    assert_error(response, 400, param=param, code=code, match=match)
    assert listed_keys(gw) == before


@pytest.mark.parametrize("content", [b"{name: x}", b"", b'{"name": "x"', b"\xff\xfe"])
def test_admin_create_key_rejects_invalid_json(gw: RunningGateway, content):
    response = httpx.post(
        f"{gw.base_url}/admin/keys",
        content=content,
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert_error(response, 400, match="not valid JSON")
    assert listed_keys(gw) == []


def test_admin_creates_and_lists_keys_without_their_secret(gw: RunningGateway):
    response = httpx.post(
        f"{gw.base_url}/admin/keys",
        json={"name": "team-a", "models": ["fake-ok"], "rpm": 60, "tpm": 1000, "budget_usd": 2.5},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    created = response.json()
    assert set(created) == KEY_FIELDS | {"key"}
    assert created["key"].startswith("bw-")
    assert created["id"].startswith("key_")
    assert (created["name"], created["models"], created["rpm"]) == ("team-a", ["fake-ok"], 60)
    assert (created["tpm"], created["budget_usd"], created["revoked"]) == (1000, 2.5, False)
    other_secret = gw.create_key(name="team-b")

    response = httpx.get(f"{gw.base_url}/admin/keys", headers=ADMIN)
    assert response.status_code == 200
    listing = response.json()
    assert listing["object"] == "list"
    # keys made in the same second have no defined order
    entries = sorted(listing["data"], key=lambda k: k["name"])
    assert [k["name"] for k in entries] == ["team-a", "team-b"]
    for entry in entries:
        assert set(entry) == KEY_FIELDS
    assert entries[0] == {k: v for k, v in created.items() if k != "key"}
    for secret in (created["key"], other_secret):
        assert secret not in response.text
        assert hash_key(secret) not in response.text


def test_a_revoked_key_is_refused(gw: RunningGateway):
    secret = gw.create_key(name="short-lived")
    [entry] = [k for k in listed_keys(gw) if k["name"] == "short-lived"]
    response = httpx.delete(f"{gw.base_url}/admin/keys/{entry['id']}", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": entry["id"], "revoked": True, "batches_cancelled": 0}

    # first use after revocation: nothing is cached for this key yet
    with pytest.raises(openai.AuthenticationError) as info:
        gw.client(secret).files.list()
    assert_error(info.value.response, 401, code="invalid_api_key", match="Incorrect API key")
    [entry] = [k for k in listed_keys(gw) if k["name"] == "short-lived"]
    assert entry["revoked"] is True


def test_revoking_through_this_process_takes_effect_at_once(gw: RunningGateway):
    secret = gw.create_key(name="used")
    client = gw.client(secret)
    assert client.files.list().data == []
    [entry] = [k for k in listed_keys(gw) if k["name"] == "used"]
    response = httpx.delete(f"{gw.base_url}/admin/keys/{entry['id']}", headers=ADMIN)
    assert response.status_code == 200
    with pytest.raises(openai.AuthenticationError):
        client.files.list()


def test_revoking_an_unknown_key_is_404(gw: RunningGateway):
    response = httpx.delete(f"{gw.base_url}/admin/keys/key_doesnotexist", headers=ADMIN)
    assert_error(response, 404, match="key_doesnotexist")


def test_a_key_restricted_to_models_can_run_only_those(gw: RunningGateway):
    client = gw.client(gw.create_key(models=["fake-ok"]))
    good = new_batch(client, [chat_line("ok", model="fake-ok", prompt=unique())])
    other = new_batch(
        client,
        [
            chat_line("ok", model="fake-ok", prompt=unique()),
            chat_line("other", model="fake-slow", prompt=unique()),
        ],
    )
    gw.drain()

    batch = client.batches.retrieve(good)
    assert batch.status == "completed"
    assert [r.custom_id for r in read_results(client, batch.output_file_id)] == ["ok"]

    batch = client.batches.retrieve(other)
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data is not None
    [error] = batch.errors.data
    assert (error.code, error.line, error.param) == ("model_not_found", 2, "body.model")
    assert error.message is not None and "fake-slow" in error.message
    assert batch.output_file_id is None and batch.error_file_id is None
    assert gw.fake.count(model="fake-ok") == 1  # only the good batch ran
    assert gw.fake.count(model="fake-slow") == 0


def test_keys_create_cli_prints_a_key_that_authenticates(
    make_gateway, database_url: str, tmp_path: Path
):
    config = tmp_path / "cli.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": database_url,
                "files": str(tmp_path / "cli-files"),
                "providers": {"sim": {"kind": "simulated", "latency_ms": 0}},
                "models": {"gpt-4o": {"provider": "sim", "model": "gpt-4o"}},
            }
        )
    )
    result = subprocess.run(
        [str(BATCHWAY), "keys", "create", "--name", "cli", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"key:\s+(bw-[A-Za-z0-9_-]+)", result.stdout)
    assert match, result.stdout
    secret = match.group(1)

    gw = make_gateway()  # the same database
    client = gw.client(secret)
    file_id = upload(client, b"{}\n")
    assert [f.id for f in client.files.list()] == [file_id]
    [entry] = listed_keys(gw)
    assert entry["name"] == "cli"
    assert entry["id"] in result.stdout


def test_keys_create_cli_refuses_a_limit_out_of_range(database_url: str, tmp_path: Path):
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump({"database": database_url, "files": str(tmp_path / "f")}))

    result = CliRunner().invoke(
        app, ["keys", "create", "--name", "x", "--rpm", str(2**31), "--config", str(config)]
    )

    assert result.exit_code == 1
    assert "rpm must be between 1 and 2147483647" in result.output


# -- updating keys -------------------------------------------------------------------------


def _key_id(gw: RunningGateway, name: str) -> str:
    (found,) = [k for k in listed_keys(gw) if k["name"] == name]
    return str(found["id"])


def test_patch_changes_only_what_is_sent_and_null_clears(gw: RunningGateway):
    gw.create_key(name="team-a", rpm=5, tpm=1000, budget_usd=10)
    key_id = _key_id(gw, "team-a")

    response = httpx.patch(
        f"{gw.base_url}/admin/keys/{key_id}",
        json={"rph": 100, "tpm": None, "name": "team-b", "budget_period": "month"},
        headers=ADMIN,
    )

    assert response.status_code == 200, response.text
    key = response.json()
    assert (key["name"], key["rpm"], key["rph"], key["tpm"]) == ("team-b", 5, 100, None)
    assert (key["budget_usd"], key["budget_period"]) == (10, "month")
    assert "key" not in key and "key_hash" not in key
    assert [k for k in listed_keys(gw) if k["id"] == key_id] == [key]


def test_a_patched_limit_holds_at_once(gw: RunningGateway):
    secret = gw.create_key(name="limited")
    client = gw.client(secret)
    client.models.list()
    client.chat.completions.create(model="fake-ok", messages=[{"role": "user", "content": "a"}])
    response = httpx.patch(
        f"{gw.base_url}/admin/keys/{_key_id(gw, 'limited')}", json={"rpm": 1}, headers=ADMIN
    )
    assert response.status_code == 200
    client.chat.completions.create(model="fake-ok", messages=[{"role": "user", "content": "b"}])
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="fake-ok", messages=[{"role": "user", "content": "c"}])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"rpm": 0}, "rpm"),
        ({"rph": -1}, "rph"),
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"key_hash": "0" * 64}, "key_hash"),
        ({"revoked": False}, "revoked"),
        ({"budget_period": "week"}, "budget_period"),
    ],
)
def test_patch_rejects_a_bad_body_and_changes_nothing(gw: RunningGateway, body, param):
    gw.create_key(name="steady", rpm=5)
    key_id = _key_id(gw, "steady")
    before = listed_keys(gw)
    response = httpx.patch(f"{gw.base_url}/admin/keys/{key_id}", json=body, headers=ADMIN)
    assert_error(response, 400, param=param, match=param)
    assert listed_keys(gw) == before


def test_patch_of_an_unknown_key_is_404(gw: RunningGateway):
    response = httpx.patch(f"{gw.base_url}/admin/keys/key_nope", json={"rpm": 1}, headers=ADMIN)
    assert_error(response, 404, match="key_nope")
