"""The paths of the OpenAPI document: every route `create_app` serves but the console.

Routes come in families that read alike (`Family`): the OpenAI routes under ``/v1``, the
same again without the prefix, Azure's under ``/openai`` (behind ``api-version``),
Anthropic's under ``/v1/messages``, the admin API, and the gateway's own. A family says
which envelope its errors come in, which credentials it takes and what its operation ids
look like, so that the Files and Batches routes are described once for all three prefixes
they are served under.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import get_args

from batchway.api.admin_logs import MAX_LIMIT
from batchway.api.openapi.schemas import JSON, ref
from batchway.core.analytics import UsageGroup, UsageInterval
from batchway.core.models import RequestKind

__all__ = ["Family", "paths"]

_JSONL = "application/x-jsonl"


@dataclass(frozen=True, slots=True)
class Family:
    """How a group of routes reads: see the module docstring."""

    tag: str
    operation_id: Callable[[str], str]  # the id of an operation of this family, by name
    error: str  # the response component its errors are
    security: list[JSON]
    parameters: list[JSON] = field(default_factory=list)  # taken by every route of it
    id_header: str | None = None  # the header carrying the request id of its answers


def _param(name: str) -> JSON:
    return {"$ref": f"#/components/parameters/{name}"}


def _response(name: str) -> JSON:
    return {"$ref": f"#/components/responses/{name}"}


def _query(name: str, schema: JSON, description: str = "") -> JSON:
    parameter: JSON = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


def _answer(family: Family, description: str, content: dict[str, JSON]) -> JSON:
    response: JSON = {"description": description, "content": content}
    if family.id_header is not None:
        header = {"required": True, "schema": {"type": "string"}}
        response["headers"] = {family.id_header: header}
    return response


def _json(family: Family, description: str, schema: JSON) -> JSON:
    return _answer(family, description, {"application/json": {"schema": schema}})


def _body(schema: JSON, media: str = "application/json") -> JSON:
    return {"required": True, "content": {media: {"schema": schema}}}


def _operation(
    family: Family,
    name: str,
    summary: str,
    ok: JSON,
    *,
    description: str = "",
    body: JSON | None = None,
    parameters: tuple[JSON, ...] = (),
    failures: tuple[str, ...] = (),
) -> JSON:
    """One operation: ``ok`` answers 200, the family's envelope any 4xx, and the statuses
    in ``failures`` an upstream failure."""
    operation: JSON = {
        "operationId": family.operation_id(name),
        "tags": [family.tag],
        "summary": summary,
        "security": family.security,
    }
    if description:
        operation["description"] = description
    if family.parameters or parameters:
        operation["parameters"] = [*family.parameters, *parameters]
    if body is not None:
        operation["requestBody"] = body
    responses = {"200": ok, "4XX": _response(family.error)}
    for status in failures:
        responses[status] = _response(f"Upstream{family.error}")
    operation["responses"] = responses
    return operation


_UPSTREAM_FAILURES = ("502", "503", "504")


# -- OpenAI: files and batches (under /v1, without it, and under /openai) ----------------


def _files(prefix: str, family: Family) -> dict[str, JSON]:
    file = _json(family, "The file object.", ref("OpenAIFile"))
    upload = (
        "Multipart: the file and its purpose, optionally `expires_after[anchor]` and "
        "`expires_after[seconds]`. The file streams to storage as it arrives."
    )
    listing = (
        _query("purpose", {"type": "string"}),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 10_000}),
        _query("order", {"enum": ["asc", "desc"]}),
        _query("after", {"type": "string"}, "The id of the file to page on from."),
    )
    return {
        f"{prefix}/files": {
            "post": _operation(
                family,
                "createFile",
                "Upload a file",
                file,
                description=upload,
                body=_body(ref("FileUpload"), "multipart/form-data"),
            ),
            "get": _operation(
                family,
                "listFiles",
                "List files",
                _json(family, "A page of files (expired files are not listed).", ref("FileList")),
                parameters=listing,
            ),
        },
        f"{prefix}/files/{{file_id}}": {
            "parameters": [_param("FileId")],
            "get": _operation(family, "retrieveFile", "Get a file", file),
            "delete": _operation(
                family,
                "deleteFile",
                "Delete a file",
                _json(family, "The file is gone.", ref("OpenAIFileDeleted")),
            ),
        },
        f"{prefix}/files/{{file_id}}/content": {
            "parameters": [_param("FileId")],
            "get": _operation(
                family,
                "fileContent",
                "Download a file's bytes",
                _answer(
                    family,
                    "The file's bytes, its name in Content-Disposition.",
                    {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                ),
            ),
        },
    }


def _batches(prefix: str, family: Family) -> dict[str, JSON]:
    either = {"oneOf": [ref("OpenAIBatch"), ref("AnthropicMessageBatch")]}
    results = {_JSONL: {"schema": {"type": "string"}}}
    create = (
        "From an uploaded file (`input_file_id`), or from inline `requests`: such a batch "
        "answers as a message batch, and its results are read from the batch."
    )
    return {
        f"{prefix}/batches": {
            "post": _operation(
                family,
                "createBatch",
                "Create a batch",
                _json(family, "The batch (a message batch when created inline).", either),
                description=create,
                body=_body({"oneOf": [ref("OpenAIBatchCreate"), ref("OpenAIInlineBatchCreate")]}),
            ),
            "get": _operation(
                family,
                "listBatches",
                "List batches",
                _json(family, "A page of batches, newest first.", ref("BatchList")),
                parameters=(
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
                    _query("after", {"type": "string"}, "The id of the batch to page on from."),
                ),
            ),
        },
        f"{prefix}/batches/{{batch_id}}": {
            "parameters": [_param("BatchId")],
            "get": _operation(
                family,
                "retrieveBatch",
                "Get a batch",
                _answer(
                    family,
                    "The batch; an inline batch that has ended answers its results (JSONL).",
                    {"application/json": {"schema": either}, **results},
                ),
            ),
        },
        f"{prefix}/batches/{{batch_id}}/cancel": {
            "parameters": [_param("BatchId")],
            "post": _operation(
                family,
                "cancelBatch",
                "Cancel a batch",
                _json(family, "The batch, cancelling (unchanged if it already was).", either),
            ),
        },
        f"{prefix}/batches/{{batch_id}}/results": {
            "parameters": [_param("BatchId")],
            "get": _operation(
                family,
                "batchResults",
                "Read an ended batch's results",
                _answer(family, "One `{custom_id, result}` line per request, in order.", results),
            ),
        },
    }


# -- synchronous routes ------------------------------------------------------------------

_STREAMED: dict[str, JSON] = {
    "application/json": {"schema": {"type": "object"}},
    "text/event-stream": {"schema": ref("ServerSentEvent")},
}


def _inference(prefix: str, family: Family) -> dict[str, JSON]:
    answer = _answer(
        family,
        "The provider's answer as it sent it, or with `stream: true` its event stream.",
        _STREAMED,
    )
    calls = {
        "chat/completions": ("createChatCompletion", "Chat completion", "ChatCompletionRequest"),
        "embeddings": ("createEmbedding", "Embeddings", "EmbeddingRequest"),
        "completions": ("createCompletion", "Completion (legacy)", "CompletionRequest"),
        "responses": ("createResponse", "Response (Responses API)", "ResponseRequest"),
    }
    paths: dict[str, JSON] = {
        f"{prefix}/{path}": {
            "post": _operation(
                family,
                name,
                summary,
                answer,
                body=_body(ref(schema)),
                failures=_UPSTREAM_FAILURES,
            )
        }
        for path, (name, summary, schema) in calls.items()
    }
    paths[f"{prefix}/models"] = {
        "get": _operation(
            family,
            "listModels",
            "List the models the key may use",
            _json(family, "The public model names the key may use.", ref("ModelList")),
        )
    }
    return paths


def _deployments(family: Family) -> dict[str, JSON]:
    answer = _answer(family, "The provider's answer, or its event stream.", _STREAMED)
    names = {
        "/chat/completions": ("ChatCompletion", "Chat completion on a deployment"),
        "/embeddings": ("Embedding", "Embeddings on a deployment"),
        "/completions": ("Completion", "Completion on a deployment"),
    }
    return {
        f"/openai/deployments/{{deployment}}{path}": {
            "parameters": [_param("Deployment")],
            "post": _operation(
                family,
                f"create{name}",
                summary,
                answer,
                description="The deployment names the model; a `model` in the body is ignored.",
                body=_body(ref(f"Deployment{name}Request")),
                failures=_UPSTREAM_FAILURES,
            ),
        }
        for path, (name, summary) in names.items()
    }


# -- Anthropic ---------------------------------------------------------------------------


def _messages(family: Family) -> dict[str, JSON]:
    batch = _json(family, "The message batch.", ref("AnthropicMessageBatch"))
    results = _answer(
        family,
        "One `{custom_id, result}` line per request, in input order.",
        {_JSONL: {"schema": {"type": "string"}}},
    )
    base = "/v1/messages/batches"
    return {
        "/v1/messages": {
            "post": _operation(
                family,
                "createMessage",
                "Create a message",
                _answer(family, "The `Message`, or with `stream: true` its events.", _STREAMED),
                body=_body(ref("MessagesRequest")),
                failures=_UPSTREAM_FAILURES,
            )
        },
        base: {
            "post": _operation(
                family,
                "createMessageBatch",
                "Create a message batch",
                batch,
                description="1 to 100,000 requests; a bad one is refused with a 400 naming it.",
                body=_body(ref("AnthropicBatchCreate")),
            ),
            "get": _operation(
                family,
                "listMessageBatches",
                "List message batches",
                _json(family, "A page of message batches, newest first.", ref("MessageBatchList")),
                parameters=(
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                    _query("after_id", {"type": "string"}, "Page on to older batches."),
                    _query("before_id", {"type": "string"}, "Page back to newer batches."),
                ),
            ),
        },
        f"{base}/{{batch_id}}": {
            "parameters": [_param("BatchId")],
            "get": _operation(family, "retrieveMessageBatch", "Get a message batch", batch),
            "delete": _operation(
                family,
                "deleteMessageBatch",
                "Delete an ended message batch",
                _json(family, "The batch is gone.", ref("MessageBatchDeleted")),
            ),
        },
        f"{base}/{{batch_id}}/cancel": {
            "parameters": [_param("BatchId")],
            "post": _operation(family, "cancelMessageBatch", "Cancel a message batch", batch),
        },
        f"{base}/{{batch_id}}/results": {
            "parameters": [_param("BatchId")],
            "get": _operation(
                family, "messageBatchResults", "Read an ended message batch's results", results
            ),
        },
    }


# -- the admin API and the gateway's own routes -------------------------------------------


def _log_filters() -> tuple[JSON, ...]:
    time = {"type": "string", "description": "Epoch seconds or an ISO 8601 time (UTC)."}
    return (
        _query("key", {"type": "string"}, "A key id."),
        _query("model", {"type": "string"}),
        _query("provider", {"type": "string"}),
        _query("batch", {"type": "string"}, "A batch id."),
        _query("status", {"type": "string"}),
        _query("kind", {"enum": list(get_args(RequestKind))}),
        _query("since", time),
        _query("until", time),
    )


def _admin(family: Family) -> dict[str, JSON]:
    key = _json(family, "The key as it is now.", ref("Key"))
    usage = (
        _query("group_by", {"enum": list(get_args(UsageGroup))}),
        _query("interval", {"enum": list(get_args(UsageInterval))}, "`day` by default."),
        *(p for p in _log_filters() if p["name"] in ("since", "until", "key")),
    )
    logs = (
        *_log_filters(),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
        _query("after", {"type": "integer", "minimum": 1}, "The id to page on to older rows."),
        _query("format", {"enum": ["json", "csv"]}, "`csv` streams every matching row."),
    )
    return {
        "/admin/keys": {
            "post": _operation(
                family,
                "createKey",
                "Create a gateway key",
                _json(family, "The key, with the key itself (shown once).", ref("NewKey")),
                body=_body(ref("KeyCreate")),
            ),
            "get": _operation(
                family, "listKeys", "List gateway keys", _json(family, "Every key.", ref("KeyList"))
            ),
        },
        "/admin/keys/{key_id}": {
            "parameters": [_param("KeyId")],
            "patch": _operation(
                family,
                "updateKey",
                "Change a key",
                key,
                description="Only the fields sent change; `null` clears a limit.",
                body=_body(ref("KeyUpdate")),
            ),
            "delete": _operation(
                family,
                "revokeKey",
                "Revoke a key and cancel its batches",
                _json(family, "The key is revoked.", ref("RevokedKey")),
            ),
        },
        "/admin/batches/{batch_id}/cancel": {
            "parameters": [_param("BatchId")],
            "post": _operation(
                family,
                "adminCancelBatch",
                "Cancel any key's batch",
                _json(family, "The batch, in the OpenAI shape.", ref("OpenAIBatch")),
            ),
        },
        "/admin/logs": {
            "get": _operation(
                family,
                "listLogs",
                "Read the request logs",
                _answer(
                    family,
                    "A page of request logs, newest first; or every matching row as CSV.",
                    {
                        "application/json": {"schema": ref("RequestLogList")},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                ),
                parameters=logs,
            )
        },
        "/admin/usage": {
            "get": _operation(
                family,
                "usage",
                "Usage per time bucket",
                _json(family, "The usage report.", ref("UsageReport")),
                parameters=usage,
            )
        },
    }


def _gateway(family: Family) -> dict[str, JSON]:
    def get(name: str, summary: str, description: str, media: str, schema: JSON) -> JSON:
        ok = _answer(family, description, {media: {"schema": schema}})
        return {"get": _operation(family, name, summary, ok)}

    text = {"type": "string"}
    return {
        "/healthz": get(
            "healthz", "Health", "The gateway is up.", "application/json", ref("Health")
        ),
        "/metrics": get(
            "metrics",
            "Prometheus metrics",
            "The exposition (404 when the config turns metrics off).",
            "text/plain",
            text,
        ),
        "/openapi.json": get(
            "openapi", "This document", "OpenAPI 3.1.", "application/json", {"type": "object"}
        ),
        "/docs": get("docs", "The API reference", "This document as a page.", "text/html", text),
    }


# -- the families ------------------------------------------------------------------------

_OPENAI_KEYS: list[JSON] = [{"gatewayKey": []}, {"azureKey": []}, {"anthropicKey": []}]
_AZURE_KEYS: list[JSON] = [{"azureKey": []}, {"gatewayKey": []}]
_ANTHROPIC_KEYS: list[JSON] = [{"anthropicKey": []}, {"gatewayKey": []}]


def _same(name: str) -> str:
    return name


def _unprefixed(name: str) -> str:
    return f"{name}WithoutPrefix"


def _azure(name: str) -> str:
    return f"azure{name[0].upper()}{name[1:]}"


def _openai(tag: str, operation_id: Callable[[str], str], *, sync: bool = False) -> Family:
    """An OpenAI family; the synchronous routes answer with a request id."""
    id_header = "x-request-id" if sync else None
    return Family(tag, operation_id, "OpenAIError", _OPENAI_KEYS, id_header=id_header)


def _azure_family(*, sync: bool = False) -> Family:
    return Family(
        "Azure OpenAI",
        _azure,
        "OpenAIError",
        _AZURE_KEYS,
        parameters=[_param("ApiVersion")],
        id_header="x-request-id" if sync else None,
    )


def paths() -> dict[str, JSON]:
    """Every path of the document, by family."""
    anthropic = Family(
        "Anthropic",
        _same,
        "AnthropicError",
        _ANTHROPIC_KEYS,
        parameters=[_param("AnthropicVersion"), _param("AnthropicBeta")],
        id_header="request-id",
    )
    unprefixed = _openai("Without /v1", _unprefixed)
    return {
        **_inference("/v1", _openai("Inference", _same, sync=True)),
        **_files("/v1", _openai("Files", _same)),
        **_batches("/v1", _openai("Batches", _same)),
        **_messages(anthropic),
        **_files("/openai", _azure_family()),
        **_batches("/openai", _azure_family()),
        **_deployments(_azure_family(sync=True)),
        **_inference("", _openai("Without /v1", _unprefixed, sync=True)),
        **_files("", unprefixed),
        **_batches("", unprefixed),
        **_admin(Family("Admin", _same, "OpenAIError", [{"adminKey": []}])),
        **_gateway(Family("Gateway", _same, "OpenAIError", [])),
    }
