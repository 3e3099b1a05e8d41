"""Live traffic against the document the gateway serves at ``/openapi.json``.

Real calls go through the official ``openai`` (also as ``AzureOpenAI``) and ``anthropic``
SDKs and plain ``httpx`` over every route family, and every answer is checked as it
arrives against the document: its route must be one of the document's operations, its
status one the operation lists, its content type, required headers and body as the
response says (bodies with jsonschema_rs, the document's components resolved). Every
operation of the document must have been answered once at least, and the document's paths
must be exactly the routes the app serves (the console's pages apart).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx
import jsonschema_rs
import openai
import orjson
import pytest
from starlette.routing import Mount, Route

from tests.conftest import RunningGateway
from tests.helpers import chat_line, jsonl

API_VERSION = "2025-01-01-preview"
METHODS = ("get", "post", "patch", "put", "delete")
JSON = dict[str, Any]


class Spec:
    """The served document, and what it says of an answer."""

    def __init__(self, document: JSON) -> None:
        self.document = document
        self.paths = [(_template_pattern(path), path) for path in document["paths"]]
        self._validators: dict[bytes, jsonschema_rs.Validator] = {}

    def operations(self) -> set[tuple[str, str]]:
        return {
            (method.upper(), path)
            for path, item in self.document["paths"].items()
            for method in METHODS
            if method in item
        }

    def resolve(self, node: JSON) -> JSON:
        """``node``, or the component its ``$ref`` names."""
        pointer = node.get("$ref")
        if pointer is None:
            return node
        target = self.document
        for part in pointer.removeprefix("#/").split("/"):
            target = target[part]
        return target

    def route(self, method: str, path: str) -> str | None:
        """The document's path that ``method`` ``path`` is an operation of, if any."""
        matches = [template for pattern, template in self.paths if pattern.match(path)]
        assert len(matches) <= 1, matches
        if not matches or method.lower() not in self.document["paths"][matches[0]]:
            return None
        return matches[0]

    def response(self, method: str, template: str, status: int) -> JSON | None:
        responses = self.document["paths"][template][method.lower()]["responses"]
        for key in (str(status), f"{status // 100}XX", "default"):
            if key in responses:
                return self.resolve(responses[key])
        return None

    def validator(self, schema: JSON) -> jsonschema_rs.Validator:
        key = orjson.dumps(schema)
        if key not in self._validators:
            # the components beside the schema, so that its references resolve
            root = {"components": self.document["components"], **schema}
            self._validators[key] = jsonschema_rs.Draft202012Validator(root)
        return self._validators[key]

    def problems(self, method: str, path: str, response: httpx.Response) -> list[str]:
        """What is wrong with ``response`` by the document (nothing: an empty list); and
        with its request, if the gateway took it: a JSON body the document would refuse."""
        template = self.route(method, path)
        if template is None:
            return ["the route is not in the document"]
        problems = []
        if response.is_success:
            taken = self.request_problems(method, template, response.request)
            problems = [f"the request it took: {problem}" for problem in taken]
        return problems + self.response_problems(method, template, response)

    def request_problems(self, method: str, template: str, request: httpx.Request) -> list[str]:
        body = self.document["paths"][template][method.lower()].get("requestBody")
        media = request.headers.get("content-type", "").split(";")[0].strip()
        if body is None or media != "application/json":
            return []
        validator = self.validator(body["content"][media]["schema"])
        return [error.message for error in validator.iter_errors(orjson.loads(request.content))]

    def response_problems(self, method: str, template: str, response: httpx.Response) -> list[str]:
        spec = self.response(method, template, response.status_code)
        if spec is None:
            return [f"status {response.status_code} is not documented"]
        problems = [
            f"the required header {name} is missing"
            for name, header in spec.get("headers", {}).items()
            if header.get("required") and name not in response.headers
        ]
        media = response.headers.get("content-type", "").split(";")[0].strip()
        content = spec.get("content", {})
        if media not in content:
            return [*problems, f"content type {media!r} is not one of {sorted(content)}"]
        validator = self.validator(content[media]["schema"])
        for instance in _instances(media, response.content):
            problems += [error.message for error in validator.iter_errors(instance)]
        return problems


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{\w+\}", template)
    return re.compile("^" + "[^/]+".join(re.escape(part) for part in parts) + "$")


