"""A fake OpenAI-compatible upstream: a plain, fast ASGI app for tests and benchmarks.

Endpoints (each with or without the ``/v1`` prefix):

- ``POST /chat/completions``: a ``chat.completion`` whose content is ``"echo: "`` plus the
  text of the last user message (string content, or its text parts concatenated), so every
  answer can be traced to its request. ``prompt_tokens`` counts whitespace-separated words over
  all messages (at least 1), ``completion_tokens`` the words of the answer. ``max_tokens`` /
  ``max_completion_tokens`` below the answer's word count truncate it (``finish_reason``
  ``"length"``). ``"stream": true`` answers Server-Sent Events: a role chunk, one chunk per
  word, a finish chunk, a usage chunk when ``stream_options.include_usage``, then ``[DONE]``.
- ``POST /completions``: a ``text_completion`` echoing each prompt.
- ``POST /embeddings``: deterministic unit vectors derived from a hash of each input
  (``dimensions`` long, 8 by default, at most 8192: more is a 400, as OpenAI's), as float
  lists or, for ``encoding_format: "base64"``, base64 of little-endian float32 (the OpenAI SDK
  asks for base64 by default).
- ``POST /responses``: a minimal completed Responses API object echoing the last user input.
- ``GET /models`` and ``GET /models/{id}``: the behaviour models below.
- Anything else answers 404 and a body that is not a JSON object 400, in the OpenAI error
  envelope. Every answer carries ``x-request-id: req_<hex>``.

The ``model`` of the body picks the behaviour, by prefix (``fake-ok-2`` behaves as ``fake-ok``):

- ``fake-ok``, any model not starting with ``fake-``, and unknown ``fake-*`` names: answer now.
- ``fake-slow``: answer after `FakeUpstream.slow_seconds`.
- ``fake-429-then-ok`` / ``fake-500-then-ok``: the first request for a given (model, prompt)
  answers 429 (with ``Retry-After``) / 500, later ones answer normally.
- ``fake-500``: always 500. ``fake-400`` and ``fake-always-400``: always 400.
- ``fake-timeout``: answer only after `FakeUpstream.timeout_seconds` (30 s by default).
- ``fake-bad-json``: 200 with a body that is not JSON.
- ``fake-401-echo``: always 401 ``invalid_api_key``, its message quoting the credential it
  received (``Authorization``, ``x-api-key`` or ``api-key``), as a careless upstream would.
- ``fake-403``: always 403 ``permission_error``.
- ``fake-400-echo``: always 400, its message quoting the received credentials (see below).
- ``fake-echo-credentials``: answers (a chat completion, streamed too) with ``"echo: "`` plus
  the credentials it received instead of the prompt: the ``authorization``, ``x-api-key``
  and ``api-key`` headers and every ``x-*`` header, as ``name: value`` pairs.
- ``fake-429-always-<case>``: always 429, with a ``retry-after`` chosen by ``<case>``:
  ``soon``, ``huge`` (``1e400``), ``inf``, ``nan``, ``negative`` (``-5``), ``day``
  (``86400``), ``date`` (an HTTP-date one hour ahead), ``past`` (an HTTP-date an hour ago);
  any other case sends no ``retry-after``.

Delayed answers wait without blocking other requests, and stop waiting when the client
disconnects (nothing is sent) or the server shuts down (503).

Every request is recorded as a `RecordedRequest`; `FakeUpstream.max_in_flight` keeps the
highest number of requests handled at once, to check a caller's concurrency limit.

Inference requests (``POST`` to the completions, embeddings and responses routes) also pass an
optional rate limit, `FakeUpstream.rate_limit` (at most N per rolling S seconds, set with
`FakeUpstream.limit_rate`). Those over it answer 429 with a fractional ``retry-after`` (the
seconds until a slot frees) before any behaviour runs, and are counted in
`FakeUpstream.rejected_429`. The others are arrivals: `FakeUpstream.arrivals` counts them and
`FakeUpstream.max_in_window` finds the busiest window, to check a caller's rate limiting.
"""

from __future__ import annotations

import asyncio
import bisect
import email.utils
import enum
import hashlib
import itertools
import math
import os
import threading
import time
from array import array
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import orjson

from batchway.server import Receive, Scope, Send, ServerHandle, serve_forever
from batchway.testing._fake_openai import (
    BUILDERS,
    Call,
    ErrorReply,
    JSONObject,
    chat_events,
    model_object,
)

__all__ = ["FAKE_MODELS", "FakeUpstream", "RecordedRequest", "main"]

