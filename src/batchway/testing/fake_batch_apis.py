"""Fakes of the providers' *native* batch APIs, as plain fast ASGI apps for tests.

Three apps, each served with `batchway.server.serve_in_thread` and driven by the official
SDKs exactly as the real services are (as the vendors document them):

- `FakeOpenAIBatchAPI`: OpenAI Files + Batches under ``/v1`` (§2, §3), plus synchronous
  inference (``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/completions``,
  ``/v1/responses``, ``/v1/models``) served by an inner `FakeUpstream`, so one server can also
  serve executed mode with every ``fake-*`` behaviour. Auth ``Authorization: Bearer <api_key>``.
- `FakeAzureBatchAPI`: the same engine with Azure's differences (§5): classic paths under
  ``/openai/`` with a required ``api-version`` query parameter (the v1 flavour
  ``/openai/v1/...`` too, where it is optional), ``api-key`` (or Bearer) auth, Azure's error
  envelope, uploads answering 201 ``pending``, ``""`` file ids on fresh batches, deployment
  names as models, GUID request ids, content filter results and a zero-byte error file on
  success. Inference at ``/openai/deployments/{deployment}/chat/completions`` (and
  ``/embeddings``, ``/completions``).
- `FakeAnthropicAPI`: Messages (``POST /v1/messages``, streaming too) and Message Batches
  (§4, §6.3-6.4). Auth ``x-api-key`` (or Bearer); ``anthropic-version`` required.

**Batches run on polls, not on the clock.** Each retrieve of a batch (``GET .../batches/{id}``)
counts as a poll, and every ``polls_per_step`` polls move it one step (``0``: polls never move
it). Listing does not count. ``advance_all()`` moves every unfinished batch one step at once,
``finish_all()`` until all are terminal. Steps:

- OpenAI/Azure: ``validating`` → ``in_progress`` (or ``failed`` with ``errors``) →
  ``finalizing`` (every line run) → ``completed`` (files written). With ``expire_batches``:
  ``in_progress`` → ``expired`` directly. ``cancelling`` → ``cancelled``.
- Anthropic: ``in_progress`` → ``ended``; ``canceling`` → ``ended``.

**Lines run like FakeUpstream's models**, by prefix of the line's model: ``fake-400`` and
``fake-always-400`` answer 400, ``fake-500`` 500 (error file / ``errored``); every other model
(``fake-500-then-ok``, ``fake-429-then-ok``, ``fake-529``... as a batch service retries them)
succeeds with the echo answer. Since an OpenAI batch has one model, mix outcomes in one batch
with invalid bodies (empty ``messages``, ``stream: true``): those lines answer 400.
Outputs are written in *reversed* input order, as real services do not keep order.

**Choices where the spec is unconfirmed** (each documented on the setting or method):

- A cancelled or expired batch had run "the first half" of its lines, rounded up, in input
  order. OpenAI cancel: the never-run lines are in **neither** file and not counted in
  ``request_counts`` (so ``completed + failed < total``); expiry: they are in the error file
  with ``batch_expired`` and counted in ``failed``. Anthropic: ``canceled`` / ``expired``.
- ``expired`` does not pass through ``finalizing``. Cancelling a ``finalizing`` or terminal
  batch answers 400 (``invalid_request_error``); cancelling a ``cancelling`` one is idempotent.
- Deleting an input file does not affect a batch made from it (the batch keeps a copy).
- Validation reports every line error (up to 100) with its 1-based ``line``, in the order:
  line errors (``invalid_json_line``, ``invalid_request``, ``url_mismatch``,
  ``duplicate_custom_id``, ``model_mismatch``, Azure ``model_not_found``), then
  ``too_many_tasks``, then ``token_limit_exceeded``. A trailing newline is ignored; any other
  blank line is ``invalid_json_line``.
- Anthropic: results before ``ended``, cancel after ``ended`` and delete before ``ended``
  answer 400 ``invalid_request_error``; only envelope problems (custom ids, empty requests)
  are rejected at create, problems inside ``params`` come back as ``errored`` results.
  Streams include one ``ping`` event after ``content_block_start``, as the real API does.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from batchway.server import Message, Receive, Scope, Send
from batchway.testing._fake_anthropic import (
    AnthropicEngine,
    AnthropicError,
    message_events,
    new_id,
)
from batchway.testing._fake_openai import ErrorReply, JSONObject
from batchway.testing._fake_openai_batches import (
    OpenAIBatchEngine,
    azure_error,
    with_content_filters,
)
from batchway.testing.fake_upstream import FAKE_MODELS, FakeUpstream, _lifespan, _read_body

__all__ = [
    "FakeAnthropicAPI",
    "FakeAzureBatchAPI",
    "FakeOpenAIBatchAPI",
    "RecordedAPIRequest",
]

_INFERENCE: Final = frozenset({"/chat/completions", "/completions", "/embeddings", "/responses"})
_AZURE_401: Final = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
    "a valid key for an active subscription and use a correct regional API endpoint for your "
    "resource."
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedAPIRequest:
    """One request as a fake batch API received it.

    ``headers`` has lower-case names, ``query`` the query parameters. ``json`` is the parsed
    body when it is JSON; for ``multipart/form-data`` uploads ``form`` holds the text fields
    and ``files`` maps each file field to ``(filename, content)``. ``request_id`` is the id
    the answer carried; ``time`` is `time.monotonic()` at arrival. With
    ``record_bodies=False`` ``json``, ``body`` and file contents are left empty.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    form: dict[str, str]
    files: dict[str, tuple[str, bytes]]
    body: bytes
    request_id: str
    time: float


