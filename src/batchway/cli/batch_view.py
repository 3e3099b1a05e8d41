"""What the client commands show of a remote batch, read from either dialect's object.

An OpenAI batch (the ``openai`` SDK's ``Batch``, from ``/v1/batches``) and an Anthropic
message batch (JSON from ``/v1/messages/batches``) both become a ``BatchView``: the status in
the gateway's own words, counts, whether and how the batch ended, where its results are, and
the rows ``batchway batches get`` prints. How a batch ended decides the command's exit code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from batchway.errors import ClientError

if TYPE_CHECKING:
    from openai.types import Batch as OpenAIBatch

__all__ = [
    "BatchView",
    "ExitCode",
    "Outcome",
    "from_message_batch",
    "from_openai_batch",
    "timestamp",
]


class Outcome(StrEnum):
    """How an ended batch ended."""

    COMPLETED = "completed"  # every line ran (some may have failed on their own)
    FAILED = "failed"  # the input was refused as a whole: nothing ran
    EXPIRED = "expired"  # the completion window closed before every line ran
    CANCELLED = "cancelled"  # someone cancelled it

    @property
    def exit_code(self) -> ExitCode:
        return _OUTCOME_EXIT[self]


class ExitCode(IntEnum):
    """The exit codes of ``batchway batches``."""

    OK = 0  # the batch completed, or the command did what it was asked
    FAILED = 1  # the batch failed: its input was invalid
    USAGE = 2  # bad arguments or local file, or the gateway refused the call (4xx)
    EXPIRED = 3  # the batch expired
    CANCELLED = 4  # the batch was cancelled
    UNREACHABLE = 5  # the gateway could not be reached or failed (5xx), polling gave up
    INTERRUPTED = 130  # Ctrl-C: the batch, if created, keeps running


_OUTCOME_EXIT = {
    Outcome.COMPLETED: ExitCode.OK,
    Outcome.FAILED: ExitCode.FAILED,
    Outcome.EXPIRED: ExitCode.EXPIRED,
    Outcome.CANCELLED: ExitCode.CANCELLED,
}
_OPENAI_ENDED = {outcome.value: outcome for outcome in Outcome}


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchView:
    """A remote batch as the client commands see it."""

    id: str
    kind: Literal["openai", "message"]  # which routes answer for it
    status: str  # the gateway's word: an OpenAI status or Anthropic's processing_status
    outcome: Outcome | None  # None while it runs
    total: int
    succeeded: int
    failed: int  # every line that did not succeed: errored, cancelled, expired
    live: bool  # whether the counts move while it runs (Anthropic's are filled in at the end)
    created_at: int | None = None
    endpoint: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    results_url: str | None = None
    rows: tuple[tuple[str, str], ...] = ()  # label, value: what `get` prints
    errors: tuple[str, ...] = ()  # why the input was refused, one problem a line

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    @property
    def done(self) -> int:
        return self.succeeded + self.failed


def timestamp(seconds: int | None) -> str:
    """Epoch seconds as a UTC time to read."""
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def from_openai_batch(batch: OpenAIBatch) -> BatchView:
    """The view of a batch in the OpenAI shape (also a message batch read on ``/v1/batches``)."""
    counts = batch.request_counts
    total, succeeded, failed = (
        (counts.total, counts.completed, counts.failed) if counts else (0, 0, 0)
    )
    rows: list[tuple[str, str]] = [
        ("status", batch.status),
        ("endpoint", batch.endpoint),
        ("window", batch.completion_window),
    ]
    if batch.model:
        rows.append(("model", batch.model))
    rows.append(("requests", f"{total} total, {succeeded} succeeded, {failed} failed"))
    for label, file_id in (
        ("input file", batch.input_file_id),
        ("output file", batch.output_file_id),
        ("error file", batch.error_file_id),
    ):
        if file_id:
            rows.append((label, file_id))
    for label, moment in (
        ("created", batch.created_at),
        ("in progress", batch.in_progress_at),
        ("finalizing", batch.finalizing_at),
        ("completed", batch.completed_at),
        ("failed", batch.failed_at),
        ("expired", batch.expired_at),
        ("cancelling", batch.cancelling_at),
        ("cancelled", batch.cancelled_at),
        ("expires", batch.expires_at),
    ):
        if moment:
            rows.append((label, timestamp(moment)))
    if batch.metadata:
        rows.append(("metadata", ", ".join(f"{k}={v}" for k, v in batch.metadata.items())))
    if batch.usage:
        usage = batch.usage
        rows.append(("tokens", f"{usage.input_tokens} in, {usage.output_tokens} out"))
    errors = tuple(
        f"line {error.line}: {error.code}: {error.message}"
        if error.line is not None
        else f"{error.code}: {error.message}"
        for error in (batch.errors.data or [] if batch.errors else [])
    )
    return BatchView(
        id=batch.id,
        kind="message" if batch.id.startswith("msgbatch_") else "openai",
        status=batch.status,
        outcome=_OPENAI_ENDED.get(batch.status),
        total=total,
        succeeded=succeeded,
        failed=failed,
        live=True,
        created_at=batch.created_at,
        endpoint=batch.endpoint,
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
        rows=tuple(rows),
        errors=errors,
    )


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")  # a newer gateway may add fields


class _RequestCounts(_Lenient):
    processing: int
    succeeded: int
    errored: int
    canceled: int
    expired: int


class _MessageBatch(_Lenient):
    id: str
    processing_status: str
    request_counts: _RequestCounts
    created_at: datetime
    expires_at: datetime | None = None
    ended_at: datetime | None = None
    cancel_initiated_at: datetime | None = None
    results_url: str | None = None


def _rfc3339_seconds(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def from_message_batch(data: Mapping[str, Any]) -> BatchView:
    """The view of a message batch from ``/v1/messages/batches`` (Anthropic's shape).

    Anthropic counts every request as ``processing`` until the batch has ended; an ended
    batch was cancelled if a cancel was asked, expired if requests expired, else completed.
    """
    try:
        batch = _MessageBatch.model_validate(data)
    except ValidationError as exc:
        raise ClientError("the gateway answered something that is not a message batch") from exc
    counts = batch.request_counts
    outcome: Outcome | None = None
    if batch.processing_status == "ended":
        if batch.cancel_initiated_at is not None:
            outcome = Outcome.CANCELLED
        elif counts.expired:
            outcome = Outcome.EXPIRED
        else:
            outcome = Outcome.COMPLETED
    failed = counts.errored + counts.canceled + counts.expired
    if outcome is None:
        summary = f"{counts.processing} processing"
    else:
        summary = (
            f"{counts.succeeded} succeeded, {counts.errored} errored, "
            f"{counts.canceled} canceled, {counts.expired} expired"
        )
    rows: list[tuple[str, str]] = [
        ("status", batch.processing_status),
        ("requests", summary),
    ]
    if batch.results_url:
        rows.append(("results", batch.results_url))
    for label, moment in (
        ("created", batch.created_at),
        ("cancel asked", batch.cancel_initiated_at),
        ("ended", batch.ended_at),
        ("expires", batch.expires_at),
    ):
        if moment is not None:
            rows.append((label, timestamp(_rfc3339_seconds(moment))))
    return BatchView(
        id=batch.id,
        kind="message",
        status=batch.processing_status,
        outcome=outcome,
        total=counts.processing + counts.succeeded + failed,
        succeeded=counts.succeeded,
        failed=failed,
        live=False,
        created_at=_rfc3339_seconds(batch.created_at),
        endpoint="/v1/messages",
        results_url=batch.results_url,
        rows=tuple(rows),
    )
