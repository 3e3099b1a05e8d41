"""Test helpers shipped with batchway: a fake upstream and a threaded server runner."""

from __future__ import annotations

from batchway.testing.fake_batch_apis import (
    FakeAnthropicAPI,
    FakeAzureBatchAPI,
    FakeOpenAIBatchAPI,
    RecordedAPIRequest,
)
from batchway.testing.fake_upstream import FakeUpstream, RecordedRequest
from batchway.testing.server import ServerHandle, serve_in_thread

__all__ = [
    "FakeAnthropicAPI",
    "FakeAzureBatchAPI",
    "FakeOpenAIBatchAPI",
    "FakeUpstream",
    "RecordedAPIRequest",
    "RecordedRequest",
    "ServerHandle",
    "serve_in_thread",
]
