"""A drain with a time limit: a batch that never ends fails the test instead of hanging it."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import RunningGateway

__all__ = ["drain_or_fail"]

DRAIN_SECONDS = 20.0  # a fuzz batch takes well under a second


def drain_or_fail(
    gw: RunningGateway, http: httpx.Client, *batch_ids: str, seconds: float = DRAIN_SECONDS
) -> None:
    """Drain the worker; if it does not come to rest in time, fail naming where the batches
    are stuck."""
    try:
        gw.run(asyncio.wait_for(gw.gateway.worker.drain(), seconds), timeout=seconds + 10)
    except TimeoutError:
        stuck = {}
        for batch_id in batch_ids:
            response = http.get(f"/v1/batches/{batch_id}")
            status = response.json().get("status") if response.status_code == 200 else None
            stuck[batch_id] = status or response.status_code
        pytest.fail(f"the worker did not come to rest within {seconds}s: {stuck}")
