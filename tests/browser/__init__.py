"""Browser tests: pages driven in a real headless chromium (Debian's) through Playwright's
sync API. The fixtures are in ``conftest.py``; ``save_screenshot`` is for pictures kept
on purpose (the docs' screenshots), the failure screenshots are taken by the harness."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def save_screenshot(page: Page, folder: Path | str, name: str, *, full_page: bool = True) -> Path:
    """Save what ``page`` shows as ``folder/name.png`` (the folder is created) and return
    the file's path. ``name`` is a plain file name: letters, digits, ``.``, ``_``, ``-``."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"screenshot name {name!r} is not a plain file name")
    path = Path(folder) / (name if name.endswith(".png") else f"{name}.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page)
    return path
