"""The schemas of the OpenAPI document (``components.schemas``).

What the gateway renders or validates through a wire model (files, batches, message
batches, the bodies of batch and key requests) takes its schema from the model, narrowed
where the model's type is wider than what goes over the wire (a batch's ``status`` is a
``str`` in the model, one of `BatchStatus` on the wire). What has no model is written
here: the error envelopes, the list envelopes, the admin objects, and the requests the
gateway passes on to a provider as they were sent (described loosely, as OpenAI's and
Anthropic's references do: unknown fields go through).
"""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from pydantic_core import CoreSchema, core_schema

from batchway.api.admin import KeyCreate, KeyUpdate
from batchway.core.analytics import UsageGroup, UsageInterval
from batchway.core.endpoints import BATCH_ENDPOINTS
from batchway.core.files import MAX_EXPIRY, MIN_EXPIRY, UPLOAD_PURPOSES
from batchway.core.keys import MAX_KEY_BYTES, MAX_KEY_LIMIT
from batchway.core.models import BudgetPeriod, RequestKind
from batchway.core.states import BatchStatus
from batchway.dialects.anthropic.wire import AnthropicBatchCreate, AnthropicMessageBatch
from batchway.dialects.openai.wire import (
    OpenAIBatch,
    OpenAIBatchCreate,
    OpenAIFile,
    OpenAIFileDeleted,
    OpenAIInlineBatchCreate,
)

__all__ = ["JSON", "component_schemas", "ref"]

JSON = dict[str, Any]
_REF = "#/components/schemas/{model}"

# answers the gateway renders from a model, and request bodies it validates with one
_WIRE_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (OpenAIFile, "serialization"),
    (OpenAIFileDeleted, "serialization"),
    (OpenAIBatch, "serialization"),
    (AnthropicMessageBatch, "serialization"),
    (OpenAIBatchCreate, "validation"),
    (OpenAIInlineBatchCreate, "validation"),
    (AnthropicBatchCreate, "validation"),
    (KeyCreate, "validation"),
    (KeyUpdate, "validation"),
]


def ref(name: str) -> JSON:
    """A reference to the schema ``name`` of the document's components."""
    return {"$ref": _REF.format(model=name)}


def _nullable(schema: JSON) -> JSON:
    """``schema`` or ``null``."""
    return {"anyOf": [schema, {"type": "null"}]}