FAKE_MODELS: Final[tuple[str, ...]] = (
    "fake-ok",
    "fake-slow",
    "fake-429-then-ok",
    "fake-500-then-ok",
    "fake-500",
    "fake-400",
    "fake-always-400",
    "fake-timeout",
    "fake-bad-json",
    "fake-401-echo",
    "fake-403",
    "fake-400-echo",
    "fake-echo-credentials",
    "fake-429-always",
)
"""The behaviour model names, as listed by ``GET /v1/models``."""

_BAD_JSON_BODY: Final = b'{"id": "chatcmpl-broken", "choices": [ this is not json'


class _Behaviour(enum.Enum):
    OK = enum.auto()  # answer at once
    SLOW = enum.auto()  # answer after slow_seconds
    RATE_LIMIT_ONCE = enum.auto()  # 429 on the first request per prompt
    ERROR_ONCE = enum.auto()  # 500 on the first request per prompt
    ERROR = enum.auto()  # always 500
    REJECT = enum.auto()  # always 400
    TIMEOUT = enum.auto()  # answer after timeout_seconds
    BAD_JSON = enum.auto()  # 200 with a body that is not JSON
    AUTH_ECHO = enum.auto()  # 401 quoting the credential received
    FORBIDDEN = enum.auto()  # always 403
    REJECT_ECHO = enum.auto()  # 400 quoting the credentials received
    ECHO_CREDENTIALS = enum.auto()  # answer with the credentials received
    RATE_LIMIT = enum.auto()  # always 429, retry-after picked by the model name


# Longest prefixes first: "fake-500-then-ok" must win over "fake-500".
_PREFIXES: Final = (
    ("fake-echo-credentials", _Behaviour.ECHO_CREDENTIALS),
    ("fake-429-always", _Behaviour.RATE_LIMIT),
    ("fake-429-then-ok", _Behaviour.RATE_LIMIT_ONCE),
    ("fake-401-echo", _Behaviour.AUTH_ECHO),
    ("fake-400-echo", _Behaviour.REJECT_ECHO),
    ("fake-403", _Behaviour.FORBIDDEN),
    ("fake-500-then-ok", _Behaviour.ERROR_ONCE),
    ("fake-always-400", _Behaviour.REJECT),
    ("fake-bad-json", _Behaviour.BAD_JSON),
    ("fake-timeout", _Behaviour.TIMEOUT),
    ("fake-slow", _Behaviour.SLOW),
    ("fake-500", _Behaviour.ERROR),
    ("fake-400", _Behaviour.REJECT),
)


class _Wake(enum.Enum):
    ELAPSED = enum.auto()  # the delay is over: answer
    DISCONNECTED = enum.auto()  # the client went away: send nothing
    STOPPING = enum.auto()  # the server shuts down: answer 503


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedRequest:
    """One request as the fake upstream received it.

    ``headers`` has lower-case names; ``json`` is the parsed body (None when it is not JSON or
    recording of bodies is off) and ``model`` its ``model`` field. ``time`` is
    `time.monotonic()` at arrival.
    """

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    body: bytes
    model: str | None
    request_id: str
    time: float


