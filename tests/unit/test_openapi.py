"""The OpenAPI document: valid OpenAPI 3.1 whose references all resolve and whose operations
are each named once; served as JSON at ``/openapi.json`` and as a page at ``/docs``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import jsonschema_rs
import orjson
import pytest
import schemathesis
from starlette.testclient import TestClient

from batchway.api.admin_logs import CSV_COLUMNS
from batchway.api.app import create_app
from batchway.api.openapi import openapi_document
from batchway.config import Config

DOCUMENT = openapi_document()
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def resolve(pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = DOCUMENT
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_document_is_openapi_3_1() -> None:
    schemathesis.openapi.from_dict(DOCUMENT).validate()  # against the OpenAPI 3.1 schema

    assert DOCUMENT["openapi"] == "3.1.0"
    assert DOCUMENT["info"]["version"] == version("batchway")


def test_every_reference_resolves_and_every_component_is_used() -> None:
    used = set(references(DOCUMENT))

    for pointer in used:
        resolve(pointer)
    for kind in ("schemas", "responses", "parameters"):
        for name in DOCUMENT["components"][kind]:
            assert f"#/components/{kind}/{name}" in used, f"{kind} {name} is never used"


@pytest.mark.parametrize("name", sorted(DOCUMENT["components"]["schemas"]))
def test_every_schema_is_a_json_schema(name: str) -> None:
    jsonschema_rs.meta.validate(DOCUMENT["components"]["schemas"][name])


def test_every_operation_has_its_own_id_a_tag_and_its_answers() -> None:
    tags = {tag["name"] for tag in DOCUMENT["tags"]}
    schemes = set(DOCUMENT["components"]["securitySchemes"])
    ids = []
    for path, method, operation in operations():
        ids.append(operation["operationId"])
        assert set(operation["tags"]) <= tags, (path, method)
        assert {"200", "4XX"} <= set(operation["responses"]), (path, method)
        for requirement in operation["security"]:
            assert set(requirement) <= schemes, (path, method)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_every_path_parameter_is_declared() -> None:
    for path, method, operation in operations():
        listed = [*DOCUMENT["paths"][path].get("parameters", []), *operation.get("parameters", [])]
        declared = [resolve(p["$ref"]) if "$ref" in p else p for p in listed]
        in_path = {p["name"] for p in declared if p["in"] == "path"}
        assert in_path == set(re.findall(r"{(\w+)}", path)), (path, method)


def test_a_request_log_has_the_columns_of_the_csv_export() -> None:
    properties = list(DOCUMENT["components"]["schemas"]["RequestLog"]["properties"])

    assert properties[0] == "object"
    assert [p for p in properties[1:] if not p.startswith(("request_body", "response_body"))] == (
        CSV_COLUMNS
    )


def test_the_client_routes_answer_errors_in_their_dialect() -> None:
    for path, _, operation in operations():
        error = operation["responses"]["4XX"]["$ref"].rsplit("/", 1)[-1]
        anthropic = path.startswith("/v1/messages")
        assert error == ("AnthropicError" if anthropic else "OpenAIError"), path


def test_azure_routes_need_the_api_version() -> None:
    for path, _, operation in operations():
        needs_version = {"$ref": "#/components/parameters/ApiVersion"} in operation.get(
            "parameters", []
        )
        assert needs_version == path.startswith("/openai/"), path


@pytest.fixture(scope="module")
def client() -> TestClient:
    # without the lifespan: the document and the page need no gateway behind them
    return TestClient(create_app(Config(admin_key="admin-secret"), run_worker=False))


def test_the_document_is_served_as_json(client: TestClient) -> None:
    response = client.get("/openapi.json")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == orjson.loads(orjson.dumps(DOCUMENT))
    assert client.post("/openapi.json").status_code == 405


def test_the_reference_page_is_served_as_html(client: TestClient) -> None:
    response = client.get("/docs")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = response.text
    assert page.startswith("<!doctype html>")
    for _, _, operation in operations():
        assert f'id="{operation["operationId"]}"' in page
    for name in DOCUMENT["components"]["schemas"]:
        assert f'id="schema-{name}"' in page
    # nothing is loaded from elsewhere: the page works offline
    assert not re.search(r"<script|<link|<img|src=|@import|url\(", page)
