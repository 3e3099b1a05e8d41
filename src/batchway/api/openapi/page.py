"""The API reference page (``/docs``): the OpenAPI document rendered as one plain HTML page,
operations grouped by tag, schemas as JSON. No script and nothing fetched from elsewhere:
the page works offline."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from batchway.api.openapi.schemas import JSON

__all__ = ["reference_page"]

_METHODS = ("get", "post", "patch", "put", "delete")
_SCHEMA_REF = re.compile(r"#/components/schemas/([A-Za-z0-9_.-]+)")
_CODE = re.compile(r"``(.+?)``|`([^`]+)`")  # Markdown's, and reST's in model docstrings


@dataclass(frozen=True, slots=True)
class _Operation:
    """One operation as the page shows it, its parameters and responses resolved."""

    method: str
    path: str
    operation: JSON
    parameters: list[JSON]
    responses: list[tuple[str, JSON]]


def _resolve(document: JSON, item: JSON) -> JSON:
    """``item``, or what its ``$ref`` names in the document's components."""
    pointer = item.get("$ref")
    if not isinstance(pointer, str):
        return item
    node: Any = document
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part]
    resolved: JSON = node
    return resolved


def _schema_json(schema: Any) -> Markup:
    """A schema as indented JSON, each reference to a component linked to it."""
    text = str(escape(orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode()))
    return Markup(_SCHEMA_REF.sub(r'<a href="#schema-\1">\g<0></a>', text))


def _inline(text: str) -> Markup:
    """Text with its `code` spans as code."""
    escaped = str(escape(text))
    return Markup(_CODE.sub(lambda m: f"<code>{m.group(1) or m.group(2)}</code>", escaped))


def _merged(responses: list[tuple[str, JSON]]) -> list[tuple[str, JSON]]:
    """One row for the statuses that answer alike (``502, 503, 504``)."""
    rows: list[tuple[list[str], JSON]] = []
    for status, response in responses:
        same = next((row for row in rows if row[1] == response), None)
        if same is None:
            rows.append(([status], response))
        else:
            same[0].append(status)
    return [(", ".join(statuses), response) for statuses, response in rows]


def _component(schema: JSON) -> str | None:
    """The name of the component ``schema`` is only a reference to, if it is one."""
    match = _SCHEMA_REF.fullmatch(schema.get("$ref", "")) if len(schema) == 1 else None
    return match.group(1) if match else None


def _operations(document: JSON) -> dict[str, list[_Operation]]:
    grouped: dict[str, list[_Operation]] = {tag["name"]: [] for tag in document["tags"]}
    for path, item in document["paths"].items():
        shared = [_resolve(document, p) for p in item.get("parameters", [])]
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            own = [_resolve(document, p) for p in operation.get("parameters", [])]
            responses = _merged(
                [
                    (status, _resolve(document, response))
                    for status, response in operation["responses"].items()
                ]
            )
            entry = _Operation(method.upper(), path, operation, shared + own, responses)
            for tag in operation["tags"]:
                grouped.setdefault(tag, []).append(entry)
    return grouped


_env = Environment(
    loader=PackageLoader("batchway.api.openapi", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(schema_json=_schema_json, inline=_inline, component=_component)


def reference_page(document: JSON) -> str:
    """The page of ``document``."""
    return _env.get_template("docs.html").render(
        info=document["info"],
        tags=document["tags"],
        operations=_operations(document),
        schemes=document["components"]["securitySchemes"],
        schemas=document["components"]["schemas"],
    )
