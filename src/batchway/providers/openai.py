"""OpenAI itself: the OpenAI-compatible calls, plus the native Files + Batches API."""

from __future__ import annotations

from batchway.config import ProviderConfig
from batchway.core.endpoints import BATCH_ENDPOINTS
from batchway.providers._batch_clients import OpenAIBatchClient
from batchway.providers._native import OpenAINativeBatches
from batchway.providers.kind import ProviderKind
from batchway.providers.openai_compatible import OpenAICompatibleProvider

__all__ = ["DEFAULT_BASE_URL", "KIND", "NATIVE_ENDPOINTS", "PROVIDER_TYPE", "OpenAIProvider"]

PROVIDER_TYPE = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# every batch endpoint: Messages lines are sent as chat completions, answered as messages
NATIVE_ENDPOINTS = frozenset(BATCH_ENDPOINTS)
MAX_LINES = 50_000


class OpenAIProvider(OpenAICompatibleProvider):
    """Batch lines go to OpenAI's Batch API (half price) unless ``batch: execute``."""

    def __init__(self, name: str, config: ProviderConfig) -> None:
        config = config.model_copy(update={"base_url": config.base_url or DEFAULT_BASE_URL})
        super().__init__(name, config)
        if config.batch != "execute":
            self.native = OpenAINativeBatches(
                OpenAIBatchClient(self._http),
                endpoints=NATIVE_ENDPOINTS,
                max_lines=config.batch_max_lines or MAX_LINES,
                fallback=config.batch == "auto",
                poll_seconds=(config.batch_poll_seconds, config.batch_poll_max_seconds),
            )


KIND = ProviderKind(name=PROVIDER_TYPE, build=OpenAIProvider)  # base_url: DEFAULT_BASE_URL
