"""Following a remote batch until it ends: polling with backoff, drawn as a progress bar.

Polls start 1 s apart and back off to 5 s, starting over whenever the batch changes status.
A poll that fails for a reason worth retrying (no answer, a 5xx or 429) is retried, up to
``MAX_POLL_FAILURES`` in a row; any other failure ends the watch at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from batchway.cli.batch_view import BatchView
from batchway.errors import ClientError, GatewayUnreachable

if TYPE_CHECKING:
    from batchway.cli.remote import Remote

__all__ = ["FIRST_INTERVAL", "MAX_INTERVAL", "MAX_POLL_FAILURES", "follow", "next_interval"]

FIRST_INTERVAL = 1.0
MAX_INTERVAL = 5.0
BACKOFF = 1.5
MAX_POLL_FAILURES = 5


def next_interval(interval: float) -> float:
    """The wait before the next poll, after waiting ``interval`` before this one."""
    return min(interval * BACKOFF, MAX_INTERVAL)


class _RateColumn(ProgressColumn):
    """Lines finished per second, as Rich measures them from the recent polls."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text("-/s" if speed is None else f"{speed:.1f}/s", style="progress.data.speed")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        _RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _show(progress: Progress, task: TaskID, view: BatchView, note: str = "") -> None:
    live = view.live or view.ended  # Anthropic's counts are known once it has ended
    progress.update(
        task,
        description=view.status + (f" ({note})" if note else ""),
        total=view.total if live and view.total else None,
        completed=view.done if live else 0,
        failed=view.failed if live else "?",
    )


def follow(
    remote: Remote,
    batch_id: str,
    console: Console,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchView:
    """Poll the batch until it has ended, drawing its progress; returns it ended.

    Ctrl-C propagates (``KeyboardInterrupt``): the batch itself is left running.
    """
    view = remote.poll(batch_id)
    with _progress(console) as progress:
        task = progress.add_task(view.status, total=None, failed=0)
        _show(progress, task, view)
        interval = FIRST_INTERVAL
        failures = 0
        while not view.ended:
            sleep(interval)
            try:
                latest = remote.poll(batch_id)
            except ClientError as exc:
                failures += 1
                if not exc.retryable:
                    raise
                if failures >= MAX_POLL_FAILURES:
                    raise GatewayUnreachable(
                        f"stopped watching {batch_id} after {failures} failed polls in a row "
                        f"(the batch may still be running): {exc.message}"
                    ) from exc
                _show(
                    progress,
                    task,
                    view,
                    f"poll failed, retry {failures} of {MAX_POLL_FAILURES - 1}",
                )
                interval = next_interval(interval)
                continue
            failures = 0
            changed = latest.status != view.status
            interval = FIRST_INTERVAL if changed else next_interval(interval)
            view = latest
            _show(progress, task, view)
    return view