def _instances(media: str, body: bytes) -> Iterator[Any]:
    """What the schema of a content type describes: the JSON body, or each event of a stream
    (text bodies are strings whatever they hold)."""
    if media == "application/json":
        yield orjson.loads(body)
    elif media == "text/event-stream":
        for block in body.decode().replace("\r\n", "\n").split("\n\n"):
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if fields:
                yield fields
    else:
        yield body.decode(errors="replace")


@dataclass
class Recorder:
    """An httpx response hook checking every answer against the document as it arrives."""

    spec: Spec
    seen: set[tuple[str, str]] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)

    def __call__(self, response: httpx.Response) -> None:  # the anthropic SDK's httpx2 too
        response.read()
        request = response.request
        path = request.url.path
        template = self.spec.route(request.method, path)
        if template is not None:
            self.seen.add((request.method, template))
        for problem in self.spec.problems(request.method, path, response):
            snippet = response.content[:200]
            self.failures.append(
                f"{request.method} {path} → {response.status_code}: {problem} {snippet!r}"
            )

    def client(self, base_url: str = "", **options: Any) -> httpx.Client:
        return httpx.Client(base_url=base_url, event_hooks={"response": [self]}, **options)


@pytest.fixture
def spec(gw: RunningGateway) -> Spec:
    response = httpx.get(f"{gw.base_url}/openapi.json")
    assert response.status_code == 200
    return Spec(response.json())


# -- the route families --------------------------------------------------------------------


