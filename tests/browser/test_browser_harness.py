"""The browser harness itself: chromium reaches a running gateway, runs a page's scripts,
takes screenshots, and leaves asyncio usable for the rest of the suite."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser import save_screenshot
from tests.conftest import RunningGateway

BUTTON_PAGE = """
<!doctype html>
<title>harness</title>
<p id="status">waiting</p>
<button id="go" onclick="document.getElementById('status').textContent = 'clicked ' + (2 + 3)">
  Go
</button>
"""


def test_the_browser_reaches_a_running_gateway(gw: RunningGateway, page: Page) -> None:
    response = page.goto(f"{gw.base_url}/healthz")
    assert response is not None and response.status == 200
    assert json.loads(page.locator("body").inner_text()) == {"status": "ok"}


def test_a_page_runs_its_scripts(page: Page) -> None:
    page.set_content(BUTTON_PAGE)
    expect(page.locator("#status")).to_have_text("waiting")
    page.get_by_role("button", name="Go").click()
    expect(page.locator("#status")).to_have_text("clicked 5")
    assert page.viewport_size == {"width": 1280, "height": 800}


def test_screenshots_are_saved_by_name(page: Page, screenshot: Any, tmp_path: Path) -> None:
    page.set_content(BUTTON_PAGE)
    kept = save_screenshot(page, tmp_path / "docs", "console-home")
    default = screenshot("button")
    for path in (kept, default):
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert kept == tmp_path / "docs" / "console-home.png"
    assert default == tmp_path / "button.png"


def test_asyncio_run_works_after_a_browser_test() -> None:
    assert asyncio._get_running_loop() is None
    assert asyncio.run(asyncio.sleep(0, result="ran")) == "ran"


async def test_async_tests_run_after_a_browser_test() -> None:
    assert await asyncio.sleep(0, result="ran") == "ran"
