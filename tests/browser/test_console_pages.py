"""The console in a real browser (headless Chromium): sign in, watch a batch complete, cancel
one, filter the logs, read the usage chart's numbers, create, edit and revoke a key, and
find another key's batch out of reach.

With ``BATCHWAY_SCREENSHOTS=FOLDER`` set, each page is saved there as it is seen (the
screenshots in docs/console.md are made so).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser import save_screenshot
from tests.conftest import RunningGateway
from tests.helpers import chat_line, start_batch

ADMIN_KEY = "admin-secret"
# a price for the fake upstream's model, so that costs show (per million tokens)
PRICED = {"prices": {"fake-ok": {"input": 2.5, "output": 10.0}}}


def _keep(page: Page, name: str) -> None:
    folder = os.environ.get("BATCHWAY_SCREENSHOTS")
    if folder:
        save_screenshot(page, Path(folder), name)


def _sign_in(page: Page, gw: RunningGateway, key: str) -> None:
    page.goto(f"{gw.base_url}/console")
    expect(page).to_have_url(re.compile(r"/console/login"))
    page.get_by_label("Key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console/batches$"))


def _key_id(gw: RunningGateway, name: str) -> str:
    keys = httpx.get(
        f"{gw.base_url}/admin/keys", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    ).json()["data"]
    (found,) = [k["id"] for k in keys if k["name"] == name]
    return str(found)


@pytest.fixture
def priced(make_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    return make_gateway(console={"refresh_seconds": 0.5}, **PRICED)


def test_a_batch_is_watched_to_completion(page: Page, priced: RunningGateway):
    gw = priced
    key = gw.create_key(name="team-a")
    batch = start_batch(gw.client(key), [chat_line(f"line-{n}") for n in range(12)])
    _sign_in(page, gw, ADMIN_KEY)

    row = page.locator(f'tr[data-batch="{batch.id}"]')
    expect(row).to_contain_text("validating")
    expect(row).to_contain_text("team-a")
    row.get_by_role("link", name=batch.id).click()
    expect(page.get_by_test_id("status")).to_have_text("validating")

    gw.drain()  # the worker runs the batch; the page follows without a reload

    expect(page.get_by_test_id("status")).to_have_text("completed")
    expect(page.get_by_test_id("done")).to_have_text("12")
    expect(page.get_by_test_id("succeeded")).to_have_text("12")
    expect(page.get_by_test_id("cost")).not_to_have_text("$0.00")
    expect(page.get_by_test_id("lines").locator("tbody tr")).to_have_count(12)
    expect(page.get_by_test_id("output-file")).to_be_visible()
    _keep(page, "batch")
    page.goto(f"{gw.base_url}/console/batches")
    _keep(page, "batches")


def test_a_batch_is_cancelled_from_its_page(page: Page, priced: RunningGateway):
    gw = priced
    key = gw.create_key(name="team-b")
    batch = start_batch(gw.client(key), [chat_line(f"line-{n}") for n in range(5)])
    _sign_in(page, gw, ADMIN_KEY)
    page.goto(f"{gw.base_url}/console/batches/{batch.id}")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel batch").click()

    expect(page.get_by_test_id("status")).to_have_text(re.compile("cancell(ing|ed)"))
    gw.drain()
    expect(page.get_by_test_id("status")).to_have_text("cancelled")
    assert gw.client(key).batches.retrieve(batch.id).status == "cancelled"
    expect(page.get_by_role("button", name="Cancel batch")).to_have_count(0)


def test_logs_are_filtered_and_open_their_detail(
    page: Page, make_gateway: Callable[..., RunningGateway]
):
    gw = make_gateway(logs={"record_bodies": True}, **PRICED)
    client = gw.client(gw.create_key(name="chatty"))
    client.chat.completions.create(model="fake-ok", messages=[{"role": "user", "content": "ok"}])
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "sim"}])
    gw.run(gw.gateway.accounting.flush())
    _sign_in(page, gw, ADMIN_KEY)

    page.goto(f"{gw.base_url}/console/logs")
    rows = page.get_by_test_id("logs").locator("tbody tr")
    expect(rows).to_have_count(2)
    _keep(page, "logs")
    page.get_by_label("Model").select_option("fake-ok")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("fake-ok")
    expect(rows.first).to_contain_text("chatty")

    rows.first.get_by_role("link").click()
    expect(page.get_by_test_id("request-body")).to_contain_text('"content":"ok"')
    expect(page.get_by_test_id("log")).to_contain_text("fake")
    _keep(page, "log")


def test_usage_chart_numbers_match_the_usage_report(page: Page, priced: RunningGateway):
    gw = priced
    key = gw.create_key(name="spender")
    client = gw.client(key)
    start_batch(client, [chat_line(f"b-{n}") for n in range(4)])
    gw.drain()
    for n in range(3):
        client.chat.completions.create(
            model="fake-ok", messages=[{"role": "user", "content": f"hi {n}"}]
        )
    gw.run(gw.gateway.accounting.flush())
    report = httpx.get(
        f"{gw.base_url}/admin/usage",
        params={"interval": "hour", "group_by": "model", "since": "0"},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    ).json()["totals"]
    _sign_in(page, gw, ADMIN_KEY)

    page.goto(f"{gw.base_url}/console/usage?period=24h&interval=hour&group_by=model")
    expect(page.locator("#cost-chart canvas")).to_have_count(1)
    chart = page.evaluate(
        """() => {
            const data = document.getElementById('cost-chart').chart.data;
            const sum = (i) => data[i].reduce((a, b) => a + b, 0);
            return {batch: sum(1), interactive: sum(2)};
        }"""
    )
    assert chart["batch"] == pytest.approx(report["batch"]["cost_usd"])
    assert chart["interactive"] == pytest.approx(report["interactive"]["cost_usd"])
    assert report["batch"]["requests"] == 4 and report["interactive"]["requests"] == 3
    totals = page.get_by_test_id("totals")
    expect(totals.locator('tr[data-kind="batch"]')).to_contain_text("4")
    expect(totals.locator('tr[data-kind="interactive"]')).to_contain_text("3")
    expect(page.get_by_test_id("cost-all")).to_have_text(
        f"${report['all']['cost_usd']:,.6f}".rstrip("0")
    )
    _keep(page, "usage")


def test_keys_are_created_edited_and_revoked(page: Page, priced: RunningGateway):
    gw = priced
    _sign_in(page, gw, ADMIN_KEY)
    page.get_by_role("link", name="Keys").click()

    form = page.get_by_test_id("create-key")
    form.get_by_label("Name").fill("nightly-jobs")
    form.get_by_label("Requests / minute").fill("120")
    form.get_by_label("Budget (USD)").fill("25")
    form.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("secret").inner_text()
    assert secret.startswith("bw-")
    gw.client(secret).models.list()  # the new key works
    _keep(page, "keys")

    page.get_by_role("link", name="nightly-jobs").first.click()
    edit = page.get_by_test_id("edit-key")
    edit.get_by_label("Requests / hour").fill("3000")
    edit.get_by_label("Requests / minute").fill("")
    edit.get_by_role("button", name="Save").click()
    expect(edit.get_by_label("Requests / hour")).to_have_value("3000")
    key = httpx.get(
        f"{gw.base_url}/admin/keys", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    ).json()["data"][0]
    assert (key["rph"], key["rpm"], key["budget_usd"]) == (3000, None, 25)

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke key").click()
    expect(page.locator(f'tr[data-key="{_key_id(gw, "nightly-jobs")}"]')).to_contain_text("revoked")


def test_a_gateway_key_cannot_see_another_keys_batch(page: Page, priced: RunningGateway):
    gw = priced
    mine, theirs = gw.create_key(name="mine"), gw.create_key(name="theirs")
    my_batch = start_batch(gw.client(mine), [chat_line("m")])
    their_batch = start_batch(gw.client(theirs), [chat_line("t")])
    _sign_in(page, gw, mine)

    expect(page.locator(f'tr[data-batch="{my_batch.id}"]')).to_have_count(1)
    expect(page.locator(f'tr[data-batch="{their_batch.id}"]')).to_have_count(0)
    expect(page.get_by_role("link", name="Keys")).to_have_count(0)
    response = page.goto(f"{gw.base_url}/console/batches/{their_batch.id}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("alert")).to_contain_text(their_batch.id)
