"""The Azure OpenAI routes, for ``openai.AzureOpenAI(azure_endpoint=<gateway>)``.

``/openai/files…`` and ``/openai/batches…`` are the OpenAI handlers behind Azure's required
``api-version``. ``/openai/deployments/{deployment}/chat/completions`` (and ``/embeddings``,
``/completions``) call the public model the deployment names: the mapping in the config's
``azure.deployments``, else the model of the deployment's own name. The call itself is the
proxy's, as on ``/v1``; only a missing model reads differently (``DeploymentNotFound``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batchway.api.auth import authenticate
from batchway.api.body import parse_json_bytes, read_body
from batchway.api.openai.proxy import OPENAI, as_response
from batchway.api.openai.routes import openai_routes
from batchway.core.endpoints import Endpoint
from batchway.dialects.azure.wire import (
    API_VERSION,
    DEPLOYMENT_ENDPOINTS,
    check_api_version,
    deployment_not_found,
)
from batchway.errors import InvalidRequest
from batchway.gateway import Gateway

__all__ = ["AZURE", "PREFIX", "azure_routes"]

PREFIX = "/openai"

Handler = Callable[[Request], Awaitable[Response]]

AZURE = dataclasses.replace(OPENAI, not_found=lambda model: deployment_not_found())


def _versioned(handler: Callable[[Request], Awaitable[Any]]) -> Handler:
    """``handler`` behind the ``api-version`` check."""

    async def versioned(request: Request) -> Response:
        check_api_version(request.query_params.get(API_VERSION))
        response: Response = await handler(request)
        return response

    return versioned


def _deployment_handler(endpoint: Endpoint) -> Handler:
    async def handler(request: Request) -> Response:
        return await _call(request, endpoint)

    return handler


async def _call(request: Request, endpoint: Endpoint) -> Response:
    check_api_version(request.query_params.get(API_VERSION))
    gateway: Gateway = request.app.state.gateway
    principal = await authenticate(request, gateway.keys)
    model = gateway.router.public_model(request.path_params["deployment"])
    if model is None:
        raise deployment_not_found()
    limits = gateway.config.limits
    raw = await read_body(request, limits.max_request_bytes)
    body = parse_json_bytes(raw, limits.max_json_depth)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    # the deployment decides the model, whatever the body says
    answer = await gateway.proxy.call(
        AZURE, principal, endpoint, model, {**body, "model": model}, raw
    )
    return as_response(answer)


def azure_routes() -> list[Route]:
    """Files, Batches and the deployment routes under ``/openai``."""
    routes = [
        Route(route.path, _versioned(route.endpoint), methods=route.methods)
        for route in openai_routes(PREFIX)
    ]
    routes += [
        # a public model's name may hold a '/' (sent encoded): the deployment is a path, so
        # /chat/completions must come before /completions, which would match it too
        Route(
            f"{PREFIX}/deployments/{{deployment:path}}{path}",
            _deployment_handler(endpoint),
            methods=["POST"],
        )
        for path, endpoint in DEPLOYMENT_ENDPOINTS.items()
    ]
    return routes
