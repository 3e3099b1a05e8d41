"""The ``NativeBatchAPI`` contract: preparing, submitting, polling, cancelling and reading
back a provider's own batch, from OpenAI's adapter (``OpenAINativeBatches``) talking to
``FakeOpenAIBatchAPI`` on a loopback port (``http``) and from ``MemoryNativeBatchAPI``
(``memory``, no sockets). Both move a batch one step per retrieve."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from batchway.core.models import BatchItem, ItemOutcome
from batchway.core.ports import NativeBatchAPI, NativeStatus
from batchway.core.states import ItemState
from batchway.errors import UpstreamRejected
from batchway.providers._batch_clients import OpenAIBatchClient
from batchway.providers._http import HttpUpstream
from batchway.providers._native import OpenAINativeBatches
from batchway.providers.openai import NATIVE_ENDPOINTS
from batchway.server import ServerHandle, serve_in_thread
from batchway.testing import FakeOpenAIBatchAPI
from batchway.testing.memory import MemoryNativeBatchAPI

KEY = "sk-native-contract"
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


@pytest.fixture(scope="module")
def served() -> Iterator[ServerHandle]:
    with serve_in_thread(FakeOpenAIBatchAPI(api_key=KEY)) as handle:
        yield handle


@pytest.fixture(params=["http", "memory"])
async def api(request: pytest.FixtureRequest) -> AsyncIterator[NativeBatchAPI]:
    if request.param == "memory":
        yield MemoryNativeBatchAPI()
        return
    handle: ServerHandle = request.getfixturevalue("served")
    http = HttpUpstream(
        handle.url,
        provider="fake",
        headers={"authorization": f"Bearer {KEY}"},
        max_connections=4,
        timeout=10.0,
        connect_timeout=5.0,
    )
    try:
        yield OpenAINativeBatches(
            OpenAIBatchClient(http),
            endpoints=NATIVE_ENDPOINTS,
            max_lines=50_000,
            fallback=True,
            poll_seconds=(30.0, 300.0),
        )
    finally:
        await http.close()


def lines(*bodies: dict[str, Any], endpoint: str = CHAT) -> list[BatchItem]:
    first = secrets.randbelow(10**9)
    return [
        BatchItem(
            id=str(first + n),
            batch_id="batch_client",
            line=n + 1,
            custom_id=f"req-{n + 1}",
            provider="openai",
            endpoint=endpoint,
            body=orjson.dumps(body),
            attempts=1,
        )
        for n, body in enumerate(bodies)
    ]


def chat(text: str, model: str = "fake-ok", **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **fields}


def message(text: str, model: str = "fake-ok", **fields: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 20,
        "messages": [{"role": "user", "content": text}],
    } | fields


async def submit(api: NativeBatchAPI, items: list[BatchItem], endpoint: str = CHAT) -> NativeStatus:
    ref = f"up_{secrets.token_hex(4)}"
    file_id, refused = await api.prepare(ref, endpoint, items)
    assert file_id is not None and refused == []
    return await api.create(ref, endpoint, file_id, items)


async def poll(api: NativeBatchAPI, status: NativeStatus) -> list[str]:
    """Retrieve until it ends; the statuses seen."""
    seen = []
    while not status.terminal:
        status = await api.retrieve(status.id)
        seen.append(status.status)
        assert len(seen) < 10
    return seen


async def outcomes(
    api: NativeBatchAPI, upstream_id: str, endpoint: str = CHAT
) -> list[ItemOutcome]:
    status = await api.retrieve(upstream_id)
    return [outcome async for outcome in api.results(status, endpoint)]


def answer_text(outcome: ItemOutcome) -> str:
    assert outcome.response is not None
    body = orjson.loads(outcome.response)
    if body.get("type") == "message":
        return str(body["content"][0]["text"])
    return str(body["choices"][0]["message"]["content"])


async def test_a_batch_runs_on_polls_and_every_line_answers(api: NativeBatchAPI) -> None:
    items = lines(chat("one"), chat("two words"), chat("three"))
    status = await submit(api, items)
    assert (status.status, status.terminal, status.cancelling, status.failure) == (
        "validating",
        False,
        False,
        None,
    )

    assert await poll(api, status) == ["in_progress", "finalizing", "completed"]
    got = await outcomes(api, status.id)

    assert [o.item_id for o in got] == [i.id for i in reversed(items)]  # order not kept
    assert {(o.state, o.status_code) for o in got} == {(ItemState.SUCCEEDED, 200)}
    by_id = {o.item_id: o for o in got}
    assert answer_text(by_id[items[1].id]) == "echo: two words"
    assert (by_id[items[1].id].usage.input_tokens, by_id[items[1].id].usage.output_tokens) == (2, 3)
    assert all(o.request_id and o.request_id.startswith("req_") for o in got)


async def test_lines_fail_by_model_in_the_openai_envelope(api: NativeBatchAPI) -> None:
    rejected = await submit(api, lines(chat("a", "fake-400"), chat("b", "fake-400")))
    broken = await submit(api, lines(chat("c", "fake-500")))
    await poll(api, rejected)
    await poll(api, broken)

    refused = await outcomes(api, rejected.id)
    (failed,) = await outcomes(api, broken.id)

    assert {(o.state, o.status_code) for o in refused} == {(ItemState.FAILED, 400)}
    assert refused[0].response is not None
    assert orjson.loads(refused[0].response) == {
        "error": {
            "message": "Model fake-400 rejects every request (fake).",
            "type": "invalid_request_error",
            "param": "model",
            "code": None,
        }
    }
    assert (failed.state, failed.status_code) == (ItemState.FAILED, 500)
    assert failed.response is not None
    assert orjson.loads(failed.response)["error"]["type"] == "server_error"


async def test_successes_come_before_failures(api: NativeBatchAPI) -> None:
    items = lines(chat("ok 1"), chat("no", stream=True), chat("ok 2"))
    status = await submit(api, items)
    await poll(api, status)

    got = await outcomes(api, status.id)

    assert [(o.item_id, o.state) for o in got] == [
        (items[2].id, ItemState.SUCCEEDED),
        (items[0].id, ItemState.SUCCEEDED),
        (items[1].id, ItemState.FAILED),
    ]
    assert got[2].response is not None
    assert orjson.loads(got[2].response)["error"]["param"] == "body.stream"


async def test_a_batch_of_two_models_fails_as_a_whole(api: NativeBatchAPI) -> None:
    status = await submit(api, lines(chat("a"), chat("b", "fake-ok-2"), chat("c", "fake-ok-3")))

    assert await poll(api, status) == ["failed"]
    final = await api.retrieve(status.id)

    assert final.terminal and final.failure is not None
    assert final.failure.count("model_mismatch: The model 'fake-ok-") == 2
    assert "differs from the model 'fake-ok'" in final.failure
    assert [o async for o in api.results(final, CHAT)] == []


async def test_a_batch_is_found_again_by_its_reference(api: NativeBatchAPI) -> None:
    items = lines(chat("x"))
    ref = f"up_{secrets.token_hex(4)}"
    file_id, _ = await api.prepare(ref, CHAT, items)
    created = await api.create(ref, CHAT, file_id, items)

    found = await api.find(ref)

    assert found is not None and found.id == created.id
    assert await api.find(f"up_{secrets.token_hex(4)}") is None
    assert api.can_find


async def test_a_cancelled_batch_keeps_what_had_run(api: NativeBatchAPI) -> None:
    items = lines(*(chat(f"line {n}") for n in range(5)))
    status = await submit(api, items)
    assert (await api.retrieve(status.id)).status == "in_progress"

    cancelling = await api.cancel(status.id)
    assert (cancelling.status, cancelling.cancelling, cancelling.terminal) == (
        "cancelling",
        True,
        False,
    )
    assert (await api.cancel(status.id)).status == "cancelling"  # again: the same
    assert await poll(api, cancelling) == ["cancelled"]

    got = await outcomes(api, status.id)
    assert sorted(o.item_id for o in got) == sorted(i.id for i in items[:3])  # the first half
    with pytest.raises(UpstreamRejected):
        await api.cancel(status.id)


async def test_an_unknown_batch(api: NativeBatchAPI) -> None:
    with pytest.raises(UpstreamRejected) as caught:
        await api.retrieve("batch_unknown")
    assert caught.value.status == 404


async def test_messages_lines_run_as_chat_completions_and_answer_as_messages(
    api: NativeBatchAPI,
) -> None:
    items = lines(message("hello you"), message("no", top_k=3), endpoint=MESSAGES)
    ref = f"up_{secrets.token_hex(4)}"

    file_id, refused = await api.prepare(ref, MESSAGES, items)

    (untranslatable,) = refused
    assert (untranslatable.item_id, untranslatable.state) == (items[1].id, ItemState.FAILED)
    assert untranslatable.status_code == 400 and untranslatable.response is not None
    assert orjson.loads(untranslatable.response)["type"] == "error"  # Anthropic's envelope
    status = await api.create(ref, MESSAGES, file_id, items[:1])
    await poll(api, status)
    (done,) = await outcomes(api, status.id, MESSAGES)
    assert (done.item_id, done.state) == (items[0].id, ItemState.SUCCEEDED)
    assert answer_text(done) == "echo: hello you"
    assert done.response is not None and orjson.loads(done.response)["type"] == "message"


async def test_nothing_to_send(api: NativeBatchAPI) -> None:
    items = lines(message("no", top_k=3), endpoint=MESSAGES)
    file_id, refused = await api.prepare("up_nothing", MESSAGES, items)
    assert file_id is None and [o.item_id for o in refused] == [items[0].id]


async def test_what_a_batch_api_declares(api: NativeBatchAPI) -> None:
    assert api.endpoints == NATIVE_ENDPOINTS
    assert (api.max_lines, api.fallback, api.poll_seconds) == (50_000, True, (30.0, 300.0))
    assert 0 < api.max_bytes < 200 * 1024 * 1024
