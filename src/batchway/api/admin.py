"""The admin API: gateway keys, and cancelling any batch. Every route needs the config's
``admin_key``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batchway.api.auth import authenticate_admin
from batchway.api.openai.routes import by_method, json_response, parse_json, validated
from batchway.core.keys import MAX_KEY_BYTES, MAX_KEY_LIMIT
from batchway.core.models import ApiKey, BudgetPeriod
from batchway.dialects.openai.batches import from_core_batch
from batchway.gateway import Gateway

__all__ = ["admin_routes"]


class KeyCreate(BaseModel):
    """The body of ``POST /admin/keys``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    rpm: int | None = Field(default=None, ge=1, le=MAX_KEY_LIMIT)
    tpm: int | None = Field(default=None, ge=1, le=MAX_KEY_LIMIT)
    tph: int | None = Field(default=None, ge=1, le=MAX_KEY_LIMIT)
    rph: int | None = Field(default=None, ge=1, le=MAX_KEY_LIMIT)
    budget_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    budget_period: BudgetPeriod | None = None
    models: list[str] | None = None
    # the key's own storage quota; omitted: the config's limits.max_*_per_key
    max_storage_bytes: int | None = Field(default=None, ge=1, le=MAX_KEY_BYTES)
    max_files: int | None = Field(default=None, ge=1, le=MAX_KEY_LIMIT)


class KeyUpdate(KeyCreate):
    """The body of ``PATCH /admin/keys/{id}``: only the fields sent change; ``null`` clears
    a limit, a budget or a model list."""

    name: str = Field(default="", min_length=1, max_length=200)


def _key_json(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id,
        "object": "gateway.key",
        "name": key.name,
        "created_at": key.created_at,
        "models": list(key.models) if key.models is not None else None,
        "rpm": key.rpm,
        "tpm": key.tpm,
        "tph": key.tph,
        "rph": key.rph,
        "budget_usd": key.budget_usd,
        "budget_period": key.budget_period,
        "max_storage_bytes": key.max_storage_bytes,
        "max_files": key.max_files,
        "revoked": key.revoked,
    }


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    authenticate_admin(request, gateway.keys)
    return gateway


async def create_key(request: Request) -> Response:
    gateway = _gateway(request)
    body = validated(KeyCreate, await parse_json(request))
    key, secret = await gateway.keys.create(**body.model_dump())
    return json_response({**_key_json(key), "key": secret})


async def list_keys(request: Request) -> Response:
    gateway = _gateway(request)
    keys = await gateway.keys.list()
    return json_response({"object": "list", "data": [_key_json(k) for k in keys]})


async def update_key(request: Request) -> Response:
    gateway = _gateway(request)
    body = validated(KeyUpdate, await parse_json(request))
    key = await gateway.keys.update(
        request.path_params["key_id"], body.model_dump(include=body.model_fields_set)
    )
    return json_response(_key_json(key))


async def revoke_key(request: Request) -> Response:
    gateway = _gateway(request)
    key_id = request.path_params["key_id"]
    cancelled = await gateway.admin.revoke_key(key_id)
    return json_response({"id": key_id, "revoked": True, "batches_cancelled": cancelled})


async def cancel_batch(request: Request) -> Response:
    """Cancel any key's batch; answers it in the OpenAI shape, whatever its dialect."""
    gateway = _gateway(request)
    batch = await gateway.admin.cancel_batch(request.path_params["batch_id"])
    return json_response(from_core_batch(batch))


def admin_routes() -> list[Route]:
    return [
        Route("/admin/keys", by_method(POST=create_key, GET=list_keys), methods=["GET", "POST"]),
        Route(
            "/admin/keys/{key_id}",
            by_method(PATCH=update_key, DELETE=revoke_key),
            methods=["PATCH", "DELETE"],
        ),
        Route("/admin/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
    ]
