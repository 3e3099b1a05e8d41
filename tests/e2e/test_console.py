"""The web console over HTTP: signing in, who sees what, forms that need their token, and
bad input answered with an error page (never a 500). The browser tests in tests/browser
drive the same pages in Chromium."""

from __future__ import annotations

import re

import httpx
import openai
import pytest

from tests.conftest import RunningGateway
from tests.helpers import chat_line, start_batch

ADMIN_KEY = "admin-secret"


def _token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_in(gw: RunningGateway, key: str) -> httpx.Client:
    """A client signed in to the console with ``key``."""
    client = httpx.Client(base_url=gw.base_url)
    form = client.get("/console/login")
    assert form.status_code == 200
    answer = client.post(
        "/console/login",
        data={"csrf": _token(form.text), "key": key, "next": "/console/batches"},
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/console/batches"
    return client


def _batch(gw: RunningGateway, key: str, prompt: str = "hello") -> str:
    client = gw.client(key)
    batch = start_batch(client, [chat_line("one", prompt=prompt), chat_line("two", prompt=prompt)])
    gw.drain()
    return batch.id


@pytest.mark.parametrize(
    "path",
    ["/console/batches", "/console/logs", "/console/usage", "/console/keys", "/console/logs/1"],
)
def test_every_page_needs_a_session(gw: RunningGateway, path: str):
    answer = httpx.get(gw.base_url + path)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/console/login?next={path}"


def test_console_root_leads_to_the_batches(gw: RunningGateway):
    answer = httpx.get(gw.base_url + "/console")
    assert (answer.status_code, answer.headers["location"]) == (303, "/console/batches")


def test_the_session_cookie_is_httponly_and_strict(gw: RunningGateway):
    form = httpx.get(f"{gw.base_url}/console/login")
    answer = httpx.post(
        f"{gw.base_url}/console/login",
        data={"csrf": _token(form.text), "key": ADMIN_KEY},
        cookies=form.cookies,
    )
    cookie = answer.headers["set-cookie"].lower()
    assert "batchway_console=" in cookie
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert ADMIN_KEY not in answer.headers["set-cookie"]


@pytest.mark.parametrize("key", ["", "bw-not-a-key", "admin-secret-not", "ключ"])
def test_a_wrong_key_does_not_sign_in(gw: RunningGateway, key: str):
    client = httpx.Client(base_url=gw.base_url)
    form = client.get("/console/login")
    answer = client.post("/console/login", data={"csrf": _token(form.text), "key": key})
    assert answer.status_code == 401
    assert "not valid" in answer.text
    assert "batchway_console=" not in answer.headers.get("set-cookie", "")
    assert client.get("/console/batches").status_code == 303


def test_signing_in_without_the_form_token_is_refused(gw: RunningGateway):
    answer = httpx.post(f"{gw.base_url}/console/login", data={"key": ADMIN_KEY, "csrf": "x"})
    assert answer.status_code == 400
    assert "batchway_console=" not in answer.headers.get("set-cookie", "")


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/v1/files"])
def test_sign_in_never_sends_you_off_the_console(gw: RunningGateway, target: str):
    client = httpx.Client(base_url=gw.base_url)
    form = client.get("/console/login")
    answer = client.post(
        "/console/login", data={"csrf": _token(form.text), "key": ADMIN_KEY, "next": target}
    )
    assert answer.headers["location"] == "/console/batches"


def test_a_form_without_its_token_changes_nothing(gw: RunningGateway):
    key = gw.create_key(name="victim")
    batch_id = _batch(gw, key)
    admin = sign_in(gw, ADMIN_KEY)
    for data in ({}, {"csrf": "forged"}):
        answer = admin.post("/console/keys", data={**data, "name": "sneaky"})
        assert answer.status_code == 401
        assert admin.post(f"/console/batches/{batch_id}/cancel", data=data).status_code == 401
    names = [
        k["name"]
        for k in httpx.get(
            f"{gw.base_url}/admin/keys", headers={"authorization": f"Bearer {ADMIN_KEY}"}
        ).json()["data"]
    ]
    assert names == ["victim"]


def test_a_gateway_key_sees_only_its_own_work(gw: RunningGateway):
    mine, theirs = gw.create_key(name="mine"), gw.create_key(name="theirs")
    my_batch = _batch(gw, mine, "my prompt")
    their_batch = _batch(gw, theirs, "their prompt")
    client = sign_in(gw, mine)

    listing = client.get("/console/batches")
    assert my_batch in listing.text and their_batch not in listing.text
    assert client.get(f"/console/batches/{their_batch}").status_code == 404
    assert client.get(f"/console/batches/{their_batch}/progress").status_code == 404
    assert (
        client.post(
            f"/console/batches/{their_batch}/cancel", data={"csrf": _token(listing.text)}
        ).status_code
        == 404
    )
    # a filter naming the other key is overridden, not trusted
    theirs_id = _key_id(gw, "theirs")
    assert their_batch not in client.get(f"/console/batches?key={theirs_id}").text
    logs = client.get(f"/console/logs?key={theirs_id}")
    assert my_batch in logs.text and their_batch not in logs.text
    assert client.get("/console/keys").status_code == 404
    their_output = gw.client(theirs).batches.retrieve(their_batch).output_file_id
    assert client.get(f"/console/files/{their_output}").status_code == 404


def _key_id(gw: RunningGateway, name: str) -> str:
    keys = httpx.get(
        f"{gw.base_url}/admin/keys", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    ).json()["data"]
    (found,) = [k["id"] for k in keys if k["name"] == name]
    return str(found)


def test_a_revoked_keys_session_ends(gw: RunningGateway):
    key = gw.create_key(name="leaving")
    client = sign_in(gw, key)
    assert client.get("/console/batches").status_code == 200
    httpx.delete(
        f"{gw.base_url}/admin/keys/{_key_id(gw, 'leaving')}",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert client.get("/console/batches").status_code == 303


def test_the_batch_page_shows_lines_files_and_figures(gw: RunningGateway):
    key = gw.create_key(name="team")
    batch_id = _batch(gw, key)
    client = sign_in(gw, ADMIN_KEY)
    page = client.get(f"/console/batches/{batch_id}")
    assert page.status_code == 200
    assert 'data-testid="status">completed<' in page.text
    assert 'data-testid="done">2<' in page.text
    assert "one" in page.text and "two" in page.text and "team" in page.text
    output = gw.client(key).batches.retrieve(batch_id).output_file_id
    download = client.get(f"/console/files/{output}")
    assert download.status_code == 200
    assert download.content == gw.client(key).files.content(output).content
    failed_only = client.get(f"/console/batches/{batch_id}?state=failed")
    assert "No lines here." in failed_only.text


def test_lines_page_through_a_batch(make_gateway):
    gw: RunningGateway = make_gateway(console={"page_size": 10})
    key = gw.create_key(name="big")
    client = gw.client(key)
    batch = start_batch(client, [chat_line(f"line-{n}") for n in range(25)])
    gw.drain()
    admin = sign_in(gw, ADMIN_KEY)
    seen: list[str] = []
    path = f"/console/batches/{batch.id}"
    while path:
        page = admin.get(path)
        seen += re.findall(r">(line-\d+)<", page.text)
        more = re.search(r'href="([^"]+)" rel="next"', page.text)
        path = more.group(1).replace("&amp;", "&") if more else ""
    assert seen == [f"line-{n}" for n in range(25)]


@pytest.mark.parametrize(
    "path",
    [
        "/console/batches?status=bogus",
        "/console/batches/batch_nope",
        "/console/batches/batch_nope/progress",
        "/console/batches/x?after_line=-5",
        "/console/logs?since=yesterday",
        "/console/logs?since=1e400",
        "/console/logs?before=abc",
        "/console/logs?kind=robot",
        "/console/logs/abc",
        "/console/logs/99999999",
        "/console/usage?interval=week",
        "/console/usage?period=1y",
        "/console/usage?since=0&interval=hour",
        "/console/keys/key_nope",
        "/console/files/file-nope",
    ],
)
def test_bad_input_is_an_error_page(gw: RunningGateway, path: str):
    client = sign_in(gw, ADMIN_KEY)
    answer = client.get(path)
    assert answer.status_code in (400, 404), answer.text
    assert 'role="alert"' in answer.text


@pytest.mark.parametrize(
    "query",
    ["after=%00", "key=%00", "model=%ff%fe", "after=" + "x" * 5000, "status=", "custom_id=%00"],
)
def test_hostile_filters_never_break_a_page(gw: RunningGateway, query: str):
    client = sign_in(gw, ADMIN_KEY)
    for path in ("/console/batches", "/console/logs", "/console/batches/batch_x"):
        answer = client.get(f"{path}?{query}")
        assert answer.status_code in (200, 400, 404), (path, answer.text)


@pytest.mark.parametrize(
    "form",
    [
        {"name": ""},
        {"name": "x", "rpm": "many"},
        {"name": "x", "rpm": "0"},
        {"name": "x", "budget_usd": "-1"},
        {"name": "x", "budget_period": "week"},
        {"name": "x" * 201},
    ],
)
def test_a_bad_key_form_creates_nothing(gw: RunningGateway, form: dict[str, str]):
    client = sign_in(gw, ADMIN_KEY)
    token = _token(client.get("/console/keys").text)
    answer = client.post("/console/keys", data={"csrf": token, **form})
    assert answer.status_code == 400
    assert (
        httpx.get(
            f"{gw.base_url}/admin/keys", headers={"authorization": f"Bearer {ADMIN_KEY}"}
        ).json()["data"]
        == []
    )


def test_keys_are_created_edited_and_revoked(gw: RunningGateway):
    admin = sign_in(gw, ADMIN_KEY)
    token = _token(admin.get("/console/keys").text)
    created = admin.post(
        "/console/keys", data={"csrf": token, "name": "ops", "rpm": "60", "budget_usd": "5"}
    )
    secret = re.search(r'data-testid="secret">([^<]+)<', created.text)
    assert secret, created.text
    openai.OpenAI(base_url=gw.url, api_key=secret.group(1), max_retries=0).models.list()
    key_id = _key_id(gw, "ops")

    edited = admin.post(
        f"/console/keys/{key_id}",
        data={"csrf": token, "name": "ops-2", "rph": "500", "tpm": "", "budget_usd": "7.5"},
    )
    assert edited.status_code == 303
    (key,) = httpx.get(
        f"{gw.base_url}/admin/keys", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    ).json()["data"]
    assert (key["name"], key["rpm"], key["rph"], key["budget_usd"]) == ("ops-2", None, 500, 7.5)

    assert admin.post(f"/console/keys/{key_id}/revoke", data={"csrf": token}).status_code == 303
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gw.url, api_key=secret.group(1), max_retries=0).models.list()


def test_the_console_can_be_turned_off(make_gateway):
    gw: RunningGateway = make_gateway(console={"enabled": False})
    assert httpx.get(f"{gw.base_url}/console/login").status_code == 404


def test_a_huge_form_is_refused_before_it_is_read(gw: RunningGateway):
    huge = b"key=" + b"x" * (2 * 1024 * 1024)
    headers = {"content-type": "application/x-www-form-urlencoded"}
    answer = httpx.post(f"{gw.base_url}/console/login", content=huge, headers=headers)
    assert answer.status_code == 413 and 'role="alert"' in answer.text

    client = sign_in(gw, ADMIN_KEY)

    def chunks():  # no Content-Length: the limit holds as the body streams in
        yield b"csrf=x&name="
        for _ in range(64):
            yield b"y" * 65536

    answer = client.post("/console/keys", content=chunks(), headers=headers)
    assert answer.status_code == 413
    assert client.post("/console/keys", content=b"name=%ff%fe", headers=headers).status_code in (
        400,
        401,
    )
