"""The expired-file sweep's own loop: a failed sweep is logged and tried again later."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from batchway.config import FileExpiryConfig
from batchway.core.housekeeping import Housekeeping


class Files:
    """Stands in for the file service: counts sweeps, fails the first ``failures``."""

    def __init__(self, failures: int = 0, removed: int = 3) -> None:
        self.calls: list[int] = []
        self._failures = failures
        self._removed = removed

    async def delete_expired(self, *, chunk: int) -> int:
        self.calls.append(chunk)
        if len(self.calls) <= self._failures:
            raise OSError("the database is away")
        return self._removed


async def test_a_sweep_passes_the_chunk_and_reports_what_went() -> None:
    files = Files()
    housekeeping = Housekeeping(files, FileExpiryConfig(chunk=7))  # type: ignore[arg-type]
    assert await housekeeping.sweep() == 3
    assert files.calls == [7]


async def test_a_failed_sweep_is_logged_and_the_next_one_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    files: Any = Files(failures=1)
    housekeeping = Housekeeping(files, FileExpiryConfig())
    with caplog.at_level(logging.ERROR, logger="batchway.housekeeping"):
        assert await housekeeping.sweep() == 0
    [record] = caplog.records
    assert record.action == "file_expiry_failed"  # type: ignore[attr-defined]
    assert await housekeeping.sweep() == 3
