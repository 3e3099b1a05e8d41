"""Domain objects to OpenAI wire objects."""

from __future__ import annotations

from batchway.core.models import Batch, StoredFile
from batchway.core.states import BatchStatus
from batchway.dialects.openai.wire import (
    OpenAIBatch,
    OpenAIBatchError,
    OpenAIBatchErrors,
    OpenAIBatchRequestCounts,
    OpenAIBatchUsage,
    OpenAIFile,
)

__all__ = ["from_core_batch", "from_core_file"]


def from_core_file(file: StoredFile) -> OpenAIFile:
    return OpenAIFile(
        id=file.id,
        bytes=file.bytes,
        created_at=file.created_at,
        expires_at=file.expires_at,
        filename=file.filename,
        purpose=file.purpose,
        status=file.status,
    )


def from_core_batch(batch: Batch) -> OpenAIBatch:
    counts = batch.counts
    errors = None
    if batch.errors:
        errors = OpenAIBatchErrors(
            data=[
                OpenAIBatchError(code=e.code, message=e.message, param=e.param, line=e.line)
                for e in batch.errors
            ]
        )
    usage = None
    # token totals are summed when the batch ends
    if batch.status.terminal and batch.status is not BatchStatus.FAILED:
        usage = OpenAIBatchUsage.model_validate(
            {
                "input_tokens": batch.usage.input_tokens,
                "input_tokens_details": {"cached_tokens": batch.usage.cached_tokens},
                "output_tokens": batch.usage.output_tokens,
                "output_tokens_details": {"reasoning_tokens": batch.usage.reasoning_tokens},
                "total_tokens": batch.usage.total_tokens,
            }
        )
    return OpenAIBatch(
        id=batch.id,
        endpoint=batch.endpoint,
        model=batch.model,
        errors=errors,
        input_file_id=batch.input_file_id,
        completion_window=batch.completion_window,
        status=batch.status.value,
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
        created_at=batch.created_at,
        in_progress_at=batch.in_progress_at,
        expires_at=batch.expires_at,
        finalizing_at=batch.finalizing_at,
        completed_at=batch.completed_at,
        failed_at=batch.failed_at,
        expired_at=batch.expired_at,
        cancelling_at=batch.cancelling_at,
        cancelled_at=batch.cancelled_at,
        request_counts=OpenAIBatchRequestCounts(
            total=counts.total,
            completed=counts.succeeded,
            # every line that went, or will go, to the error file, so that at the end
            # completed + failed == total
            failed=counts.unsuccessful,
        ),
        usage=usage,
        metadata=batch.metadata,
    )
