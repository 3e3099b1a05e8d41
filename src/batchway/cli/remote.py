"""A remote gateway, as the client commands (``batchway batches``) reach it over HTTP.

The OpenAI Files and Batches routes go through the official ``openai`` SDK; the Message
Batches routes (``/v1/messages/batches``, every ``msgbatch_…`` id) and inline batches
(``POST /v1/batches`` with ``requests``) through ``httpx``. Every failure leaves this module
as a ``ClientError``: ``GatewayUnreachable`` when no answer came, ``GatewayRefused`` with the
gateway's status and message when it answered an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, NoReturn
from urllib.parse import quote

import httpx
import openai
import orjson
from openai.types import Batch

from batchway.cli.batch_view import BatchView, from_message_batch, from_openai_batch
from batchway.errors import ClientError, GatewayRefused, GatewayUnreachable, UsageError

__all__ = ["DEFAULT_URL", "MESSAGE_BATCH_PREFIX", "Remote", "gateway_root"]

DEFAULT_URL = "http://127.0.0.1:8080"
MESSAGE_BATCH_PREFIX = "msgbatch_"  # ids answered by /v1/messages/batches
_TIMEOUT_SECONDS = 60.0
_CHUNK = 1 << 16
_PAGE = 100  # the most GET /v1/batches gives at once
_ID = re.compile(r"[A-Za-z0-9_.\-]{1,200}")
_KEY = re.compile(r"[\x21-\x7e]+")  # what fits in a header: printable ASCII, no spaces


def gateway_root(url: str) -> str:
    """The gateway's root URL: ``url`` without a trailing ``/`` or ``/v1``."""
    try:
        parsed = httpx.URL(url.strip())
    except httpx.InvalidURL as exc:
        raise UsageError(f"not a URL: {url!r} (give --url http://host:port)") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"not an http(s) URL: {url!r} (give --url http://host:port)")
    root = str(parsed.copy_with(query=None, fragment=None)).rstrip("/")
    return root.removesuffix("/v1")


def _checked_id(batch_id: str) -> str:
    if not _ID.fullmatch(batch_id):
        raise UsageError(f"not a batch id: {batch_id!r}")
    return batch_id