@dataclass(slots=True, kw_only=True)
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes
    json: Any
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    form_error: bool = False
    base_url: str = ""


@dataclass(slots=True)
class _Reply:
    status: int = 200
    body: bytes = b""
    content_type: bytes = b"application/json"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    events: list[bytes] | None = None


def _json(
    obj: JSONObject, status: int = 200, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> _Reply:
    return _Reply(status, orjson.dumps(obj), headers=headers)


class _FakeAPI:
    """Records and ASGI plumbing shared by the three fakes."""

    def __init__(self, *, record_bodies: bool, record_limit: int | None) -> None:
        self.record_bodies = record_bodies
        self._cond = threading.Condition(threading.Lock())
        self._records: deque[RecordedAPIRequest] = deque(maxlen=record_limit)
        self._received = 0
        self._upstream: FakeUpstream | None = None

    # -- records -----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedAPIRequest]:
        """A copy of the recorded requests, oldest first."""
        with self._cond:
            return list(self._records)

    def count(self, path: str | None = None, method: str | None = None) -> int:
        """How many recorded requests have exactly this ``path`` (no query) and ``method``."""
        wanted = method.upper() if method is not None else None
        return sum(
            1
            for r in self.requests
            if (path is None or r.path == path) and (wanted is None or r.method == wanted)
        )

    def clear(self) -> None:
        """Forget the records (and which prompts already failed once); files and batches stay
        (`reset` drops them too)."""
        with self._cond:
            self._records.clear()
            self._received = 0
        if self._upstream is not None:
            self._upstream.clear()

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        """Block until ``n`` requests arrived since creation or `clear`; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._received >= n, timeout)

    def on_server_stopping(self) -> None:
        """End delayed inference answers now (thread-safe; the server runners call it)."""
        if self._upstream is not None:
            self._upstream.on_server_stopping()

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await _read_body(receive)
        if raw is None:
            return
        request = _parse_request(scope, raw)
        request_id = self._new_request_id()
        keep = self.record_bodies
        record = RecordedAPIRequest(
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            json=request.json if keep else None,
            form=request.form,
            files={k: (name, data if keep else b"") for k, (name, data) in request.files.items()},
            body=raw if keep else b"",
            request_id=request_id,
            time=time.monotonic(),
        )
        with self._cond:
            self._records.append(record)
            self._received += 1
            self._cond.notify_all()
        try:
            reply = await self._serve(request, scope, receive, send)
        except (ErrorReply, AnthropicError) as failure:
            reply = self._error_reply(failure, request_id)
        if reply is not None:
            await _send(send, reply, self._id_headers(request_id))

    def _new_request_id(self) -> str:
        return f"req_{os.urandom(16).hex()}"

    def _id_headers(self, request_id: str) -> tuple[tuple[bytes, bytes], ...]:
        return ((b"x-request-id", request_id.encode()),)

    def _error_reply(self, failure: ErrorReply | AnthropicError, request_id: str) -> _Reply:
        if isinstance(failure, AnthropicError):
            return _json(failure.body(request_id), failure.status, failure.headers)
        return _Reply(failure.status, failure.body, headers=failure.headers)

    async def _serve(
        self, request: _Request, scope: Scope, receive: Receive, send: Send
    ) -> _Reply | None:
        """The reply, or None when the request was answered already (delegated)."""
        raise NotImplementedError

    async def _delegate(
        self,
        upstream: FakeUpstream,
        scope: Scope,
        receive: Receive,
        send: Send,
        path: str,
        body: bytes,
    ) -> None:
        """Let the inner FakeUpstream answer ``body`` as a request to ``path``."""
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        inner = dict(scope, path=path, raw_path=path.encode(), query_string=b"")
        await upstream(inner, replay, send)


class _OpenAIStyle(_FakeAPI):
    """What FakeOpenAIBatchAPI and FakeAzureBatchAPI share: settings, engine and routes."""

    def __init__(
        self,
        *,
        azure: bool,
        api_key: str | None,
        polls_per_step: int,
        fail_batches: int,
        refuse_batches: int,
        expire_batches: bool,
        max_lines: int | None,
        file_pending_polls: int,
        deployments: Iterable[str],
        upstream: FakeUpstream | None,
        record_bodies: bool,
        record_limit: int | None,
    ) -> None:
        super().__init__(record_bodies=record_bodies, record_limit=record_limit)
        self.api_key = api_key
        self.polls_per_step = polls_per_step
        self.fail_batches = fail_batches
        self.refuse_batches = refuse_batches
        self.expire_batches = expire_batches
        self.max_lines = max_lines
        self.file_pending_polls = file_pending_polls
        # the next this many retrieves of a batch answer 429 with this retry-after (if any)
        self.throttle_polls = 0
        self.throttle_retry_after: str | None = None
        self.upstream = upstream if upstream is not None else FakeUpstream()
        self._upstream = self.upstream
        self.engine = OpenAIBatchEngine(self, azure=azure, deployments=deployments)

    @property
    def embedding_dimensions(self) -> int:
        """The vector size of embeddings, in batches and (through `upstream`) synchronously."""
        return self.upstream.embedding_dimensions

    @embedding_dimensions.setter
    def embedding_dimensions(self, value: int) -> None:
        self.upstream.embedding_dimensions = value

    # -- views for tests ---------------------------------------------------------------------

    @property
    def batches(self) -> dict[str, JSONObject]:
        """Every batch by id, as its current object (a copy; reading does not poll)."""
        return self.engine.batches()

    @property
    def files(self) -> dict[str, JSONObject]:
        """Every unexpired file by id, as its file object (a copy)."""
        return self.engine.files()

    def file_content(self, file_id: str) -> bytes:
        """The bytes of a file (input, output or error file)."""
        return self.engine.file_content(file_id)

    def advance_all(self, steps: int = 1) -> int:
        """Move every unfinished batch ``steps`` steps; how many batches moved."""
        return self.engine.advance_all(steps)

    def finish_all(self) -> None:
        """Move every batch on until it is terminal."""
        self.engine.finish_all()

    def reset(self) -> None:
        """`clear` the records and drop every file and batch (settings stay)."""
        self.clear()
        self.engine.reset()

    # -- routes ------------------------------------------------------------------------------

    async def _resources(
        self, request: _Request, route: str, scope: Scope, receive: Receive, send: Send
    ) -> _Reply | None:
        """Files, batches and inference below the API root (``route`` starts with ``/``)."""
        engine = self.engine
        method = request.method
        parts = route.strip("/").split("/")
        head, size = parts[0], len(parts)
        if head == "files":
            if size == 1 and method == "POST":
                return self._upload(request)
            if size == 1 and method == "GET":
                return _json(engine.list_files(request.query))
            if size == 2 and method == "GET":
                return _json(engine.retrieve_file(parts[1]))
            if size == 2 and method == "DELETE":
                return _json(engine.delete_file(parts[1]))
            if size == 3 and parts[2] == "content" and method == "GET":
                return _Reply(
                    body=engine.file_content(parts[1]), content_type=b"application/octet-stream"
                )
        elif head == "batches":
            if size == 1 and method == "POST":
                body = request.json if isinstance(request.json, dict) else None
                return _json(engine.create_batch(body))
            if size == 1 and method == "GET":
                return _json(engine.list_batches(request.query))
            if size == 2 and method == "GET":
                self._throttle()
                return _json(engine.retrieve_batch(parts[1]))
            if size == 3 and parts[2] == "cancel" and method == "POST":
                return _json(engine.cancel_batch(parts[1]))
        elif (method == "POST" and route in _INFERENCE) or (method == "GET" and head == "models"):
            await self._infer(request, route, None, scope, receive, send)
            return None
        raise self._not_found(request)

    def _upload(self, request: _Request) -> _Reply:
        if request.form_error:
            raise ErrorReply(400, "The request body is not valid multipart/form-data.")
        return _json(self.engine.upload(request.form, request.files.get("file")))

    def _throttle(self) -> None:
        """Answer 429 while ``throttle_polls`` counts down (one event loop: no lock needed)."""
        if self.throttle_polls <= 0:
            return
        self.throttle_polls -= 1
        value = self.throttle_retry_after
        headers = ((b"retry-after", value.encode()),) if value is not None else ()
        raise ErrorReply(
            429,
            "Too many requests (fake).",
            "requests",
            code="rate_limit_exceeded",
            headers=headers,
        )

    async def _infer(
        self,
        request: _Request,
        route: str,
        deployment: str | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        body = request.raw
        if deployment is not None and isinstance(request.json, dict):
            body = orjson.dumps({**request.json, "model": deployment})
        await self._delegate(self.upstream, scope, receive, send, "/v1" + route, body)

    def _not_found(self, request: _Request) -> ErrorReply:
        return ErrorReply(404, f"Invalid URL ({request.method} {request.path})")


class FakeOpenAIBatchAPI(_OpenAIStyle):
    """OpenAI's Files + Batches API (and synchronous inference) as an ASGI app.

    Settings are plain attributes and may be changed while it serves:

    - ``api_key``: the accepted bearer key (None accepts any request, even without one).
    - ``polls_per_step``: retrieves of a batch per step (0: only `advance_all` moves batches).
    - ``fail_batches``: how many of the next created batches fail validation with
      ``token_limit_exceeded`` (counts down).
    - ``refuse_batches``: how many of the next batch creates answer 400 with code
      ``token_limit_exceeded`` (counts down; Azure's fail-fast quota check).
    - ``expire_batches``: batches created while it is set expire after ``in_progress``.
    - ``max_lines``: a per-batch line limit (``failed`` with ``too_many_tasks`` above it).
    - ``throttle_polls``: how many of the next batch retrieves answer 429 (counts down), with
      ``throttle_retry_after`` as their ``retry-after`` header when it is set.
    - ``embedding_dimensions``: vector size (stored on `upstream`).

    Records: `requests`, `count`, `clear`, `wait_for_requests`; state: `batches`, `files`,
    `file_content`; driving: `advance_all`, `finish_all`, `reset`. Synchronous inference is
    delegated to `upstream`, a `FakeUpstream` (pass one to share it), which records too.
    Ids: files ``file-`` + 22 base62, batches ``batch_`` + 32 hex, output lines
    ``batch_req_`` + 32 hex, request ids ``req_`` + 32 hex.
    """

    def __init__(
        self,
        *,
        api_key: str | None = "sk-fake",
        polls_per_step: int = 1,
        fail_batches: int = 0,
        refuse_batches: int = 0,
        expire_batches: bool = False,
        max_lines: int | None = 50_000,
        upstream: FakeUpstream | None = None,
        record_bodies: bool = True,
        record_limit: int | None = None,
    ) -> None:
        super().__init__(
            azure=False,
            api_key=api_key,
            polls_per_step=polls_per_step,
            fail_batches=fail_batches,
            refuse_batches=refuse_batches,
            expire_batches=expire_batches,
            max_lines=max_lines,
            file_pending_polls=0,
            deployments=(),
            upstream=upstream,
            record_bodies=record_bodies,
            record_limit=record_limit,
        )

    async def _serve(
        self, request: _Request, scope: Scope, receive: Receive, send: Send
    ) -> _Reply | None:
        if self.api_key is not None:
            auth = request.headers.get("authorization")
            if auth is None or not auth.startswith("Bearer "):
                message = "Missing bearer or basic authentication in header"
                raise ErrorReply(401, message)
            if auth[len("Bearer ") :] != self.api_key:
                key = auth[len("Bearer ") :]
                message = (
                    f"Incorrect API key provided: {key[:3]}...{key[-4:]}. You can find your "
                    "API key at https://platform.openai.com/account/api-keys."
                )
                raise ErrorReply(401, message, code="invalid_api_key")
        if not request.path.startswith("/v1/"):
            raise self._not_found(request)
        return await self._resources(request, request.path[3:], scope, receive, send)


class FakeAzureBatchAPI(_OpenAIStyle):
    """Azure OpenAI's files and batches (classic ``/openai/...?api-version=`` and v1
    ``/openai/v1/...``) and deployment inference, as an ASGI app.

    Settings as `FakeOpenAIBatchAPI`, plus ``deployments`` (the deployment names that input
    lines and inference may use; FakeUpstream's model names by default) and
    ``file_pending_polls`` (retrieves of an uploaded file that still answer ``pending``; the
    upload answer is ``pending`` too, later retrieves ``processed``). Azure does not expire
    batches (``expires_at`` is null); ``expire_batches`` exists to test the ``expired`` status
    the API still has. ``completion_window`` other than ``24h`` fails the batch.
    Ids: files ``file-`` + 32 hex, batches ``batch_`` + GUID, request ids GUIDs (in
    ``apim-request-id`` and ``x-request-id``), output lines ``batch_req_`` + 32 hex.
    """

    def __init__(
        self,
        *,
        api_key: str | None = "azure-fake-key",
        deployments: Iterable[str] = FAKE_MODELS,
        polls_per_step: int = 1,
        fail_batches: int = 0,
        refuse_batches: int = 0,
        expire_batches: bool = False,
        max_lines: int | None = 100_000,
        file_pending_polls: int = 1,
        upstream: FakeUpstream | None = None,
        record_bodies: bool = True,
        record_limit: int | None = None,
    ) -> None:
        super().__init__(
            azure=True,
            api_key=api_key,
            polls_per_step=polls_per_step,
            fail_batches=fail_batches,
            refuse_batches=refuse_batches,
            expire_batches=expire_batches,
            max_lines=max_lines,
            file_pending_polls=file_pending_polls,
            deployments=deployments,
            upstream=upstream,
            record_bodies=record_bodies,
            record_limit=record_limit,
        )

    @property
    def deployments(self) -> frozenset[str]:
        return self.engine.deployments

    @deployments.setter
    def deployments(self, names: Iterable[str]) -> None:
        self.engine.deployments = frozenset(names)

    def _new_request_id(self) -> str:
        return str(uuid.uuid4())

    def _id_headers(self, request_id: str) -> tuple[tuple[bytes, bytes], ...]:
        rid = request_id.encode()
        return ((b"apim-request-id", rid), (b"x-request-id", rid))

    async def _serve(
        self, request: _Request, scope: Scope, receive: Receive, send: Send
    ) -> _Reply | None:
        if self.api_key is not None:
            key = request.headers.get("api-key")
            auth = request.headers.get("authorization", "")
            if key is None and auth.startswith("Bearer "):
                key = auth[len("Bearer ") :]
            if key != self.api_key:
                raise azure_error(401, "401", _AZURE_401)
        path = request.path
        if path.startswith("/openai/v1/"):
            route = path[len("/openai/v1") :]
        elif path.startswith("/openai/"):
            route = path[len("/openai") :]
            if not request.query.get("api-version"):
                message = (
                    "The api-version query parameter (?api-version=) is required for all requests."
                )
                raise azure_error(400, "MissingApiVersionParameter", message)
        else:
            raise self._not_found(request)
        parts = route.strip("/").split("/")
        if parts[0] == "deployments" and len(parts) >= 3 and request.method == "POST":
            rest = "/" + "/".join(parts[2:])
            if rest not in _INFERENCE:
                raise self._not_found(request)
            await self._infer(request, rest, parts[1], scope, receive, send)
            return None
        if request.method == "POST" and route in _INFERENCE:  # v1 flavour: deployment in body
            model = request.json.get("model") if isinstance(request.json, dict) else None
            await self._infer(
                request, route, model if isinstance(model, str) else "", scope, receive, send
            )
            return None
        return await self._resources(request, route, scope, receive, send)

    def _upload(self, request: _Request) -> _Reply:
        if request.form_error:
            raise azure_error(
                400, "invalidPayload", "The request body is not valid multipart/form-data."
            )
        obj = self.engine.upload(request.form, request.files.get("file"))
        location = f"{request.base_url}/openai/files/{obj['id']}"
        version = request.query.get("api-version")
        if version:
            location += f"?api-version={version}"
        return _json(obj, 201, ((b"location", location.encode()),))

    async def _infer(
        self,
        request: _Request,
        route: str,
        deployment: str | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        if deployment not in self.engine.deployments:
            message = (
                "The API deployment for this resource does not exist. If you created the "
                "deployment within the last 5 minutes, please wait a moment and try again."
            )
            raise azure_error(404, "DeploymentNotFound", message)
        patch = route in ("/chat/completions", "/completions")
        request_id = self._new_request_id().encode()
        await super()._infer(
            request, route, deployment, scope, receive, _azure_send(send, patch, request_id)
        )

    def _not_found(self, request: _Request) -> ErrorReply:
        return azure_error(404, "404", "Resource not found")


class FakeAnthropicAPI(_FakeAPI):
    """Anthropic's Messages and Message Batches API as an ASGI app.

    Settings (plain attributes, changeable while it serves):

    - ``api_key``: the accepted ``x-api-key`` (or Bearer token); None accepts any.
    - ``polls_per_step``: retrieves of a batch per step (0: only `advance_all` moves batches).
    - ``refuse_batches``: how many of the next batch creates answer 400 (counts down).
    - ``expire_batches``: batches created while it is set end with their second half
      ``expired``.
    - ``max_requests``: requests per batch (100 000; more answers 400).
    - ``retry_after``: the ``retry-after`` header of ``fake-429-then-ok`` answers.

    Messages models by prefix: ``fake-400``/``fake-always-400`` → 400
    ``invalid_request_error``; ``fake-500`` → 500 ``api_error``; ``fake-500-then-ok``,
    ``fake-429-then-ok`` (429 ``rate_limit_error`` with ``retry-after``), ``fake-529`` and
    ``fake-overloaded-then-ok`` (529 ``overloaded_error``) fail the first time per prompt and
    then answer; anything else answers at once.
    Records: `requests`, `count`, `clear`, `wait_for_requests`; state: `batches`; driving:
    `advance_all`, `finish_all`, `reset`. Ids: ``msgbatch_01``/``msg_01``/``req_01`` + 22
    base62 (``request-id`` header and error bodies carry the ``req_`` id).
    """

    def __init__(
        self,
        *,
        api_key: str | None = "sk-ant-fake",
        polls_per_step: int = 1,
        refuse_batches: int = 0,
        expire_batches: bool = False,
        max_requests: int = 100_000,
        retry_after: str = "0",
        record_bodies: bool = True,
        record_limit: int | None = None,
    ) -> None:
        super().__init__(record_bodies=record_bodies, record_limit=record_limit)
        self.api_key = api_key
        self.polls_per_step = polls_per_step
        self.refuse_batches = refuse_batches
        self.expire_batches = expire_batches
        self.max_requests = max_requests
        self.retry_after = retry_after
        self.engine = AnthropicEngine(self)

    @property
    def batches(self) -> dict[str, JSONObject]:
        """Every batch by id, as its current object (a copy; reading does not poll)."""
        return self.engine.batches()

    def advance_all(self, steps: int = 1) -> int:
        """Move every unfinished batch ``steps`` steps; how many batches moved."""
        return self.engine.advance_all(steps)

    def finish_all(self) -> None:
        """Move every batch on until it has ended."""
        self.engine.finish_all()

    def clear(self) -> None:
        super().clear()
        self.engine.forget_failures()

    def reset(self) -> None:
        """`clear` the records and drop every batch (settings stay)."""
        self.clear()
        self.engine.reset()

    def _new_request_id(self) -> str:
        return new_id("req")

    def _id_headers(self, request_id: str) -> tuple[tuple[bytes, bytes], ...]:
        return ((b"request-id", request_id.encode()),)

    def _error_reply(self, failure: ErrorReply | AnthropicError, request_id: str) -> _Reply:
        if isinstance(failure, ErrorReply):  # not raised by this app; keep the envelope anyway
            failure = AnthropicError(failure.status, str(failure))
        return super()._error_reply(failure, request_id)

    async def _serve(
        self, request: _Request, scope: Scope, receive: Receive, send: Send
    ) -> _Reply | None:
        if self.api_key is not None:
            key = request.headers.get("x-api-key")
            auth = request.headers.get("authorization", "")
            if key is None and auth.startswith("Bearer "):
                key = auth[len("Bearer ") :]
            if key is None:
                raise AnthropicError(401, "x-api-key header is required")
            if key != self.api_key:
                raise AnthropicError(401, "invalid x-api-key")
        if "anthropic-version" not in request.headers:
            raise AnthropicError(400, "anthropic-version: header is required")
        if request.raw and request.json is None:
            raise AnthropicError(400, "The request body is not valid JSON.")
        engine, method, base = self.engine, request.method, request.base_url
        parts = request.path.strip("/").split("/")
        if parts[:2] != ["v1", "messages"]:
            raise self._not_found(request)
        parts, size = parts[2:], len(parts) - 2
        if size == 0 and method == "POST":
            message = engine.message(request.json)
            if isinstance(request.json, dict) and request.json.get("stream") is True:
                return _Reply(
                    content_type=b"text/event-stream; charset=utf-8", events=message_events(message)
                )
            return _json(message)
        if size == 0 or parts[0] != "batches":
            raise self._not_found(request)
        if size == 1 and method == "POST":
            return _json(engine.create_batch(request.json, base))
        if size == 1 and method == "GET":
            return _json(engine.list_batches(request.query, base))
        if size == 2 and method == "GET":
            return _json(engine.retrieve_batch(parts[1], base))
        if size == 2 and method == "DELETE":
            return _json(engine.delete_batch(parts[1]))
        if size == 3 and parts[2] == "cancel" and method == "POST":
            return _json(engine.cancel_batch(parts[1], base))
        if size == 3 and parts[2] == "results" and method == "GET":
            return _Reply(body=engine.results(parts[1]), content_type=b"application/binary")
        raise self._not_found(request)

    @staticmethod
    def _not_found(request: _Request) -> AnthropicError:
        return AnthropicError(404, f"Not found: {request.method} {request.path}")


# -- helpers ---------------------------------------------------------------------------------


def _parse_request(scope: Scope, raw: bytes) -> _Request:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    query_string: bytes = scope.get("query_string", b"")
    query = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
    host = headers.get("host")
    if host is None:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    request = _Request(
        method=scope["method"],
        path=scope["path"],
        query=query,
        headers=headers,
        raw=raw,
        json=None,
        base_url=f"{scope.get('scheme', 'http')}://{host}",
    )
    content_type = headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        try:
            request.form, request.files = _parse_multipart(raw, content_type)
        except (MultipartParseError, ValueError, UnicodeDecodeError):
            request.form_error = True
    elif raw:
        try:
            request.json = orjson.loads(raw)
        except orjson.JSONDecodeError:
            request.json = None
    return request


def _parse_multipart(
    body: bytes, content_type: str
) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """The text fields and the file parts (``(filename, content)``) of a multipart body."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ValueError("no multipart boundary")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    headers: dict[bytes, bytes] = {}
    name, value, data = bytearray(), bytearray(), bytearray()

    def on_part_begin() -> None:
        headers.clear()
        data.clear()

    def on_header_field(chunk: bytes, start: int, end: int) -> None:
        name.extend(chunk[start:end])

    def on_header_value(chunk: bytes, start: int, end: int) -> None:
        value.extend(chunk[start:end])

    def on_header_end() -> None:
        headers[bytes(name).lower()] = bytes(value)
        name.clear()
        value.clear()

    def on_part_data(chunk: bytes, start: int, end: int) -> None:
        data.extend(chunk[start:end])

    def on_part_end() -> None:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        field_name = disposition.get(b"name", b"").decode()
        filename = disposition.get(b"filename")
        if filename is not None:
            files[field_name] = (filename.decode(), bytes(data))
        else:
            fields[field_name] = data.decode()

    parser = MultipartParser(
        boundary,
        callbacks={
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    parser.write(body)
    parser.finalize()
    return fields, files


async def _send(send: Send, reply: _Reply, id_headers: tuple[tuple[bytes, bytes], ...]) -> None:
    headers = [(b"content-type", reply.content_type), *id_headers, *reply.headers]
    if reply.events is None:
        headers.append((b"content-length", str(len(reply.body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
        return
    headers.append((b"cache-control", b"no-cache"))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    for event in reply.events:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def _azure_send(send: Send, patch: bool, request_id: bytes) -> Send:
    """``send`` with Azure's request id headers, adding content filter results to JSON chat
    answers when ``patch``."""
    held: list[Message] = []
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
            headers += [(b"apim-request-id", request_id), (b"x-request-id", request_id)]
            message = {**message, "headers": headers}
            is_json = dict(headers).get(b"content-type") == b"application/json"
            if patch and message["status"] == 200 and is_json:
                held.append(message)
                return
            await send(message)
            return
        if not held or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(chunks)
        try:
            body = orjson.dumps(with_content_filters(orjson.loads(body)))
        except orjson.JSONDecodeError:
            pass  # fake-bad-json: pass the broken body on
        start = held[0]
        headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped
