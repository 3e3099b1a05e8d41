"""OpenAI itself: the OpenAI-compatible calls, plus the native Files + Batches API."""

from __future__ import annotations

from batchway.config import ProviderConfig
from batchway.providers._batch_clients import OpenAIBatchClient
from batchway.providers._native import OpenAINativeBatches
from batchway.providers.openai_compatible import OpenAICompatibleProvider

__all__ = ["DEFAULT_BASE_URL", "NATIVE_ENDPOINTS", "PROVIDER_TYPE", "OpenAIProvider"]

PROVIDER_TYPE = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
NATIVE_ENDPOINTS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/completions",
        "/v1/responses",
        "/v1/messages",  # sent as chat completions, answered as messages
    }
)
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
