"""An idle worker costs little: it looks for work less and less often, and a new batch
still starts at once (its creation wakes the worker)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import event

from tests.helpers import chat_line, read_results, start_batch, unique


def _statements_while_idle(gw: Any, seconds: float) -> int:
    """SQL statements the worker runs in ``seconds`` of idling, after a first second."""

    async def idle() -> int:
        engine = gw.gateway.store.engine.sync_engine
        statements = 0

        def count(*_: Any) -> None:
            nonlocal statements
            statements += 1

        task = asyncio.ensure_future(gw.gateway.worker.run())
        await asyncio.sleep(1.0)
        event.listen(engine, "before_cursor_execute", count)
        try:
            await asyncio.sleep(seconds)
        finally:
            event.remove(engine, "before_cursor_execute", count)
            gw.gateway.worker.stop()
            await task
        return statements

    return gw.run(idle())


def test_an_idle_worker_looks_for_work_less_and_less_often(make_gateway: Any) -> None:
    steady = make_gateway(worker={"idle_poll_seconds": 0.02, "idle_poll_max_seconds": 0.02})
    backing_off = make_gateway(worker={"idle_poll_seconds": 0.02, "idle_poll_max_seconds": 0.64})
    polled = _statements_while_idle(steady, 2.0)
    backed_off = _statements_while_idle(backing_off, 2.0)
    assert polled > 20
    assert backed_off * 5 < polled, (backed_off, polled)


def test_a_batch_created_while_the_worker_sleeps_long_starts_at_once(make_gateway: Any) -> None:
    gw = make_gateway(
        worker={"enabled": True, "idle_poll_seconds": 0.05, "idle_poll_max_seconds": 600}
    )
    time.sleep(1.5)  # idle long enough for the worker's sleeps to reach minutes
    client = gw.client()
    tag = unique()
    batch = start_batch(client, [chat_line(f"w{i}", prompt=f"{tag} {i}") for i in range(5)])
    deadline = time.monotonic() + 60
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        assert time.monotonic() < deadline, f"batch still {batch.status}"
        time.sleep(0.05)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert len(read_results(client, batch.output_file_id)) == 5
