"""The Azure OpenAI dialect through the official ``openai.AzureOpenAI`` client: Files and
Batches under ``/openai`` with ``api-version``, and the deployment routes."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import RunningGateway
from tests.helpers import chat_line, jsonl, read_results, unique, upload

API_VERSION = "2025-01-01-preview"
# an explicit deployment name, beside the public model names that are deployments themselves
DEPLOYMENTS = {"azure": {"deployments": {"my-chat": "team-model", "my-embed": "fake-ok"}}}


def azure(gw: RunningGateway, key: str | None = None, **options) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=gw.base_url,
        api_key=key or gw.create_key(),
        api_version=API_VERSION,
        max_retries=0,
        **options,
    )


def azure_line(custom_id: str, deployment: str, url: str = "/chat/completions", **body):
    """A batch line as Azure documents them: the url without ``/v1``, the deployment as model."""
    line = chat_line(custom_id, model=deployment, **body)
    return {**line, "url": url}


@pytest.fixture
def agw(make_gateway) -> RunningGateway:
    gateway: RunningGateway = make_gateway(**DEPLOYMENTS)
    return gateway


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("/chat/completions", "/chat/completions"),
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("/chat/completions", "/v1/chat/completions"),
    ],
)
def test_a_batch_runs_from_upload_to_output(agw: RunningGateway, endpoint: str, url: str):
    client = azure(agw)
    tag = unique()
    lines = [azure_line(f"r{i}", "fake-ok", url, prompt=f"{tag} {i}") for i in range(5)]
    file = client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    assert (file.purpose, file.filename) == ("batch", "in.jsonl")

    batch = client.batches.create(
        input_file_id=file.id,
        endpoint=endpoint,  # type: ignore[arg-type]  # Azure's form is not in the SDK's literals
        completion_window="24h",
    )
    assert batch.status == "validating"
    agw.drain()

    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed", batch.errors
    assert batch.endpoint == "/v1/chat/completions"
    assert batch.model == "fake-ok"
    assert batch.request_counts is not None and batch.request_counts.completed == 5
    assert batch.error_file_id is None
    results = read_results(client, batch.output_file_id)
    assert [r.custom_id for r in results] == [f"r{i}" for i in range(5)]
    for i, result in enumerate(results):
        assert result.error is None and result.response is not None
        assert result.response.status_code == 200
        assert result.response.body["choices"][0]["message"]["content"] == f"echo: {tag} {i}"


def test_a_deployment_name_maps_to_its_model_in_batch_lines(agw: RunningGateway):
    client = azure(agw)
    tag = unique()
    batch = client.batches.create(
        input_file_id=upload(client, jsonl([azure_line("one", "my-chat", prompt=tag)])),
        endpoint="/chat/completions",  # type: ignore[arg-type]
        completion_window="24h",
    )
    agw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.model == "team-model"  # the public model, not the deployment
    [seen] = agw.fake.requests
    assert seen.json is not None and seen.json["model"] == "fake-ok"  # team-model's upstream
    [result] = read_results(client, batch.output_file_id)
    assert result.response is not None
    assert result.response.body["choices"][0]["message"]["content"] == f"echo: {tag}"


def test_an_unknown_deployment_in_a_line_fails_the_batch(agw: RunningGateway):
    client = azure(agw)
    lines = [azure_line("a", "fake-ok"), azure_line("b", "no-such-deployment")]
    batch = client.batches.create(
        input_file_id=upload(client, jsonl(lines)),
        endpoint="/chat/completions",  # type: ignore[arg-type]
        completion_window="24h",
    )
    agw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data is not None
    [error] = batch.errors.data
    assert (error.code, error.line, error.param) == ("model_not_found", 2, "body.model")


def test_files_and_batches_list_retrieve_delete_and_cancel(agw: RunningGateway):
    client = azure(agw)
    first = upload(client, jsonl([azure_line("x", "fake-ok")]), name="first.jsonl")
    second = upload(client, jsonl([azure_line("y", "fake-ok")]), name="second.jsonl")
    assert [f.id for f in client.files.list()] == [second, first]
    assert client.files.retrieve(first).filename == "first.jsonl"
    assert client.files.content(first).content == jsonl([azure_line("x", "fake-ok")])

    batches = [
        client.batches.create(
            input_file_id=file_id,
            endpoint="/chat/completions",  # type: ignore[arg-type]
            completion_window="24h",
        )
        for file_id in (first, second)
    ]
    listed = client.batches.list(limit=1)
    assert [b.id for b in listed.data] == [batches[1].id]
    assert [b.id for b in listed] == [batches[1].id, batches[0].id]  # pages with `after`

    cancelling = client.batches.cancel(batches[0].id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    agw.drain()
    assert client.batches.retrieve(batches[0].id).status == "cancelled"
    assert client.batches.retrieve(batches[1].id).status == "completed"
    with pytest.raises(openai.BadRequestError):  # it has ended
        client.batches.cancel(batches[0].id)

    deleted = client.files.delete(first)
    assert (deleted.id, deleted.deleted) == (first, True)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(first)


def test_chat_completion_on_a_deployment(agw: RunningGateway):
    client = azure(agw)
    prompt = f"hello {unique()}"
    raw = client.chat.completions.with_raw_response.create(
        model="my-chat", messages=[{"role": "user", "content": prompt}]
    )
    assert raw.http_request.url.path == "/openai/deployments/my-chat/chat/completions"
    assert raw.http_request.url.params["api-version"] == API_VERSION
    assert raw.headers["x-request-id"].startswith("req_")
    completion = raw.parse()
    assert completion.choices[0].message.content == f"echo: {prompt}"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    [seen] = agw.fake.requests
    assert seen.json is not None and seen.json["model"] == "fake-ok"
    assert seen.headers["authorization"] == "Bearer upstream-secret"


def test_streamed_chat_completion_on_a_deployment(agw: RunningGateway):
    client = azure(agw)
    prompt = f"stream {unique()} please"
    stream = client.chat.completions.create(
        model="fake-ok",
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"echo: {prompt}"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_embeddings_and_completions_on_deployments(agw: RunningGateway):
    client = azure(agw)
    embedding = client.embeddings.create(model="my-embed", input=["a", "b"])
    assert len(embedding.data) == 2 and len(embedding.data[0].embedding) == 8
    completion = client.completions.create(model="fake-ok", prompt="once upon")
    assert completion.choices[0].text == "echo: once upon"
    assert [r.path for r in agw.fake.requests] == ["/v1/embeddings", "/v1/completions"]


def test_a_client_bound_to_one_deployment(agw: RunningGateway):
    # azure_deployment puts the deployment in the base URL; files stay under /openai
    client = azure(agw, azure_deployment="my-chat")
    prompt = f"bound {unique()}"
    completion = client.chat.completions.create(
        model="ignored", messages=[{"role": "user", "content": prompt}]
    )
    assert completion.choices[0].message.content == f"echo: {prompt}"
    assert client.files.list().data == []


def test_the_deployment_decides_the_model_whatever_the_body_says(agw: RunningGateway):
    key = agw.create_key()
    prompt = f"override {unique()}"
    response = httpx.post(
        f"{agw.base_url}/openai/deployments/my-chat/chat/completions",
        params={"api-version": API_VERSION},
        json={"model": "fake-500", "messages": [{"role": "user", "content": prompt}]},
        headers={"api-key": key},
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == f"echo: {prompt}"
    [seen] = agw.fake.requests
    assert seen.json is not None and seen.json["model"] == "fake-ok"
    # and without any model in the body
    response = httpx.post(
        f"{agw.base_url}/openai/deployments/fake-ok/embeddings",
        params={"api-version": API_VERSION},
        json={"input": "no model"},
        headers={"api-key": key},
    )
    assert response.status_code == 200, response.text


def test_an_unknown_deployment_is_azures_404(agw: RunningGateway):
    unknown_name = azure(agw)
    not_allowed = azure(agw, agw.create_key(models=["fake-ok"]))  # my-chat is team-model
    for client, deployment in ((unknown_name, "nope"), (not_allowed, "my-chat")):
        with pytest.raises(openai.NotFoundError) as unknown:
            client.chat.completions.create(
                model=deployment, messages=[{"role": "user", "content": "x"}]
            )
        assert unknown.value.code == "DeploymentNotFound"
        assert "deployment for this resource does not exist" in unknown.value.message
    with pytest.raises(openai.NotFoundError) as unknown:
        unknown_name.embeddings.create(model="nope", input="x")
    assert unknown.value.code == "DeploymentNotFound"
    assert agw.fake.requests == []


def test_a_public_name_with_a_slash_is_a_deployment_too(make_gateway):
    gw = make_gateway(models={"org/chat": {"provider": "fake", "model": "fake-ok"}})
    prompt = f"slash {unique()}"
    completion = azure(gw).chat.completions.create(
        model="org/chat", messages=[{"role": "user", "content": prompt}]
    )
    assert completion.choices[0].message.content == f"echo: {prompt}"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/openai/files"),
        ("POST", "/openai/batches"),
        ("GET", "/openai/batches/batch_x"),
        ("POST", "/openai/batches/batch_x/cancel"),
        ("POST", "/openai/deployments/fake-ok/chat/completions"),
    ],
)
def test_a_missing_api_version_is_a_400(agw: RunningGateway, method: str, path: str):
    key = agw.create_key()
    for params in ({}, {"api-version": ""}):
        response = httpx.request(
            method, agw.base_url + path, params=params, headers={"api-key": key}, json={}
        )
        assert response.status_code == 400
        assert response.json() == {
            "error": {
                "message": "Missing required query parameter: api-version",
                "type": "invalid_request_error",
                "param": "api-version",
                "code": "BadRequest",
            }
        }
    # any version is taken
    response = httpx.get(
        f"{agw.base_url}/openai/files", params={"api-version": "v1"}, headers={"api-key": key}
    )
    assert response.status_code == 200


def test_keys_bearer_tokens_and_other_keys_objects(agw: RunningGateway):
    with pytest.raises(openai.AuthenticationError):
        azure(agw, "wrong").files.list()
    with pytest.raises(openai.AuthenticationError):
        azure(agw, "wrong").chat.completions.create(
            model="fake-ok", messages=[{"role": "user", "content": "x"}]
        )
    owner = azure(agw)
    file_id = upload(owner, jsonl([azure_line("x", "fake-ok")]))
    batch = owner.batches.create(
        input_file_id=file_id,
        endpoint="/chat/completions",  # type: ignore[arg-type]
        completion_window="24h",
    )
    # an Entra-style token arrives as Authorization: Bearer, and is the key too
    other = openai.AzureOpenAI(
        azure_endpoint=agw.base_url,
        azure_ad_token=agw.create_key(),
        api_version=API_VERSION,
        max_retries=0,
    )
    assert other.batches.list().data == []
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        other.batches.cancel(batch.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(file_id)
    assert owner.batches.retrieve(batch.id).status == "validating"


def test_the_openai_routes_know_no_deployment_names(agw: RunningGateway):
    key = agw.create_key()
    client = agw.client(key)
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="my-chat", messages=[{"role": "user", "content": "x"}])
    assert unknown.value.code == "model_not_found"
    # a batch from /v1 may name a deployment, as the engine is shared (docs/api.md)
    batch = client.batches.create(
        input_file_id=upload(client, jsonl([chat_line("x", model="my-chat")])),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    agw.drain()
    assert client.batches.retrieve(batch.id).model == "team-model"
    # and an Azure batch reads the same through the OpenAI routes
    assert azure(agw, key).batches.retrieve(batch.id).status == "completed"