class _Generator(GenerateJsonSchema):
    """Pydantic's schemas without a title per field and without defaults: a default in a
    request model is "not sent" (in ``KeyUpdate``: "unchanged"), never a value to send."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JSON:
        inner: CoreSchema = schema["schema"]
        return self.generate_inner(inner)


def _model_schemas() -> dict[str, JSON]:
    _, top = models_json_schema(_WIRE_MODELS, ref_template=_REF, schema_generator=_Generator)
    defs: dict[str, JSON] = top["$defs"]
    return defs


def _narrow(schemas: dict[str, JSON], model: str, field: str, schema: JSON) -> None:
    """Say of one field of a model's schema what the model's type leaves open."""
    properties = schemas[model]["properties"]
    if field not in properties:  # a renamed field must not leave a stale narrowing behind
        raise KeyError(f"{model} has no field {field!r}")
    properties[field] = schema


def _batch_endpoints() -> list[str]:
    """The endpoints a batch may name: OpenAI's paths and Azure's, without ``/v1``."""
    return [*BATCH_ENDPOINTS, *(e.removeprefix("/v1") for e in BATCH_ENDPOINTS)]


def _narrowed(schemas: dict[str, JSON]) -> dict[str, JSON]:
    window = {"const": "24h"}
    metadata = _nullable(
        {
            "type": "object",
            "maxProperties": 16,
            "propertyNames": {"maxLength": 64},
            "additionalProperties": {"type": "string", "maxLength": 512},
        }
    )
    _narrow(schemas, "OpenAIBatch", "status", {"enum": [s.value for s in BatchStatus]})
    _narrow(schemas, "OpenAIBatch", "endpoint", {"enum": list(BATCH_ENDPOINTS)})
    _narrow(schemas, "OpenAIBatch", "completion_window", window)
    _narrow(schemas, "OpenAIBatchCreate", "endpoint", {"enum": _batch_endpoints()})
    _narrow(schemas, "OpenAIBatchCreate", "completion_window", window)
    _narrow(schemas, "OpenAIBatchCreate", "metadata", metadata)
    seconds = {"type": "integer", "minimum": MIN_EXPIRY, "maximum": MAX_EXPIRY}
    _narrow(schemas, "OpenAIExpiresAfter", "seconds", seconds)
    for request in ("AnthropicBatchRequest", "OpenAIInlineRequest"):
        _narrow(schemas, request, "params", ref("BatchMessagesRequest"))
    return schemas


# -- requests passed on to the provider --------------------------------------------------


def _object(required: list[str], properties: JSON, description: str) -> JSON:
    return {
        "type": "object",
        "description": description,
        "required": required,
        "properties": properties,
    }


_COUNT = {"type": "integer", "minimum": 1}
_TEXTS = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_PASSED_ON = " Fields not listed are passed on to the provider as sent."


def _chat_request(required: list[str]) -> JSON:
    message = {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
            "content": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "object"}},
                    {"type": "null"},
                ]
            },
            "name": {"type": "string"},
        },
    }
    properties = {
        "model": ref("Model"),
        "messages": {"type": "array", "minItems": 1, "items": message},
        "max_tokens": _COUNT,
        "max_completion_tokens": _COUNT,
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "n": _COUNT,
        "stop": _TEXTS,
        "stream": {"type": "boolean"},
        "stream_options": _nullable(
            {"type": "object", "properties": {"include_usage": {"type": "boolean"}}}
        ),
        "user": {"type": "string"},
    }
    return _object(required, properties, "An OpenAI chat completion request." + _PASSED_ON)


def _embedding_request(required: list[str]) -> JSON:
    tokens = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}
    text_input = {
        "anyOf": [
            {"type": "string", "minLength": 1},
            {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
            tokens,
            {"type": "array", "minItems": 1, "items": tokens},
        ]
    }
    properties = {
        "model": ref("Model"),
        "input": text_input,
        "encoding_format": {"enum": ["float", "base64"]},
        "dimensions": _COUNT,
        "user": {"type": "string"},
    }
    return _object(required, properties, "An OpenAI embeddings request." + _PASSED_ON)


def _completion_request(required: list[str]) -> JSON:
    properties = {
        "model": ref("Model"),
        "prompt": _TEXTS,
        "max_tokens": _COUNT,
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "n": _COUNT,
        "stop": _TEXTS,
        "stream": {"type": "boolean"},
    }
    return _object(required, properties, "An OpenAI (legacy) completion request." + _PASSED_ON)


def _response_request() -> JSON:
    properties = {
        "model": ref("Model"),
        "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
        "instructions": {"type": "string"},
        "max_output_tokens": _COUNT,
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "stream": {"type": "boolean"},
    }
    return _object(["model", "input"], properties, "An OpenAI Responses request." + _PASSED_ON)


def _messages_request(*, batch: bool) -> JSON:
    blocks = {"type": "array", "items": {"type": "object", "required": ["type"]}}
    message = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"enum": ["user", "assistant"]},
            "content": {"anyOf": [{"type": "string"}, blocks]},
        },
    }
    properties: JSON = {
        "model": ref("Model"),
        "max_tokens": _COUNT,
        "messages": {"type": "array", "minItems": 1, "items": message},
        "system": {"anyOf": [{"type": "string"}, blocks]},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "stop_sequences": {"type": "array", "items": {"type": "string"}},
        "metadata": {"type": "object"},
    }
    what = "A request of an Anthropic message batch (never streamed)."
    if not batch:
        properties["stream"] = {"type": "boolean"}
        what = "An Anthropic Messages request."
    return _object(["model", "max_tokens", "messages"], properties, what + _PASSED_ON)


def _provider_requests() -> dict[str, JSON]:
    with_model = ["model"]
    return {
        "Model": {
            "type": "string",
            "minLength": 1,
            "description": "A public model name of the gateway (`GET /v1/models` lists the "
            "ones the key may use).",
        },
        "ChatCompletionRequest": _chat_request([*with_model, "messages"]),
        "EmbeddingRequest": _embedding_request([*with_model, "input"]),
        "CompletionRequest": _completion_request([*with_model, "prompt"]),
        "ResponseRequest": _response_request(),
        "MessagesRequest": _messages_request(batch=False),
        "BatchMessagesRequest": _messages_request(batch=True),
        # on Azure's deployment routes the deployment names the model
        "DeploymentChatCompletionRequest": _chat_request(["messages"]),
        "DeploymentEmbeddingRequest": _embedding_request(["input"]),
        "DeploymentCompletionRequest": _completion_request(["prompt"]),
    }


# -- envelopes and the gateway's own objects ---------------------------------------------


def _closed(properties: JSON, description: str = "", optional: tuple[str, ...] = ()) -> JSON:
    """An object of exactly ``properties``, all of them present but ``optional``."""
    schema: JSON = {
        "type": "object",
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
        "properties": properties,
    }
    if description:
        schema["description"] = description
    return schema


def _id_list(item: str, cursor: str = "string", *, openai: bool = True) -> JSON:
    """A page of objects: OpenAI's list envelope, or Anthropic's (no ``object``)."""
    properties: JSON = {"object": {"const": "list"}} if openai else {}
    properties |= {
        "data": {"type": "array", "items": ref(item)},
        "first_id": {"type": [cursor, "null"]},
        "last_id": {"type": [cursor, "null"]},
        "has_more": {"type": "boolean"},
    }
    return _closed(properties)


def _errors() -> dict[str, JSON]:
    openai = _closed(
        {
            "error": _closed(
                {
                    "message": {"type": "string", "minLength": 1},
                    "type": {"type": "string", "minLength": 1},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                }
            )
        },
        "An error in the OpenAI envelope.",
    )
    anthropic = _closed(
        {
            "type": {"const": "error"},
            "error": _closed(
                {
                    "type": {"type": "string", "pattern": "_error$|^request_too_large$"},
                    "message": {"type": "string", "minLength": 1},
                }
            ),
        },
        "An error in the Anthropic envelope.",
    )
    return {"OpenAIError": openai, "AnthropicError": anthropic}


def _key(with_secret: bool) -> JSON:
    limit = {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_KEY_LIMIT}
    properties: JSON = {
        "id": {"type": "string"},
        "object": {"const": "gateway.key"},
        "name": {"type": "string"},
        "created_at": {"type": "integer"},
        "models": _nullable({"type": "array", "items": {"type": "string"}}),
        "rpm": limit,
        "tpm": limit,
        "tph": limit,
        "rph": limit,
        "budget_usd": {"type": ["number", "null"], "minimum": 0},
        "budget_period": {"enum": [*get_args(BudgetPeriod), None]},
        "max_storage_bytes": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_KEY_BYTES},
        "max_files": limit,
        "revoked": {"type": "boolean"},
    }
    if not with_secret:
        return _closed(properties, "A gateway key (never the key itself).")
    properties["key"] = {"type": "string", "description": "The key itself, shown only once."}
    return _closed(properties, "A new gateway key, with the key itself.")


def _request_log() -> JSON:
    text, count = {"type": ["string", "null"]}, {"type": "integer", "minimum": 0}
    columns: JSON = {
        "id": {"type": "integer"},
        "created_at": {"type": "number", "description": "Epoch seconds."},
        "created_at_iso": {"type": "string"},
        "kind": {"enum": list(get_args(RequestKind))},
        "key_id": {"type": "string"},
        "model": {"type": "string"},
        "provider": {"type": "string"},
        "upstream_model": text,
        "endpoint": {"type": "string"},
        "batch_id": text,
        "custom_id": text,
        "item_id": {"type": ["integer", "null"]},
        "status": {"type": "string"},
        "status_code": {"type": ["integer", "null"]},
        "error_code": text,
        "input_tokens": count,
        "cached_tokens": count,
        "output_tokens": count,
        "latency_ms": {"type": ["number", "null"]},
        "cost_usd": {"type": "number"},
        "retries": count,
        "request_id": text,
    }
    encoding = {"enum": ["utf-8", "base64"]}
    bodies = {
        "request_body": {"type": "string"},
        "request_body_encoding": encoding,
        "response_body": {"type": "string"},
        "response_body_encoding": encoding,
    }
    return _closed(
        {"object": {"const": "gateway.request_log"}, **columns, **bodies},
        "One upstream call: a synchronous request or a batch line. The bodies are there "
        "only when the config keeps them (`logs.record_bodies`).",
        optional=tuple(bodies),
    )


def _usage() -> dict[str, JSON]:
    count = {"type": "integer", "minimum": 0}
    totals: JSON = {
        "requests": count,
        "input_tokens": count,
        "cached_tokens": count,
        "output_tokens": count,
        "cost_usd": {"type": "number"},
        "errors": count,
    }
    bucket = _closed(
        {
            "start": {"type": "integer", "description": "Epoch seconds."},
            "start_iso": {"type": "string"},
            "group": {"type": ["string", "null"]},
            "kind": {"enum": list(get_args(RequestKind))},
            **totals,
        }
    )
    kinds = ("all", "batch", "interactive")
    report = _closed(
        {
            "object": {"const": "usage"},
            "interval": {"enum": list(get_args(UsageInterval))},
            "group_by": {"enum": [*get_args(UsageGroup), None]},
            "totals": _closed({kind: ref("UsageTotals") for kind in kinds}),
            "series": {"type": "array", "items": bucket},
        },
        "Calls, tokens, cost and errors per time bucket (oldest first), with their totals.",
    )
    return {"UsageTotals": _closed(totals), "UsageReport": report}


def _gateway_objects() -> dict[str, JSON]:
    model = _closed(
        {
            "id": {"type": "string"},
            "object": {"const": "model"},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
        }
    )
    event = {
        "type": "object",
        "description": "One event of a stream (the schema of a `text/event-stream` answer is "
        "its events').",
        "required": ["data"],
        "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
    }
    return {
        "ServerSentEvent": event,
        "Health": _closed({"status": {"const": "ok"}}),
        "ModelObject": model,
        "ModelList": _closed(
            {"object": {"const": "list"}, "data": {"type": "array", "items": ref("ModelObject")}}
        ),
        "FileUpload": {
            "type": "object",
            "required": ["file", "purpose"],
            "properties": {
                "file": {"type": "string", "format": "binary"},
                "purpose": {"enum": list(UPLOAD_PURPOSES)},
                "expires_after[anchor]": {"const": "created_at"},
                "expires_after[seconds]": {
                    "type": "integer",
                    "minimum": MIN_EXPIRY,
                    "maximum": MAX_EXPIRY,
                },
            },
        },
        "FileList": _id_list("OpenAIFile"),
        "BatchList": _id_list("OpenAIBatch"),
        "MessageBatchList": _id_list("AnthropicMessageBatch", openai=False),
        "MessageBatchDeleted": _closed(
            {"id": {"type": "string"}, "type": {"const": "message_batch_deleted"}}
        ),
        "Key": _key(with_secret=False),
        "NewKey": _key(with_secret=True),
        "KeyList": _closed(
            {"object": {"const": "list"}, "data": {"type": "array", "items": ref("Key")}}
        ),
        "RevokedKey": _closed(
            {
                "id": {"type": "string"},
                "revoked": {"const": True},
                "batches_cancelled": {"type": "integer", "minimum": 0},
            }
        ),
        "RequestLog": _request_log(),
        "RequestLogList": _id_list("RequestLog", "integer"),
        **_usage(),
    }


def component_schemas() -> dict[str, JSON]:
    """Every schema of the document, by name."""
    schemas = {
        **_narrowed(_model_schemas()),
        **_provider_requests(),
        **_errors(),
        **_gateway_objects(),
    }
    return dict(sorted(schemas.items()))