class FakeUpstream:
    """The fake upstream: its settings, its records, and the ASGI app itself.

    Settings are plain attributes and may be changed while it serves. With ``record_limit``
    only the latest that many requests are kept; ``record_bodies=False`` skips the bodies.
    """

    def __init__(
        self,
        *,
        slow_seconds: float = 0.2,
        timeout_seconds: float = 30.0,
        retry_after: str = "0",
        embedding_dimensions: int = 8,
        record_bodies: bool = True,
        record_limit: int | None = None,
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        self.slow_seconds = slow_seconds
        self.timeout_seconds = timeout_seconds
        self.retry_after = retry_after
        self.embedding_dimensions = embedding_dimensions
        self.record_bodies = record_bodies
        self._cond = threading.Condition(threading.Lock())
        self._records: deque[RecordedRequest] = deque(maxlen=record_limit)
        self._received = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._failed_once: set[bytes] = set()
        self._waiters: set[asyncio.Future[_Wake]] = set()
        self._behaviours: dict[str, _Behaviour] = {}
        self._id_prefix = os.urandom(4).hex()
        self._seq = itertools.count(1)
        # Arrival times of admitted inference requests, in order (one event loop appends).
        self._arrivals = array("d")
        self._rejected_429 = 0
        self._rate_limit: tuple[int, float] | None = None
        self.rate_limit = rate_limit

    # -- records -----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the recorded requests, oldest first."""
        with self._cond:
            return list(self._records)

    def count(self, model: str | None = None, path: str | None = None) -> int:
        """How many recorded requests match ``model`` and ``path`` (``/v1`` optional)."""
        route = _route(path) if path is not None else None
        return sum(
            1
            for r in self.requests
            if (model is None or r.model == model) and (route is None or _route(r.path) == route)
        )

    @property
    def in_flight(self) -> int:
        """How many requests are being handled right now."""
        with self._cond:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The highest number of requests handled at once since creation or `clear`."""
        with self._cond:
            return self._max_in_flight

    @property
    def arrivals(self) -> int:
        """How many inference requests were admitted (not rejected by the rate limit)."""
        with self._cond:
            return len(self._arrivals)

    @property
    def rejected_429(self) -> int:
        """How many inference requests the rate limit answered with 429."""
        with self._cond:
            return self._rejected_429

    def max_in_window(self, seconds: float) -> int:
        """The most admitted inference requests in any window of ``seconds`` (half-open, as
        the rate limit counts them: two arrivals exactly ``seconds`` apart never share one)."""
        if seconds <= 0:
            raise ValueError(f"the window must be positive, not {seconds}")
        with self._cond:
            times = sorted(self._arrivals)
        best = start = 0
        for end, last in enumerate(times):
            while last - times[start] >= seconds:
                start += 1
            best = max(best, end - start + 1)
        return best

    @property
    def rate_limit(self) -> tuple[int, float] | None:
        """At most ``requests`` inference requests per rolling ``seconds``, or None for no
        limit. Changing it keeps the arrivals, so a new limit applies to past traffic too."""
        return self._rate_limit

    @rate_limit.setter
    def rate_limit(self, limit: tuple[int, float] | None) -> None:
        if limit is not None:
            requests, seconds = limit
            if requests < 1 or not seconds > 0:
                raise ValueError(f"a rate limit needs requests >= 1 and seconds > 0: {limit}")
        with self._cond:
            self._rate_limit = limit

    def limit_rate(self, requests: int | None, seconds: float = 60.0) -> None:
        """Admit at most ``requests`` inference requests per rolling ``seconds``; None lifts
        the limit."""
        self.rate_limit = None if requests is None else (requests, seconds)

    def clear(self) -> None:
        """Forget the records, arrivals, 429 count, ``max_in_flight`` and which prompts
        already failed once. The rate limit stays, starting from an empty window."""
        with self._cond:
            self._records.clear()
            self._received = 0
            self._max_in_flight = self._in_flight
            self._failed_once.clear()
            del self._arrivals[:]
            self._rejected_429 = 0

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        """Block until ``n`` requests arrived since creation or `clear`; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._received >= n, timeout)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until no request is being handled; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._in_flight == 0, timeout)

    def on_server_stopping(self) -> None:
        """End every delayed answer now with a 503 (thread-safe; the server runners call it)."""
        with self._cond:
            waiters = list(self._waiters)
        for waiter in waiters:
            waiter.get_loop().call_soon_threadsafe(_settle, waiter, _Wake.STOPPING)

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
        seq = f"{self._id_prefix}{next(self._seq):012x}"
        request_id = f"req_{seq}"
        parsed: Any = None
        if raw:
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = None
        body = parsed if isinstance(parsed, dict) else None
        model = body.get("model") if body is not None else None
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        inference = method == "POST" and _route(path) in BUILDERS
        with self._cond:
            # The clock is read under the lock so that arrivals are appended in order.
            now = time.monotonic()
            record = RecordedRequest(
                method=method,
                path=path,
                headers=headers,
                json=parsed if self.record_bodies else None,
                body=raw if self.record_bodies else b"",
                model=model if isinstance(model, str) else None,
                request_id=request_id,
                time=now,
            )
            self._records.append(record)
            self._received += 1
            self._in_flight += 1
            if self._in_flight > self._max_in_flight:
                self._max_in_flight = self._in_flight
            wait = self._admit(now) if inference else None
            self._cond.notify_all()
        rid = request_id.encode()
        try:
            if wait is not None:
                raise _over_the_limit(wait)
            answer = await self._answer(
                record.method, record.path, body, record.model, seq, receive, headers
            )
            if isinstance(answer, dict):
                await _send_json(send, 200, orjson.dumps(answer), rid)
            elif isinstance(answer, list):
                await _send_events(send, answer, rid)
            elif answer is not None:
                await _send_json(send, 200, answer, rid)
        except ErrorReply as failure:
            await _send_json(send, failure.status, failure.body, rid, failure.headers)
        finally:
            with self._cond:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._cond.notify_all()

    def _admit(self, now: float) -> float | None:
        """Under the lock: record an arrival at ``now`` and return None, or, over the rate
        limit, count a rejection and return the seconds until the window has room."""
        limit = self._rate_limit
        arrivals = self._arrivals
        if limit is not None:
            requests, seconds = limit
            in_window = len(arrivals) - bisect.bisect_right(arrivals, now - seconds)
            if in_window >= requests:
                self._rejected_429 += 1
                # The window has room once the requests-th latest arrival has left it.
                return arrivals[-requests] + seconds - now
        arrivals.append(now)
        return None

    async def _answer(
        self,
        method: str,
        path: str,
        body: JSONObject | None,
        model: str | None,
        seq: str,
        receive: Receive,
        headers: dict[str, str],
    ) -> JSONObject | list[bytes] | bytes | None:
        """The answer: a JSON object, SSE events, raw bytes, or None to send nothing.

        Raises ErrorReply for every error answer.
        """
        route = _route(path)
        if method == "GET" and route == "/models":
            return {"object": "list", "data": [model_object(name) for name in FAKE_MODELS]}
        if method == "GET" and route.startswith("/models/"):
            return model_object(route[len("/models/") :])
        builder = BUILDERS.get(route) if method == "POST" else None
        if builder is None:
            raise ErrorReply(404, f"Invalid URL ({method} {path})")
        if body is None:
            raise ErrorReply(400, "We could not parse the JSON body of your request.")
        if model is None:
            message = "You must provide a model parameter."
            raise ErrorReply(400, message, param="model", code="missing_required_parameter")
        behaviour = self._behaviours.get(model)
        if behaviour is None:
            behaviour = next((b for p, b in _PREFIXES if model.startswith(p)), _Behaviour.OK)
            self._behaviours[model] = behaviour
        if behaviour is _Behaviour.ECHO_CREDENTIALS:
            body = {**body, "messages": [{"role": "user", "content": _credentials(headers)}]}
        elif behaviour is not _Behaviour.OK:
            if behaviour is _Behaviour.BAD_JSON:
                return _BAD_JSON_BODY
            _refuse(behaviour, model, headers)
            if not await self._misbehave(behaviour, body, model, receive):
                return None
        payload = builder(Call(body, model, seq, self.embedding_dimensions))
        if route == "/chat/completions" and body.get("stream") is True:
            options = body.get("stream_options")
            return chat_events(
                payload, isinstance(options, dict) and options.get("include_usage") is True
            )
        return payload

    async def _misbehave(
        self, behaviour: _Behaviour, body: JSONObject, model: str, receive: Receive
    ) -> bool:
        """Play out a non-ok behaviour: True to answer normally, False to send nothing."""
        if behaviour is _Behaviour.SLOW or behaviour is _Behaviour.TIMEOUT:
            delay = self.slow_seconds if behaviour is _Behaviour.SLOW else self.timeout_seconds
            wake = await self._wait(delay, receive)
            if wake is _Wake.STOPPING:
                raise ErrorReply(503, "The fake upstream is shutting down.", "server_error")
            return wake is _Wake.ELAPSED
        if behaviour is _Behaviour.REJECT:
            raise ErrorReply(
                400, f"Model {model} rejects every request (fake upstream).", param="model"
            )
        if behaviour is _Behaviour.RATE_LIMIT_ONCE and self._first_time(model, body):
            message = f"Rate limit reached for {model} (fake upstream). Please retry."
            retry_after = ((b"retry-after", self.retry_after.encode()),)
            raise ErrorReply(
                429, message, "requests", code="rate_limit_exceeded", headers=retry_after
            )
        if behaviour is _Behaviour.ERROR or (
            behaviour is _Behaviour.ERROR_ONCE and self._first_time(model, body)
        ):
            message = "The server had an error while processing your request (fake upstream)."
            raise ErrorReply(500, message, "server_error")
        return True

    def _first_time(self, model: str, body: JSONObject) -> bool:
        """True the first time this (model, prompt) is seen; later calls return False."""
        content = body.get("messages", body.get("input", body.get("prompt")))
        dumped = orjson.dumps([model, content], option=orjson.OPT_SORT_KEYS)
        key = hashlib.blake2b(dumped, digest_size=16).digest()
        with self._cond:
            if key in self._failed_once:
                return False
            self._failed_once.add(key)
            return True

    async def _wait(self, seconds: float, receive: Receive) -> _Wake:
        """Sleep ``seconds`` unless the client disconnects or the server stops first."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Wake] = loop.create_future()
        timer = loop.call_later(max(seconds, 0.0), _settle, waiter, _Wake.ELAPSED)
        watcher = loop.create_task(_watch_disconnect(receive, waiter))
        with self._cond:
            self._waiters.add(waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            watcher.cancel()
            with self._cond:
                self._waiters.discard(waiter)
            # Let the watcher finish so no task is left pending when the loop closes.
            await asyncio.wait((watcher,))


# -- endpoints ---------------------------------------------------------------------------------


# -- helpers -----------------------------------------------------------------------------------


def _route(path: str) -> str:
    return path[3:] if path.startswith("/v1/") else path


def _credentials(headers: dict[str, str]) -> str:
    """The credentials a request came with, as ``name: value`` pairs."""
    return "; ".join(
        f"{name}: {value}"
        for name, value in sorted(headers.items())
        if name in ("authorization", "x-api-key", "api-key") or name.startswith("x-")
    )


def _retry_after_case(case: str) -> bytes | None:
    """The ``retry-after`` of a ``fake-429-always-<case>`` answer."""
    if case in ("date", "past"):
        ahead = 3600 if case == "date" else -3600
        return email.utils.formatdate(time.time() + ahead, usegmt=True).encode()
    values = {"soon": b"soon", "huge": b"1e400", "inf": b"inf", "nan": b"nan"}
    values |= {"negative": b"-5", "day": b"86400"}
    return values.get(case)


def _refuse(behaviour: _Behaviour, model: str, headers: dict[str, str]) -> None:
    """Raise the error answer of the behaviours that always refuse (others return)."""
    if behaviour is _Behaviour.AUTH_ECHO:
        received = next(
            (headers[n] for n in ("authorization", "x-api-key", "api-key") if n in headers), ""
        )
        message = f"Incorrect API key provided: {received} (fake upstream)."
        raise ErrorReply(401, message, code="invalid_api_key")
    if behaviour is _Behaviour.FORBIDDEN:
        message = f"This key may not use {model} (fake upstream)."
        raise ErrorReply(403, message, "permission_error")
    if behaviour is _Behaviour.REJECT_ECHO:
        message = f"Model {model} rejects requests sent with {_credentials(headers)}."
        raise ErrorReply(400, message, param="model")
    if behaviour is _Behaviour.RATE_LIMIT:
        value = _retry_after_case(model.removeprefix("fake-429-always").lstrip("-"))
        extra = ((b"retry-after", value),) if value is not None else ()
        message = f"Rate limit reached for {model} (fake upstream)."
        raise ErrorReply(429, message, "requests", code="rate_limit_exceeded", headers=extra)


def _over_the_limit(wait: float) -> ErrorReply:
    # Round up to the millisecond so that a client waiting exactly that long gets in.
    retry_after = f"{math.ceil(wait * 1000) / 1000:.3f}".rstrip("0").rstrip(".")
    message = (
        f"Rate limit reached for requests (fake upstream). Please try again in {retry_after}s."
    )
    return ErrorReply(
        429,
        message,
        "requests",
        code="rate_limit_exceeded",
        headers=((b"retry-after", retry_after.encode()),),
    )


def _settle(waiter: asyncio.Future[_Wake], wake: _Wake) -> None:
    if not waiter.done():
        waiter.set_result(wake)


async def _watch_disconnect(receive: Receive, waiter: asyncio.Future[_Wake]) -> None:
    # The body is already read, so the next message can only be the disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass
    _settle(waiter, _Wake.DISCONNECTED)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send_json(
    send: Send,
    status: int,
    body: bytes,
    request_id: bytes,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_events(send: Send, events: list[bytes], request_id: bytes) -> None:
    headers = [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
        (b"x-request-id", request_id),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for event in events[:-1]:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": events[-1]})


def main(host: str = "127.0.0.1", port: int = 9100, *, slow_seconds: float = 0.2) -> None:
    """Serve a `FakeUpstream` in the foreground until interrupted (benchmarks, the CLI);
    ``fake-slow`` answers after ``slow_seconds``."""

    def announce(handle: ServerHandle) -> None:
        print(f"fake upstream listening on {handle.url}", flush=True)

    # Nobody can read the records of a separate process: keep them small.
    upstream = FakeUpstream(record_bodies=False, record_limit=1000, slow_seconds=slow_seconds)
    serve_forever(upstream, host=host, port=port, shutdown_timeout=1, on_ready=announce)


if __name__ == "__main__":
    main()
