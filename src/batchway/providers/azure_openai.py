"""Azure OpenAI (classic, dated API versions): calls to deployments, and the native Batch API
of global-batch deployments.

``base_url`` is the resource endpoint (``https://<resource>.openai.azure.com``); a route's
``model`` is the deployment name. Auth is the ``api-key`` header.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from batchway.config import ProviderConfig
from batchway.core.endpoints import Endpoint
from batchway.core.ports import NativeBatchAPI, UpstreamResponse
from batchway.dialects.chat_messages.replies import chat_to_messages_response
from batchway.dialects.chat_messages.requests import messages_to_chat_request
from batchway.errors import UpstreamRejected
from batchway.providers._batch_clients import OpenAIBatchClient
from batchway.providers._http import HttpUpstream, parse_answer
from batchway.providers._native import OpenAINativeBatches
from batchway.providers.kind import ProviderKind
from batchway.providers.openai import NATIVE_ENDPOINTS

__all__ = ["KIND", "PROVIDER_TYPE", "AzureOpenAIProvider"]

PROVIDER_TYPE = "azure"
MAX_LINES = 100_000
# what a deployment serves (the others are answered with a 400, before any call)
_DEPLOYMENT_ENDPOINTS = frozenset({Endpoint.CHAT, Endpoint.EMBEDDINGS, Endpoint.COMPLETIONS})


class AzureOpenAIProvider:
    """Deployment calls for executed lines; the resource's Batch API for native ones."""

    def __init__(self, name: str, config: ProviderConfig) -> None:
        assert config.base_url is not None  # KIND.check makes sure of it
        self.name = name
        self.max_concurrency = config.max_concurrency
        headers = dict(config.headers)
        if config.sends_api_key:
            headers["api-key"] = str(config.api_key)
        self._version = config.api_version
        self._http = HttpUpstream.for_provider(
            name, config, config.base_url.rstrip("/") + "/openai", headers
        )
        self.native: NativeBatchAPI | None = None
        if config.batch != "execute":
            self.native = OpenAINativeBatches(
                OpenAIBatchClient(self._http, azure_api_version=self._version),
                endpoints=NATIVE_ENDPOINTS - {Endpoint.RESPONSES},
                max_lines=config.batch_max_lines or MAX_LINES,
                fallback=config.batch == "auto",
                poll_seconds=(config.batch_poll_seconds, config.batch_poll_max_seconds),
            )

    def _path(self, endpoint: str, deployment: str) -> str:
        if endpoint not in _DEPLOYMENT_ENDPOINTS:
            raise UpstreamRejected(f"Azure deployments do not serve {endpoint}.", status=400)
        return (
            f"/deployments/{deployment}{endpoint.removeprefix('/v1')}?api-version={self._version}"
        )

    async def send(self, endpoint: str, body: bytes) -> UpstreamResponse:
        request = orjson.loads(body)
        if endpoint == Endpoint.MESSAGES:
            chat = messages_to_chat_request(request)
            path = self._path(Endpoint.CHAT, str(request.get("model")))
            status, data, request_id = await self._http.post(path, orjson.dumps(chat))
            message = chat_to_messages_response(parse_answer(data))
            return UpstreamResponse(
                status=status, body=orjson.dumps(message), request_id=request_id
            )
        path = self._path(endpoint, str(request.get("model")))
        status, data, request_id = await self._http.post(path, body)
        return UpstreamResponse(status=status, body=data, request_id=request_id)

    async def stream(self, endpoint: str, body: bytes) -> AsyncIterator[bytes]:
        path = self._path(endpoint, str(orjson.loads(body).get("model")))
        async for chunk in self._http.stream(path, body):
            yield chunk

    async def close(self) -> None:
        await self._http.close()


def _endpoint_of_resource(config: ProviderConfig) -> ProviderConfig:
    """A ``resource`` name stands for its endpoint when the entry gives no base_url."""
    if config.resource and not config.base_url:
        return config.model_copy(update={"base_url": f"https://{config.resource}.openai.azure.com"})
    return config


KIND = ProviderKind(
    name=PROVIDER_TYPE,
    build=AzureOpenAIProvider,
    needs_base_url=True,
    complete=_endpoint_of_resource,
)