def drive_openai(gw: RunningGateway, client: openai.OpenAI) -> None:
    """Inference, models, files and batches through the SDK, under ``/v1``."""
    assert client.models.list().data
    chat = client.chat.completions.create(
        model="fake-ok", messages=[{"role": "user", "content": "hello"}]
    )
    assert chat.choices[0].message.content == "echo: hello"
    with client.chat.completions.with_streaming_response.create(
        model="fake-ok", messages=[{"role": "user", "content": "streamed"}], stream=True
    ) as streamed:
        assert streamed.headers["content-type"].startswith("text/event-stream")
        assert b"data: [DONE]" in streamed.read()
    assert client.embeddings.create(model="fake-ok", input="text").data
    assert client.completions.create(model="fake-ok", prompt="hi").choices
    assert client.responses.create(model="fake-ok", input="hi").status == "completed"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.InternalServerError):  # the provider failed: a 503
        client.chat.completions.create(
            model="fake-500", messages=[{"role": "user", "content": "x"}]
        )

    lines = jsonl([chat_line("a"), chat_line("b")])
    file = client.files.create(file=("in.jsonl", io.BytesIO(lines)), purpose="batch")
    assert client.files.retrieve(file.id).bytes == len(lines)
    assert [f.id for f in client.files.list()] == [file.id]
    assert client.files.content(file.id).content == lines
    batch = client.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    cancelled = client.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert client.batches.cancel(cancelled.id).status in ("cancelling", "cancelled")
    gw.drain()
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.output_file_id is not None
    assert len(client.files.content(done.output_file_id).text.splitlines()) == 2
    assert {b.id for b in client.batches.list()} >= {batch.id, cancelled.id}
    assert client.files.delete(file.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(file.id)


def drive_inline(gw: RunningGateway, http: httpx.Client, prefix: str) -> None:
    """Inline batches on ``{prefix}/batches``: the message batch while it runs, its results
    once it has ended, and a cancel."""
    params = {"model": "fake-ok", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}
    body = {"requests": [{"custom_id": "one", "params": params}]}
    created = http.post(f"{prefix}/batches", json=body).json()
    assert created["type"] == "message_batch"
    assert http.get(f"{prefix}/batches/{created['id']}").json()["type"] == "message_batch"
    other = http.post(f"{prefix}/batches", json=body).json()
    assert http.post(f"{prefix}/batches/{other['id']}/cancel").status_code == 200
    early = http.get(f"{prefix}/batches/{created['id']}/results")
    assert early.status_code in (200, 400)  # 400 until it has ended
    gw.drain()
    ended = http.get(f"{prefix}/batches/{created['id']}")
    assert ended.headers["content-type"] == "application/x-jsonl"
    results = http.get(f"{prefix}/batches/{created['id']}/results")
    assert orjson.loads(results.text.splitlines()[0])["result"]["type"] == "succeeded"


def drive_unprefixed(gw: RunningGateway, http: httpx.Client) -> None:
    """The OpenAI routes without ``/v1``, with httpx."""
    message = {"model": "fake-ok", "messages": [{"role": "user", "content": "hi"}]}
    assert http.get("/models").status_code == 200
    assert http.post("/chat/completions", json=message).status_code == 200
    assert http.post("/embeddings", json={"model": "fake-ok", "input": "x"}).status_code == 200
    assert http.post("/completions", json={"model": "fake-ok", "prompt": "x"}).status_code == 200
    assert http.post("/responses", json={"model": "fake-ok", "input": "x"}).status_code == 200
    upload = http.post(
        "/files",
        files={"file": ("in.jsonl", jsonl([chat_line("a")]))},
        data={"purpose": "batch"},
    )
    file_id = upload.json()["id"]
    assert http.get("/files").status_code == 200
    assert http.get(f"/files/{file_id}").status_code == 200
    assert http.get(f"/files/{file_id}/content").status_code == 200
    create = {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    batch_id = http.post("/batches", json=create).json()["id"]
    assert http.get("/batches").status_code == 200
    assert http.get(f"/batches/{batch_id}").status_code == 200
    assert http.post(f"/batches/{batch_id}/cancel").status_code == 200
    assert http.get(f"/batches/{batch_id}/results").status_code in (200, 400)
    assert http.delete(f"/files/{file_id}").status_code == 200
    drive_inline(gw, http, "")


def drive_anthropic(gw: RunningGateway, client: anthropic.Anthropic) -> None:
    """Messages, streamed and not, and Message Batches through the SDK."""
    user = [{"role": "user", "content": "hello"}]
    message = client.messages.create(model="fake-ok", max_tokens=32, messages=user)  # type: ignore[arg-type]
    assert message.content
    with client.messages.stream(model="fake-ok", max_tokens=32, messages=user) as stream:  # type: ignore[arg-type]
        assert "".join(stream.text_stream)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="nope", max_tokens=8, messages=user)  # type: ignore[arg-type]
    params = {"model": "fake-ok", "max_tokens": 8, "messages": user}
    requests = [{"custom_id": "one", "params": params}]
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    other = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    assert client.messages.batches.cancel(other.id).processing_status in ("canceling", "ended")
    assert client.messages.batches.retrieve(batch.id).id == batch.id
    gw.drain()
    assert [r.result.type for r in client.messages.batches.results(batch.id)] == ["succeeded"]
    assert {b.id for b in client.messages.batches.list()} >= {batch.id, other.id}
    assert client.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)


def drive_azure(gw: RunningGateway, client: openai.AzureOpenAI, http: httpx.Client) -> None:
    """Azure's files, batches and deployment routes through ``AzureOpenAI``."""
    chat = client.chat.completions.create(
        model="fake-ok", messages=[{"role": "user", "content": "hello"}]
    )
    assert chat.choices[0].message.content == "echo: hello"
    assert client.embeddings.create(model="fake-ok", input="text").data
    assert client.completions.create(model="fake-ok", prompt="hi").choices
    with pytest.raises(openai.NotFoundError):  # DeploymentNotFound
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    file = client.files.create(file=("in.jsonl", jsonl([chat_line("a")])), purpose="batch")
    assert client.files.retrieve(file.id).id == file.id
    assert file.id in [f.id for f in client.files.list()]
    assert client.files.content(file.id).content
    batch = client.batches.create(
        input_file_id=file.id,
        endpoint="/chat/completions",
        completion_window="24h",  # type: ignore[arg-type]
    )
    assert client.batches.retrieve(batch.id).id == batch.id
    assert batch.id in [b.id for b in client.batches.list()]
    assert client.batches.cancel(batch.id).status in ("cancelling", "cancelled")
    version = {"api-version": API_VERSION}
    results = http.get(f"/openai/batches/{batch.id}/results", params=version)
    assert results.status_code in (200, 400)
    assert client.files.delete(file.id).deleted
    missing = http.get("/openai/files")  # no api-version
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "BadRequest"