def _message(body: object, text: str) -> str:
    """What an error answer says, from either envelope (OpenAI's or Anthropic's)."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    text = " ".join(text.split())
    return text[:200] + ("…" if len(text) > 200 else "") if text else "no message"


def _refused(status: int, body: object, text: str) -> GatewayRefused:
    message = f"{_message(body, text)} (HTTP {status})"
    if status == 401:
        message += "; check --api-key or BATCHWAY_API_KEY"
    return GatewayRefused(message, status=status)


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return str(cause) or type(cause).__name__


class Remote:
    """One gateway at ``url``, called with the gateway key ``api_key``."""

    def __init__(self, url: str, api_key: str) -> None:
        self.root = gateway_root(url)
        if not _KEY.fullmatch(api_key):
            raise UsageError("the API key must be printable ASCII without spaces")
        self._openai = openai.OpenAI(
            base_url=f"{self.root}/v1",
            api_key=api_key,
            max_retries=0,  # polling retries on its own, and a create must not run twice
            timeout=_TIMEOUT_SECONDS,
        )
        self._http = httpx.Client(
            base_url=self.root,
            headers={"authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(_TIMEOUT_SECONDS, connect=10.0),
        )

    def close(self) -> None:
        self._openai.close()
        self._http.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- errors: the one place where the SDK's and httpx's exceptions are translated --------

    def _unreachable(self, exc: BaseException) -> GatewayUnreachable:
        if isinstance(exc, httpx.TimeoutException | openai.APITimeoutError):
            reason = f"no answer within {_TIMEOUT_SECONDS:.0f} s"
        else:
            reason = _reason(exc)
        return GatewayUnreachable(
            f"cannot reach the gateway at {self.root}: {reason}; check --url or BATCHWAY_URL"
        )

    @contextmanager
    def _calls(self) -> Iterator[None]:
        try:
            yield
        except openai.APIStatusError as exc:
            raise _refused(exc.status_code, exc.body, exc.response.text) from exc
        except openai.APIConnectionError as exc:  # timeouts too
            raise self._unreachable(exc) from exc
        except openai.OpenAIError as exc:
            raise ClientError(f"the gateway's answer could not be read: {exc}") from exc
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        except (httpx.InvalidURL, ValueError) as exc:  # ValueError: an answer that is not JSON
            raise ClientError(f"the gateway's answer could not be read: {exc}") from exc

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.is_error:
            text = response.read().decode("utf-8", "replace")
            try:
                body: object = orjson.loads(text)
            except orjson.JSONDecodeError:
                body = None
            raise _refused(response.status_code, body, text)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        with self._calls():
            response = self._http.request(method, path, **kwargs)
            self._check(response)
            return response.json()

    # -- OpenAI files and batches -------------------------------------------------------------

    def upload(self, path: Path) -> tuple[str, int]:
        """Upload a batch input file; returns its id and size."""
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        with handle, self._calls():
            uploaded = self._openai.files.create(file=(path.name, handle), purpose="batch")
        return uploaded.id, uploaded.bytes

    def delete_file(self, file_id: str) -> None:
        """Delete a file, if the gateway lets us (cleaning up after a refused batch)."""
        with suppress(ClientError), self._calls():
            self._openai.files.delete(file_id)

    def create_batch(
        self, file_id: str, *, endpoint: str, window: str, metadata: dict[str, str]
    ) -> BatchView:
        """Start a batch on an uploaded file."""
        extra: dict[str, Any] = {"metadata": metadata} if metadata else {}
        with self._calls():
            batch = self._openai.batches.create(
                input_file_id=file_id,
                endpoint=endpoint,  # type: ignore[arg-type]  # the gateway says which it takes
                completion_window=window,  # type: ignore[arg-type]
                **extra,
            )
        return from_openai_batch(batch)

    def list_batches(self, *, limit: int, every: bool) -> tuple[list[BatchView], bool]:
        """The newest ``limit`` batches (or all of them), and whether there are more."""
        with self._calls():
            page = self._openai.batches.list(limit=_PAGE if every else min(limit, _PAGE))
            views = [from_openai_batch(batch) for batch in page.data]
            while (every or len(views) < limit) and page.has_next_page():
                page = page.get_next_page()
                views.extend(from_openai_batch(batch) for batch in page.data)
            more = page.has_next_page()
        if every or len(views) <= limit:
            return views, more
        return views[:limit], True

    # -- either dialect, by id ----------------------------------------------------------------

    def _message_path(self, batch_id: str, suffix: str = "") -> str:
        return f"/v1/messages/batches/{quote(batch_id, safe='')}{suffix}"

    def get(self, batch_id: str) -> BatchView:
        """The batch, in the dialect its id belongs to."""
        if _checked_id(batch_id).startswith(MESSAGE_BATCH_PREFIX):
            return from_message_batch(self._json("GET", self._message_path(batch_id)))
        with self._calls():
            return from_openai_batch(self._openai.batches.retrieve(batch_id))

    def poll(self, batch_id: str) -> BatchView:
        """The batch while it runs, with live counts where the gateway has them.

        Anthropic's shape counts every request as processing until the end, but the OpenAI
        view of a message batch (``GET /v1/batches/{id}``) counts as lines finish. An inline
        batch answers there in the message batch shape while it runs, and with its results
        once ended (not read here: the stream is closed after the headers).
        """
        if not _checked_id(batch_id).startswith(MESSAGE_BATCH_PREFIX):
            return self.get(batch_id)
        with (
            self._calls(),
            self._http.stream("GET", f"/v1/batches/{quote(batch_id, safe='')}") as response,
        ):
            self._check(response)
            data: Any = None
            if response.headers.get("content-type", "").startswith("application/json"):
                data = orjson.loads(response.read())
        if isinstance(data, dict) and data.get("object") == "batch":
            with self._calls():
                view = from_openai_batch(Batch.model_validate(data))
            if not view.ended:
                return view
        elif isinstance(data, dict) and data.get("type") == "message_batch":
            view = from_message_batch(data)
            if not view.ended:
                return view
        return self.get(batch_id)

    def cancel(self, batch_id: str) -> BatchView:
        """Ask the gateway to cancel the batch; returns it as it is then (cancelling)."""
        if _checked_id(batch_id).startswith(MESSAGE_BATCH_PREFIX):
            path = self._message_path(batch_id, "/cancel")
            return from_message_batch(self._json("POST", path))
        with self._calls():
            return from_openai_batch(self._openai.batches.cancel(batch_id))

    def create_inline(self, body: Iterable[bytes]) -> BatchView:
        """Start an inline batch: ``body`` is the JSON ``{"requests": [...]}``, streamed."""
        return from_message_batch(
            self._json(
                "POST",
                "/v1/batches",
                content=body,
                headers={"content-type": "application/json"},
            )
        )

    # -- results ------------------------------------------------------------------------------

    def download(self, view: BatchView, sink: IO[bytes], *, errors: bool = False) -> int:
        """Write an ended batch's results to ``sink``; returns how many lines.

        An OpenAI batch has an output file and an error file (``errors``); either may be
        absent (nothing to write). A message batch has one results file: ``errors`` keeps
        the requests that did not succeed.
        """
        if view.kind == "message":
            return self._download_results(view, sink, errors=errors)
        file_id = view.error_file_id if errors else view.output_file_id
        if file_id is None:
            return 0
        lines = 0
        with (
            self._calls(),
            self._openai.files.with_streaming_response.content(file_id) as response,
        ):
            for chunk in response.iter_bytes(_CHUNK):
                sink.write(chunk)
                lines += chunk.count(b"\n")
        return lines

    def _download_results(self, view: BatchView, sink: IO[bytes], *, errors: bool) -> int:
        if view.results_url is None:
            _not_ended(view)
        lines = 0
        with self._calls(), self._http.stream("GET", view.results_url) as response:
            self._check(response)
            for line in _lines(response.iter_bytes(_CHUNK)):
                if errors and _succeeded(line):
                    continue
                sink.write(line)
                lines += 1
        return lines


def _not_ended(view: BatchView) -> NoReturn:
    raise UsageError(f"batch {view.id} has no results yet ({view.status})")


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Lines split on ``\\n`` only (a JSON string may hold U+2028), newline kept."""
    pending: list[bytes] = []
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            pending.append(chunk[start : end + 1])
            yield b"".join(pending)
            pending = []
            start = end + 1
        if start < len(chunk):
            pending.append(chunk[start:])
    if pending:
        yield b"".join(pending) + b"\n"


def _succeeded(line: bytes) -> bool:
    try:
        result = orjson.loads(line)["result"]["type"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return False  # not a line we can read: keep it with the errors
    return bool(result == "succeeded")
