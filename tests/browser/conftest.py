"""A headless chromium for the browser tests, driven with Playwright's sync API.

Chromium is Debian's (``apt-get install chromium``; ``scripts/test.sh`` installs it when it
runs as root), never Playwright's own download. Without it the browser tests are skipped,
except under CI (``CI=true``), where that is a failure.

- ``browser_session`` (session): the Playwright driver, one chromium, and the driver's loop.
- ``browser`` (session): that chromium, for a test that wants contexts of its own.
- ``page`` (per test): a page in a fresh context (1280x800, 10 s timeouts). When the test
  fails, what it shows is saved as ``failure.png`` in the test's ``tmp_path`` and the path
  is printed in the report.
- ``screenshot(name, folder=None)``: saves the page as ``folder/name.png`` (``tmp_path`` by
  default) and returns the path; ``tests.browser.save_screenshot`` does it for any page.

Browser tests are plain sync functions. Playwright's sync API runs an asyncio loop in the
test's thread and leaves it marked as running between its calls, which would stop every
later ``asyncio.run`` and every async test of the session. The harness therefore marks the
loop as running only while browser code runs: the fixtures' own calls and the body of a test
that uses them. Inside such a test's body, use ``gw.run(coroutine)`` rather than
``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, ViewportSize, expect, sync_playwright

from tests.browser import save_screenshot

DEFAULT_TIMEOUT_MS = 10_000
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
# root in a container: no user namespaces for the sandbox, and a /dev/shm that may be small
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage"]


@dataclass
class BrowserSession:
    playwright: Playwright
    browser: Browser
    loop: asyncio.AbstractEventLoop

    @contextmanager
    def driving(self) -> Iterator[None]:
        """Mark Playwright's loop as this thread's running loop for the block, as its sync
        calls need, and put back what was there before."""
        previous = asyncio._get_running_loop()
        asyncio._set_running_loop(self.loop)
        try:
            yield
        finally:
            asyncio._set_running_loop(previous)


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        reason = (
            "chromium is not installed: apt-get install chromium (scripts/test.sh installs it "
            "when run as root)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def browser_session() -> Iterator[BrowserSession]:
    executable = _chromium()
    playwright = sync_playwright().start()
    loop = asyncio._get_running_loop()  # Playwright's, left marked as running
    assert loop is not None
    try:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
    except BaseException:
        playwright.stop()
        raise
    finally:
        asyncio._set_running_loop(None)
    expect.set_options(timeout=DEFAULT_TIMEOUT_MS)
    session = BrowserSession(playwright=playwright, browser=browser, loop=loop)
    try:
        yield session
    finally:
        with session.driving():
            try:
                browser.close()
            finally:
                playwright.stop()


@pytest.fixture(scope="session")
def browser(browser_session: BrowserSession) -> Browser:
    return browser_session.browser


@pytest.fixture
def page(
    browser_session: BrowserSession, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Page]:
    """A page in a context of its own (cookies, storage), closed after the test."""
    if inspect.iscoroutinefunction(request.function):
        pytest.fail("browser tests are plain functions: Playwright's sync API runs its own loop")
    with browser_session.driving():
        context = browser_session.browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        new_page = context.new_page()
    try:
        yield new_page
    finally:
        with browser_session.driving():
            context.close()


@pytest.fixture
def screenshot(page: Page, tmp_path: Path) -> Callable[..., Path]:
    """``screenshot(name, folder=None, *, full_page=True)``: save the page as
    ``folder/name.png`` (``tmp_path`` by default); returns the path."""

    def take(name: str, folder: Path | str | None = None, *, full_page: bool = True) -> Path:
        return save_screenshot(
            page, tmp_path if folder is None else folder, name, full_page=full_page
        )

    return take


def _session_of(item: pytest.Item) -> BrowserSession | None:
    session = getattr(item, "funcargs", {}).get("browser_session")
    return session if isinstance(session, BrowserSession) else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    session = _session_of(item)
    if session is None:
        return (yield)
    with session.driving():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when != "call" or not report.failed:
        return report
    session = _session_of(item)
    funcargs = getattr(item, "funcargs", {})
    page, tmp_path = funcargs.get("page"), funcargs.get("tmp_path")
    if session is None or not isinstance(page, Page) or tmp_path is None:
        return report
    try:
        with session.driving():
            path = save_screenshot(page, tmp_path, "failure")
    except Exception as exc:  # the page may be what broke
        report.sections.append(("browser screenshot", f"none taken: {exc}"))
    else:
        report.sections.append(("browser screenshot", str(path)))
    return report
