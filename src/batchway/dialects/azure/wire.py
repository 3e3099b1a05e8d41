"""What Azure OpenAI (classic, dated API versions) adds to the OpenAI wire.

Every route takes a required ``api-version`` query parameter; the gateway accepts any
version, as the shapes it serves are the same in all of them. Inference goes to
``/openai/deployments/{deployment}/<endpoint>``, the model being the deployment's. Errors
keep the OpenAI envelope (the SDK reads both alike) with Azure's codes: ``BadRequest`` for a
missing ``api-version``, ``DeploymentNotFound`` for an unknown deployment.
"""

from __future__ import annotations

from batchway.core.endpoints import Endpoint
from batchway.errors import InvalidRequest, NotFound

__all__ = [
    "API_VERSION",
    "DEPLOYMENT_ENDPOINTS",
    "check_api_version",
    "deployment_not_found",
]

API_VERSION = "api-version"  # the query parameter every Azure route requires

# the path after ``/openai/deployments/{deployment}`` → the endpoint it calls
DEPLOYMENT_ENDPOINTS = {
    "/chat/completions": Endpoint.CHAT,
    "/embeddings": Endpoint.EMBEDDINGS,
    "/completions": Endpoint.COMPLETIONS,
}


def check_api_version(value: str | None) -> str:
    """The ``api-version`` a request gave; a 400 as Azure's when it gave none."""
    if not value:
        raise InvalidRequest(
            f"Missing required query parameter: {API_VERSION}", param=API_VERSION, code="BadRequest"
        )
    return value


def deployment_not_found() -> NotFound:
    """Azure's 404 for a deployment that does not exist (or that the key may not use)."""
    return NotFound(
        "The API deployment for this resource does not exist. If you created the deployment "
        "within the last 5 minutes, please wait a moment and try again.",
        code="DeploymentNotFound",
    )
