"""A static check that each fake implements its port: ``mypy --strict`` reads the
assignments below (nothing here runs)."""

from __future__ import annotations

from batchway.core import ports
from batchway.core.ratelimit import MemoryRateLimiter
from batchway.testing.memory.blobs import MemoryBlobStore
from batchway.testing.memory.logs import MemoryRequestLogs
from batchway.testing.memory.native import MemoryNativeBatchAPI
from batchway.testing.memory.provider import MemoryProvider
from batchway.testing.memory.store import MemoryStore
from batchway.testing.memory.upstream import MemoryUpstreamBatches


def _implements(
    store: MemoryStore,
    upstream: MemoryUpstreamBatches,
    logs: MemoryRequestLogs,
    blobs: MemoryBlobStore,
    provider: MemoryProvider,
    limiter: MemoryRateLimiter,
    native: MemoryNativeBatchAPI,
) -> None:
    _store: ports.Store = store
    _upstream: ports.UpstreamBatchStore = upstream
    _logs: ports.RequestLogs = logs
    _blobs: ports.BlobStore = blobs
    _provider: ports.Provider = provider
    _limiter: ports.RateLimiter = limiter
    _native: ports.NativeBatchAPI = native