def drive_admin(gw: RunningGateway, http: httpx.Client, user: openai.OpenAI) -> None:
    """Keys, any batch, logs and usage, with the admin key."""
    admin = {"authorization": f"Bearer {gw.admin_key}"}
    created = http.post("/admin/keys", json={"name": "spare", "rpm": 10}, headers=admin).json()
    assert created["key"]
    assert http.get("/admin/keys", headers=admin).json()["data"]
    changed = http.patch(f"/admin/keys/{created['id']}", json={"rpm": None}, headers=admin)
    assert changed.json()["rpm"] is None
    too_big = http.post("/admin/keys", json={"name": "x", "rpm": 2**31}, headers=admin)
    assert too_big.status_code == 400
    file = user.files.create(file=("in.jsonl", jsonl([chat_line("a")])), purpose="batch")
    batch = user.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    cancelled = http.post(f"/admin/batches/{batch.id}/cancel", headers=admin)
    assert cancelled.json()["status"] in ("cancelling", "cancelled")
    assert http.delete(f"/admin/keys/{created['id']}", headers=admin).json()["revoked"]
    gw.run(gw.gateway.accounting.flush())  # the calls so far, written to the request logs
    logs = http.get("/admin/logs", params={"limit": 1000}, headers=admin)
    assert logs.json()["data"]
    csv = http.get("/admin/logs", params={"format": "csv"}, headers=admin)
    assert csv.text.startswith("id,")
    usage = http.get("/admin/usage", params={"group_by": "model"}, headers=admin)
    assert usage.json()["object"] == "usage"
    assert http.get("/admin/keys").status_code == 401


def drive_gateway(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/metrics").status_code == 200
    assert http.get("/openapi.json").json()["openapi"] == "3.1.0"
    assert http.get("/docs").headers["content-type"].startswith("text/html")


# -- the tests -----------------------------------------------------------------------------


def test_every_answer_is_as_the_document_says(gw: RunningGateway, spec: Spec) -> None:
    recorder = Recorder(spec)
    key = gw.create_key("openapi")
    bearer = {"authorization": f"Bearer {key}"}
    clients: list[httpx.Client] = []

    def client(**options: Any) -> httpx.Client:
        made = recorder.client(**options)
        clients.append(made)
        return made

    sdk = openai.OpenAI(base_url=gw.url, api_key=key, max_retries=0, http_client=client())
    http = client(base_url=gw.base_url, headers=bearer, timeout=30)
    try:
        drive_openai(gw, sdk)
        drive_inline(gw, http, "/v1")
        drive_unprefixed(gw, http)
        drive_anthropic(
            gw,
            anthropic.Anthropic(
                base_url=gw.base_url,
                api_key=key,
                max_retries=0,
                http_client=anthropic.DefaultHttpxClient(event_hooks={"response": [recorder]}),
            ),
        )
        azure = openai.AzureOpenAI(
            azure_endpoint=gw.base_url,
            api_key=key,
            api_version=API_VERSION,
            max_retries=0,
            http_client=client(),
        )
        drive_azure(gw, azure, client(base_url=gw.base_url, headers={"api-key": key}))
        drive_admin(gw, client(base_url=gw.base_url, timeout=30), sdk)
        drive_gateway(client(base_url=gw.base_url))
    finally:
        for made in clients:
            made.close()

    assert not recorder.failures, "\n".join(recorder.failures)
    assert spec.operations() - recorder.seen == set(), "operations no call reached"


def app_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from app_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + route.path)
            for method in route.methods or ():
                if method != "HEAD":
                    yield method, path


def test_the_document_has_every_route_of_the_app_and_no_other(
    gw: RunningGateway, spec: Spec
) -> None:
    served = {
        (method, path)
        for method, path in app_routes(gw.app.routes)
        if not path.startswith("/console")  # the console's pages are for people
    }

    assert served - spec.operations() == set(), "routes the document leaves out"
    assert spec.operations() - served == set(), "operations the app does not route"
