"""The composition root: builds the store, providers, services and worker from a config."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from batchway.config import Config
from batchway.core.batches import BatchService
from batchway.core.files import FileService
from batchway.core.keys import KeyService
from batchway.core.routing import Router
from batchway.providers.registry import ProviderRegistry
from batchway.store.blobs import BlobStore, open_blob_store
from batchway.store.migrate import migrate
from batchway.store.sql import SqlStore, create_engine
from batchway.worker.runner import Worker

__all__ = ["Gateway", "open_gateway"]


@dataclass(slots=True)
class Gateway:
    """Everything a running gateway holds, built once per process."""

    config: Config
    store: SqlStore
    blobs: BlobStore
    providers: ProviderRegistry
    router: Router
    keys: KeyService
    files: FileService
    batches: BatchService
    worker: Worker


@asynccontextmanager
async def open_gateway(config: Config) -> AsyncIterator[Gateway]:
    """Open the database (migrating it), blob store and provider pools; close them after."""
    engine = create_engine(config.async_database_url)
    await migrate(engine)
    store = SqlStore(engine)
    blobs = open_blob_store(config.files)
    providers = ProviderRegistry(config)
    router = Router(config)
    worker = Worker(config=config, store=store, blobs=blobs, providers=providers, router=router)
    files = FileService(store, blobs, config.limits)
    try:
        yield Gateway(
            config=config,
            store=store,
            blobs=blobs,
            providers=providers,
            router=router,
            keys=KeyService(store, config.admin_key),
            files=files,
            batches=BatchService(
                store,
                store,
                config.limits,
                file_service=files,
                router=router,
                wake_worker=worker.wake,
            ),
            worker=worker,
        )
    finally:
        await providers.close()
        await store.close()
