"""The OpenAPI 3.1 document of the gateway: info, tags, the shared components and the
paths (``paths.py``) over the schemas (``schemas.py``)."""

from __future__ import annotations

from importlib.metadata import version

from batchway.api.openapi.paths import paths
from batchway.api.openapi.schemas import JSON, component_schemas, ref

__all__ = ["openapi_document"]

_DESCRIPTION = """\
An LLM gateway for batch and long-running work. Clients speak the APIs they already use \
against one endpoint with one gateway key: OpenAI's Files and Batches and its synchronous \
routes (under `/v1`, and also without the prefix), Azure OpenAI's (under `/openai`, with \
`api-version`), and Anthropic's Messages and Message Batches.

Errors come in the route's dialect: `{"error": {message, type, param, code}}` on the \
OpenAI and Azure routes, `{"type": "error", "error": {type, message}}` on `/v1/messages…`. \
A gateway key is accepted as `Authorization: Bearer`, `x-api-key` or `api-key` on every \
client route; the admin routes take the config's `admin_key`."""

_TAGS = [
    ("Inference", "OpenAI's synchronous routes, passed on to the model's provider."),
    ("Files", "OpenAI Files: batch input, output and error files."),
    ("Batches", "OpenAI Batches, from a file or from inline requests."),
    ("Anthropic", "Anthropic Messages and Message Batches (errors in Anthropic's envelope)."),
    ("Azure OpenAI", "Azure OpenAI's routes: the OpenAI ones behind `api-version`."),
    ("Without /v1", "The OpenAI routes, also served without the `/v1` prefix."),
    ("Admin", "Gateway keys, any batch, request logs and usage: the admin key only."),
    ("Gateway", "Health, metrics and this document; no key needed."),
]

_SECURITY_SCHEMES: JSON = {
    "gatewayKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A gateway key (`POST /admin/keys`).",
    },
    "anthropicKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "A gateway key, in Anthropic's header.",
    },
    "azureKey": {
        "type": "apiKey",
        "in": "header",
        "name": "api-key",
        "description": "A gateway key, in Azure's header.",
    },
    "adminKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "The config's `admin_key`.",
    },
}


def _parameter(name: str, where: str, description: str, *, required: bool) -> JSON:
    return {
        "name": name,
        "in": where,
        "required": required,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
    }


_PARAMETERS: JSON = {
    "FileId": _parameter("file_id", "path", "A file's id.", required=True),
    "BatchId": _parameter("batch_id", "path", "A batch's id.", required=True),
    "KeyId": _parameter("key_id", "path", "A gateway key's id.", required=True),
    "Deployment": _parameter(
        "deployment",
        "path",
        "A deployment: a public model name (a '/' in it is sent as %2F).",
        required=True,
    ),
    "ApiVersion": _parameter(
        "api-version",
        "query",
        "Required; any version is taken, the shapes served are the same in all of them.",
        required=True,
    ),
    "AnthropicVersion": _parameter(
        "anthropic-version", "header", "Accepted and ignored.", required=False
    ),
    "AnthropicBeta": _parameter(
        "anthropic-beta", "header", "Accepted and ignored.", required=False
    ),
}


def _error(description: str, schema: str, id_header: str) -> JSON:
    return {
        "description": description,
        "headers": {id_header: {"required": True, "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": ref(schema)}},
    }


_UPSTREAM = (
    "The provider failed the call: 502 it refused the gateway's credentials, 503 it "
    "failed or could not be reached, 504 it did not answer in time."
)
_RESPONSES: JSON = {
    "OpenAIError": _error("An error, in the OpenAI envelope.", "OpenAIError", "x-request-id"),
    "AnthropicError": _error(
        "An error, in the Anthropic envelope.", "AnthropicError", "request-id"
    ),
    "UpstreamOpenAIError": _error(_UPSTREAM, "OpenAIError", "x-request-id"),
    "UpstreamAnthropicError": _error(_UPSTREAM, "AnthropicError", "request-id"),
}


def openapi_document() -> JSON:
    """The whole document, as plain JSON data."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "batchway",
            "version": version("batchway"),
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [{"name": name, "description": text} for name, text in _TAGS],
        "paths": paths(),
        "components": {
            "schemas": component_schemas(),
            "responses": _RESPONSES,
            "parameters": _PARAMETERS,
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }
