"""OpenAI itself: the OpenAI-compatible calls, plus the native Files + Batches API."""

from __future__ import annotations

from typing import Any

import orjson

from batchway.config import ProviderConfig
from batchway.providers._batch_clients import OpenAIBatchClient
from batchway.providers._chat_messages import chat_to_messages_response, messages_to_chat_request
from batchway.providers._http import CHAT_ENDPOINT, MESSAGES_ENDPOINT
from batchway.providers.openai_compatible import OpenAICompatibleProvider

__all__ = [
    "DEFAULT_BASE_URL",
    "NATIVE_ENDPOINTS",
    "PROVIDER_TYPE",
    "OpenAIProvider",
    "native_answer",
    "native_endpoint",
    "native_line",
]

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
            self.native = OpenAIBatchClient(self._http)
            self.native_endpoints = NATIVE_ENDPOINTS
        self.native_max_lines = config.batch_max_lines or MAX_LINES
        self.native_fallback = config.batch == "auto"
        self.poll_seconds = (config.batch_poll_seconds, config.batch_poll_max_seconds)


def native_endpoint(endpoint: str) -> str:
    """The endpoint of the upstream batch that carries lines of ``endpoint``."""
    return CHAT_ENDPOINT if endpoint == MESSAGES_ENDPOINT else endpoint


def native_line(endpoint: str, body: bytes) -> bytes:
    """A line's body as the provider's batch API takes it (Messages become chat requests);
    raises ``UntranslatableRequest`` for a request that cannot be sent."""
    if endpoint != MESSAGES_ENDPOINT:
        return body
    return orjson.dumps(messages_to_chat_request(orjson.loads(body)))


def native_answer(endpoint: str, answer: Any) -> Any:
    """A successful answer from the batch API in the dialect of the line's endpoint."""
    return chat_to_messages_response(answer) if endpoint == MESSAGES_ENDPOINT else answer
