"""Test helpers shipped with batchway: a fake upstream and fake batch APIs on HTTP (served
with `batchway.server.serve_in_thread`), and in-memory fakes of every port
(``batchway.testing.memory``)."""

from __future__ import annotations

from batchway.testing.fake_batch_apis import (
    FakeAnthropicAPI,
    FakeAzureBatchAPI,
    FakeOpenAIBatchAPI,
    RecordedAPIRequest,
)
from batchway.testing.fake_upstream import FakeUpstream, RecordedRequest
from batchway.testing.memory import (
    MemoryBlobStore,
    MemoryProvider,
    MemoryRequestLogs,
    MemoryStore,
    MemoryUpstreamBatches,
)

__all__ = [
    "FakeAnthropicAPI",
    "FakeAzureBatchAPI",
    "FakeOpenAIBatchAPI",
    "FakeUpstream",
    "MemoryBlobStore",
    "MemoryProvider",
    "MemoryRequestLogs",
    "MemoryStore",
    "MemoryUpstreamBatches",
    "RecordedAPIRequest",
    "RecordedRequest",
]
