"""An API fuzz run with schemathesis over every route of the gateway, against a live gateway.

Requests are generated from the document the gateway serves at ``/openapi.json`` (files,
batches, message batches, the sync routes and models, under ``/v1``, without the prefix and
under Azure's ``/openai``; the admin API; health, metrics and the document itself), sent
over loopback with a gateway key (the admin key on the admin routes) in the header the
route's dialect uses, and every answer is checked: never a 5xx, a status, content type and
headers the document allows, and a body that conforms to it where it is precise (files,
batches, message batches, keys, logs, usage, lists and both error envelopes).
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import given
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import RunningGateway
from tests.fuzz.conftest import fuzz_settings, json_of
from tests.fuzz.drain import drain_or_fail

Operation = APIOperation[Any, Any, Any, Any]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CONFIG = schemathesis.Config()
# examples per operation: requests the spec allows, and requests it does not
EXAMPLES = {GenerationMode.POSITIVE: 5, GenerationMode.NEGATIVE: 3}
# headers the HTTP layer owns: a malformed one is refused by the server itself (uvicorn's
# plain-text 400) before the gateway sees the request
TRANSPORT_HEADERS = {"content-length", "transfer-encoding", "host", "connection"}
# the models of the test config a request names: the fake upstream's, one whose public name
# differs from the upstream's, and one that does not exist
MODELS = ["fake-ok", "team-model", "no-such-model"]


@pytest.fixture(scope="module")
def api_schema(fuzz_gw: RunningGateway) -> BaseSchema:
    """The document the gateway serves, its model names narrowed to the test config's (any
    string is a model name to the document, and nearly every one would be unknown)."""
    schema = schemathesis.openapi.from_url(f"{fuzz_gw.base_url}/openapi.json", config=CONFIG)
    schema.raw_schema["components"]["schemas"]["Model"] = {"enum": MODELS}
    return schema


def credentials(operation: Operation, gw: RunningGateway, key: str) -> dict[str, str]:
    """The key in the header the operation's dialect uses first; the admin key where the
    operation takes only that."""
    requirements = operation.definition.raw["security"]
    if not requirements:
        return {}
    first = next(iter(requirements[0]))
    if first == "adminKey":
        return {"authorization": f"Bearer {gw.admin_key}"}
    return {
        "gatewayKey": {"authorization": f"Bearer {key}"},
        "anthropicKey": {"x-api-key": key},
        "azureKey": {"api-key": key},
    }[first]


@pytest.fixture(scope="module")
def known_ids(fuzz_gw: RunningGateway, http: httpx.Client) -> dict[str, str]:
    """Objects that exist, for a round of examples on real ids: an input file, the batch
    that ran it, and a message batch, both ended; a key of no other use, and a deployment."""
    line = {
        "custom_id": "one",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "fake-ok", "messages": [{"role": "user", "content": "hi"}]},
    }
    upload = http.post(
        "/v1/files",
        files={"file": ("input.jsonl", orjson.dumps(line) + b"\n")},
        data={"purpose": "batch"},
    )
    file_id = json_of(upload)["id"]
    batch = http.post(
        "/v1/batches",
        json={
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    params = {"model": "fake-ok", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    message_batch = http.post(
        "/v1/messages/batches", json={"requests": [{"custom_id": "one", "params": params}]}
    )
    spare_key = http.post(
        "/admin/keys",
        json={"name": "fuzzed"},
        headers={"authorization": f"Bearer {fuzz_gw.admin_key}"},
    )
    ids = {
        "file_id": file_id,
        "batch_id": json_of(batch)["id"],
        "message_batch_id": json_of(message_batch)["id"],
        "key_id": json_of(spare_key)["id"],
        "deployment": "fake-ok",
    }
    drain_or_fail(fuzz_gw, http, ids["batch_id"], ids["message_batch_id"])
    return ids


def fixed_ids(operation: Operation, ids: dict[str, str]) -> dict[str, str] | None:
    """The real ids for an operation's path parameters; None if it has none."""
    names = {p.name for p in operation.path_parameters}
    if not names:
        return None
    chosen = {}
    for name in names:
        if name == "batch_id" and operation.path.startswith("/v1/messages/"):
            chosen[name] = ids["message_batch_id"]
        else:
            chosen[name] = ids[name]
    return chosen


def fuzz_operation(
    operation: Operation,
    mode: GenerationMode,
    gw: RunningGateway,
    key: str,
    path_parameters: dict[str, str] | None = None,
) -> None:
    """Run one operation's examples in one generation mode; raises on the first failure
    (shrunk)."""
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    headers = credentials(operation, gw, key)

    @given(case=strategy)
    @fuzz_settings(max_examples=EXAMPLES[mode])
    def run(case: Case[Operation]) -> None:
        for name in [n for n in case.headers or {} if n.lower() in TRANSPORT_HEADERS]:
            del case.headers[name]
        response = case.call(base_url=gw.base_url, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS)

    run()


def test_the_public_api_never_fails(
    api_schema: BaseSchema, fuzz_gw: RunningGateway, fuzz_key: str, known_ids: dict[str, str]
) -> None:
    """Every operation of the spec, in both modes, and once more on ids that exist (deletes
    last): all failures are reported together.

    (One test loops over the operations rather than one test each, so that the spec can come
    from the running gateway: schemathesis's own lazy loader does not run on pytest 9.)"""
    operations = []
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operations.append(result.ok())
    # every operation but GET /openapi.json, which schemathesis leaves out as it served the run
    assert len(operations) >= 60, "the document lost operations"
    runs: list[tuple[Operation, GenerationMode, dict[str, str] | None]] = [
        (operation, mode, None) for operation in operations for mode in EXAMPLES
    ]
    for operation in sorted(operations, key=lambda op: op.method.upper() == "DELETE"):
        ids = fixed_ids(operation, known_ids)
        if ids is not None:
            runs.append((operation, GenerationMode.POSITIVE, ids))
    failures = []
    for operation, mode, ids in runs:
        try:
            fuzz_operation(operation, mode, fuzz_gw, fuzz_key, ids)
        except Unsatisfiable:  # nothing in the operation can be made invalid
            assert mode is GenerationMode.NEGATIVE, operation.label
        except (Exception, FailureGroup) as exc:  # shrunk, with a curl line to replay it
            where = f" on {ids}" if ids else ""
            failures.append(f"{operation.label} ({mode.value}{where}): {exc}")
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)
