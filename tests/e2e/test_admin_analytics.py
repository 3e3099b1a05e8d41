"""The request logs from the outside: ``GET /admin/logs`` (JSON and CSV) and
``GET /admin/usage`` over HTTP, and the ``usage`` and ``logs`` commands.

Rows go in through ``SqlRequestLogs`` on the gateway's own loop, dated within the last
few days so that no retention sweep could take them.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import yaml
from typer.testing import CliRunner

from batchway.cli.analytics import logs_command, parse_since, usage_command
from batchway.config import Config
from batchway.core.models import ApiKey, RequestLog, Usage
from batchway.store.logs import SqlRequestLogs
from batchway.store.migrate import migrate
from batchway.store.sql import SqlStore, create_engine
from tests.conftest import RunningGateway

ADMIN = {"authorization": "Bearer admin-secret"}
HOUR = 3_600_000
DAY = 24 * HOUR
# midnight UTC two days ago
T0 = (int(time.time() * 1000) // DAY - 2) * DAY


def entry(at: int = T0, **fields: Any) -> RequestLog:
    values: dict[str, Any] = {
        "created_at_ms": at,
        "kind": "interactive",
        "key_id": "key_a",
        "model": "gpt-4o",
        "provider": "sim",
        "endpoint": "/v1/chat/completions",
        "status": "succeeded",
        "status_code": 200,
        "usage": Usage(input_tokens=10, cached_tokens=2, output_tokens=5),
        "latency_ms": 40.0,
        "cost_usd": 0.5,
    }
    return RequestLog(**{**values, **fields})


def line(at: int = T0, **fields: Any) -> RequestLog:
    return entry(at, **{"kind": "batch", "batch_id": "batch_1", "custom_id": "c-1", **fields})


ROWS = [
    entry(T0 + 1000, request_id="a", request_body=b'{"prompt": "hi"}', response_body=b"\xff\xfe"),
    entry(T0 + 2000, request_id="b", key_id="key_b", model="claude", provider="fake"),
    line(T0 + HOUR, request_id="c", item_id=1, status="failed", status_code=500, cost_usd=0.0),
    line(T0 + DAY, request_id="d", item_id=2, batch_id="batch_2", cost_usd=0.25),
    entry(T0 + DAY + HOUR, request_id="e", status="rate_limited", status_code=429, retries=3),
]


def store_logs(gw: RunningGateway, rows: list[RequestLog]) -> None:
    gw.run(gw.gateway.logs.insert(rows))


def get(gw: RunningGateway, path: str, headers: dict[str, str] | None = ADMIN, **params: Any):
    return httpx.get(f"{gw.base_url}{path}", params=params, headers=headers)


def listed(gw: RunningGateway, **params: Any) -> dict[str, Any]:
    response = get(gw, "/admin/logs", **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def request_ids(gw: RunningGateway, **params: Any) -> list[str]:
    return [row["request_id"] for row in listed(gw, **params)["data"]]


def assert_invalid(response: httpx.Response, param: str | None) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param


# -- GET /admin/logs ------------------------------------------------------------------------


def test_logs_as_json(gw: RunningGateway) -> None:
    store_logs(gw, ROWS)

    body = listed(gw)

    assert body["object"] == "list" and body["has_more"] is False
    data = body["data"]
    assert [row["request_id"] for row in data] == ["e", "d", "c", "b", "a"]
    assert body["last_id"] == data[-1]["id"] and body["first_id"] == data[0]["id"]
    first = data[-1]
    assert first["created_at"] == pytest.approx((T0 + 1000) / 1000)
    assert first["created_at_iso"] == (
        datetime.fromtimestamp((T0 + 1000) / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
    assert {k: first[k] for k in ("input_tokens", "cached_tokens", "output_tokens")} == {
        "input_tokens": 10,
        "cached_tokens": 2,
        "output_tokens": 5,
    }
    assert (first["cost_usd"], first["latency_ms"], first["retries"]) == (0.5, 40.0, 0)
    assert (first["request_body"], first["request_body_encoding"]) == ('{"prompt": "hi"}', "utf-8")
    assert (first["response_body"], first["response_body_encoding"]) == ("//4=", "base64")
    batch_line = data[2]
    assert (batch_line["kind"], batch_line["batch_id"], batch_line["custom_id"]) == (
        "batch",
        "batch_1",
        "c-1",
    )
    assert (batch_line["status"], batch_line["status_code"], batch_line["item_id"]) == (
        "failed",
        500,
        1,
    )
    # no body stored, none shown
    assert not {"request_body", "response_body"} & set(data[0])
    assert data[0]["retries"] == 3


def test_logs_page_with_the_cursor(gw: RunningGateway) -> None:
    store_logs(gw, ROWS)
    seen: list[str] = []
    after: int | None = None
    while True:
        body = listed(gw, limit=2, **({"after": after} if after else {}))
        seen += [row["request_id"] for row in body["data"]]
        if not body["has_more"]:
            break
        after = body["last_id"]
    assert seen == ["e", "d", "c", "b", "a"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"key": "key_b"}, ["b"]),
        ({"model": "claude"}, ["b"]),
        ({"provider": "fake"}, ["b"]),
        ({"batch": "batch_1"}, ["c"]),
        ({"status": "failed"}, ["c"]),
        ({"kind": "batch"}, ["d", "c"]),
        ({"kind": "interactive", "key": "key_a"}, ["e", "a"]),
        ({"since": str((T0 + DAY) // 1000)}, ["e", "d"]),
        ({"since": str((T0 + 1500) / 1000), "until": str((T0 + DAY) / 1000)}, ["c", "b"]),
        ({"until": datetime.fromtimestamp((T0 + HOUR) / 1000, UTC).isoformat()}, ["b", "a"]),
        # an ISO time without a zone is UTC
        (
            {"since": datetime.fromtimestamp((T0 + DAY) / 1000, UTC).strftime("%Y-%m-%dT%H:%M")},
            ["e", "d"],
        ),
        ({"until": datetime.fromtimestamp(T0 / 1000, UTC).date().isoformat()}, []),
    ],
)
def test_logs_filters(gw: RunningGateway, params: dict[str, str], expected: list[str]) -> None:
    store_logs(gw, ROWS)
    assert request_ids(gw, **params) == expected


def test_logs_as_csv(gw: RunningGateway) -> None:
    store_logs(gw, ROWS)

    response = get(gw, "/admin/logs", format="csv")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"batchway-logs.csv\"; filename*=UTF-8''batchway-logs.csv"
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["request_id"] for row in rows] == ["e", "d", "c", "b", "a"]
    assert rows[-1]["created_at"] == str((T0 + 1000) / 1000)
    assert (rows[-1]["input_tokens"], rows[-1]["cost_usd"], rows[-1]["batch_id"]) == (
        "10",
        "0.5",
        "",
    )
    assert "request_body" not in rows[0]  # exports never carry prompts


def test_a_big_csv_export_streams_every_row(gw: RunningGateway) -> None:
    total = 2345  # more than two of the export's pages
    store_logs(gw, [entry(T0 + i, request_id=str(i), key_id=f"k{i % 2}") for i in range(total)])

    with httpx.stream("GET", f"{gw.base_url}/admin/logs?format=csv", headers=ADMIN) as response:
        assert response.status_code == 200
        text = "".join(response.iter_text())

    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(row["request_id"]) for row in rows] == list(reversed(range(total)))
    # filters and the cursor hold across pages too
    after = listed(gw, limit=1, key="k1")["last_id"]
    text = get(gw, "/admin/logs", format="csv", key="k1", after=after).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(row["request_id"]) for row in rows] == list(range(total - 4, 0, -2))


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/admin/logs", {"limit": "0"}, "limit"),
        ("/admin/logs", {"limit": "1001"}, "limit"),
        ("/admin/logs", {"limit": "ten"}, "limit"),
        ("/admin/logs", {"after": "log_1"}, "after"),
        ("/admin/logs", {"since": "yesterday"}, "since"),
        ("/admin/logs", {"until": "nan"}, "until"),
        ("/admin/logs", {"until": "1e300"}, "until"),
        ("/admin/logs", {"since": "2025-01-02", "until": "2025-01-01"}, "since"),
        ("/admin/logs", {"kind": "sync"}, "kind"),
        ("/admin/logs", {"format": "xml"}, "format"),
        ("/admin/usage", {"group_by": "team"}, "group_by"),
        ("/admin/usage", {"interval": "week"}, "interval"),
        ("/admin/usage", {"since": "2025-13-01"}, "since"),
    ],
)
def test_bad_parameters(gw: RunningGateway, path: str, params: dict[str, str], param: str) -> None:
    assert_invalid(get(gw, path, **params), param)


@pytest.mark.parametrize("path", ["/admin/logs", "/admin/usage"])
def test_the_admin_key_is_needed(gw: RunningGateway, path: str) -> None:
    key = gw.create_key()
    for headers in ({}, {"authorization": f"Bearer {key}"}, {"authorization": "Bearer nope"}):
        response = get(gw, path, headers=headers, format="csv", limit="0")
        assert response.status_code == 401, response.text
        assert "admin key" in response.json()["error"]["message"]


def test_without_an_admin_key_configured_the_routes_are_closed(make_gateway: Any) -> None:
    gw = make_gateway(admin_key=None)
    for path in ("/admin/logs", "/admin/usage"):
        response = get(gw, path, headers={"authorization": "Bearer admin-secret"})
        assert response.status_code == 401, response.text


# -- GET /admin/usage -----------------------------------------------------------------------


def test_usage_totals_are_the_sum_of_the_rows(gw: RunningGateway) -> None:
    store_logs(gw, ROWS)

    response = get(gw, "/admin/usage")

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["object"], body["interval"], body["group_by"]) == ("usage", "day", None)
    assert [(s["start"], s["kind"], s["requests"]) for s in body["series"]] == [
        (T0 // 1000, "batch", 1),
        (T0 // 1000, "interactive", 2),
        ((T0 + DAY) // 1000, "batch", 1),
        ((T0 + DAY) // 1000, "interactive", 1),
    ]
    assert body["series"][0]["start_iso"] == datetime.fromtimestamp(T0 / 1000, UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z"
    )
    totals = body["totals"]
    assert totals["all"] == {
        "requests": 5,
        "input_tokens": 50,
        "cached_tokens": 10,
        "output_tokens": 25,
        "cost_usd": pytest.approx(1.75),
        "errors": 2,
    }
    assert (totals["batch"]["requests"], totals["batch"]["errors"]) == (2, 1)
    assert totals["batch"]["cost_usd"] == pytest.approx(0.25)
    assert (totals["interactive"]["requests"], totals["interactive"]["errors"]) == (3, 1)
    for name in ("requests", "input_tokens", "cached_tokens", "output_tokens", "errors"):
        assert totals["all"][name] == sum(s[name] for s in body["series"])
        for kind in ("batch", "interactive"):
            assert totals[kind][name] == sum(s[name] for s in body["series"] if s["kind"] == kind)


def test_usage_grouped_per_hour_for_one_key(gw: RunningGateway) -> None:
    store_logs(gw, ROWS)

    body = get(gw, "/admin/usage", group_by="model", interval="hour", key="key_a").json()

    assert (body["interval"], body["group_by"]) == ("hour", "model")
    assert [(s["start"], s["group"], s["kind"]) for s in body["series"]] == [
        (T0 // 1000, "gpt-4o", "interactive"),
        ((T0 + HOUR) // 1000, "gpt-4o", "batch"),
        ((T0 + DAY) // 1000, "gpt-4o", "batch"),
        ((T0 + DAY + HOUR) // 1000, "gpt-4o", "interactive"),
    ]
    assert body["totals"]["all"]["requests"] == 4


def test_usage_in_a_period(gw: RunningGateway) -> None:
    store_logs(gw, ROWS)

    body = get(gw, "/admin/usage", group_by="key", since=(T0 + DAY) // 1000).json()

    assert [(s["group"], s["kind"], s["requests"]) for s in body["series"]] == [
        ("key_a", "batch", 1),
        ("key_a", "interactive", 1),
    ]


# -- the usage and logs commands --------------------------------------------------------


def cli_app() -> typer.Typer:
    """The two commands, registered as ``batchway.cli.main`` registers them."""
    app = typer.Typer()
    app.command("usage")(usage_command)
    app.command("logs")(logs_command)
    return app


@pytest.fixture
def cli_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config on a SQLite file that holds ``ROWS``."""
    database = f"sqlite:///{tmp_path}/cli.db"

    async def fill() -> None:
        store = SqlStore(create_engine(Config(database=database).async_database_url))
        try:
            await migrate(store.engine)
            await SqlRequestLogs(store).insert(ROWS)
            await store.create_key(
                ApiKey(id="key_a", name="team-a", key_hash="a" * 64, created_at=T0 // 1000)
            )
        finally:
            await store.close()

    asyncio.run(fill())
    path = tmp_path / "batchway.yaml"
    path.write_text(yaml.safe_dump({"database": database, "files": str(tmp_path / "files")}))
    monkeypatch.setenv("COLUMNS", "200")  # the console reads it: no wrapped cells
    return path


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(cli_app(), list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_the_usage_command(cli_config: Path) -> None:
    output = run_cli("usage", "--config", str(cli_config), "--by", "key", "--interval", "hour")

    day = datetime.fromtimestamp(T0 / 1000, UTC).strftime("%Y-%m-%d")
    assert re.search(
        rf"{day} 00:00:00 .*team-a \(key_a\) .*interactive .* 1 .* 10 .* 2 .* 5 .*0\.500000",
        output,
    )
    assert re.search(rf"{day} 00:00:00 .*key_b .*interactive", output)
    assert re.search(r"batch +│ +2 +│ +20 +│ +4 +│ +10 +│ +0\.250000 +│ +1", output)
    assert re.search(r"interactive +│ +3 +│ +30 +│ +6 +│ +15 +│ +1\.500000 +│ +1", output)
    assert re.search(r"all +│ +5 +│ +50 +│ +10 +│ +25 +│ +1\.750000 +│ +2", output)


def test_the_usage_command_since(cli_config: Path) -> None:
    since = datetime.fromtimestamp((T0 + DAY) / 1000, UTC).isoformat()
    output = run_cli("usage", "-c", str(cli_config), "--since", since)
    assert re.search(r"all +│ +2 +│", output)


def test_the_logs_command(cli_config: Path) -> None:
    output = run_cli("logs", "--config", str(cli_config), "--limit", "3")

    rows = [row for row in output.splitlines() if "key_" in row]
    assert len(rows) == 3
    assert "rate_limited" in rows[0] and "batch_2/c-1" in rows[1] and "failed" in rows[2]
    assert re.search(r"10/5 +│ +40 +│ +0\.250000", rows[1])
    assert "more: older than id" in output


def test_the_logs_command_filters(cli_config: Path) -> None:
    output = run_cli("logs", "-c", str(cli_config), "--key", "key_b", "--provider", "fake")
    rows = [row for row in output.splitlines() if "key_" in row]
    assert len(rows) == 1 and "claude" in rows[0]
    output = run_cli("logs", "-c", str(cli_config), "--batch", "batch_1", "--status", "failed")
    assert [row for row in output.splitlines() if "key_" in row][0].count("batch_1/c-1") == 1


def test_the_commands_refuse_a_bad_since(cli_config: Path) -> None:
    for command in ("usage", "logs"):
        result = CliRunner().invoke(cli_app(), [command, "-c", str(cli_config), "--since", "soon"])
        assert result.exit_code == 2
        assert "--since" in result.output


def test_parse_since() -> None:
    now = 1_700_000_000.0
    assert parse_since("24h", now) == (now - 86_400) * 1000
    assert parse_since("7d", now) == (now - 7 * 86_400) * 1000
    assert parse_since("30m", now) == (now - 1800) * 1000
    assert parse_since("2w", now) == (now - 14 * 86_400) * 1000
    assert parse_since("2023-11-14", now) == 1_699_920_000_000
    assert parse_since("2023-11-14T01:00:00+01:00", now) == 1_699_920_000_000
