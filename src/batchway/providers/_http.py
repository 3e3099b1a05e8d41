"""Shared HTTP plumbing for providers: one pooled aiohttp session each, error mapping.

aiohttp was chosen over httpx by measurement (see docs/benchmarks.md): it spends far
less CPU per upstream call, which is the gateway's own overhead.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import aiohttp
import orjson

from batchway.errors import (
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = [
    "CHAT_ENDPOINT",
    "MESSAGES_ENDPOINT",
    "HttpUpstream",
    "parse_answer",
    "parse_retry_after",
]

CHAT_ENDPOINT = "/v1/chat/completions"
MESSAGES_ENDPOINT = "/v1/messages"


def parse_answer(data: bytes) -> Any:
    """A 2xx body as JSON; one that is not JSON is an upstream failure (retryable)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamUnavailable("the upstream answered with a body that is not JSON") from exc


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _status_error(
    status: int, body: bytes, headers: Mapping[str, str], request_id: str | None
) -> UpstreamError:
    """The error for a non-2xx upstream answer."""
    kwargs = {"status": status, "body": body, "request_id": request_id}
    if status == 429:
        return UpstreamRateLimited(
            f"upstream rate limited (HTTP {status})",
            retry_after=parse_retry_after(headers),
            **kwargs,  # type: ignore[arg-type]
        )
    if status >= 500 or status in (408, 409):
        return UpstreamUnavailable(
            f"upstream failed (HTTP {status})",
            retry_after=parse_retry_after(headers),
            **kwargs,  # type: ignore[arg-type]
        )
    return UpstreamRejected(f"upstream rejected the request (HTTP {status})", **kwargs)  # type: ignore[arg-type]


@contextmanager
def _mapped_errors(url: str) -> Iterator[None]:
    """Connection failures and timeouts as the gateway's retryable upstream errors."""
    try:
        yield
    except UpstreamError:
        raise
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout(f"upstream did not answer in time ({url})") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(f"cannot reach upstream ({type(exc).__name__})") from exc


class HttpUpstream:
    """A keep-alive connection pool to one upstream base URL."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        max_connections: int,
        timeout: float,
        connect_timeout: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"content-type": "application/json", **headers}
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None

        # Transfers of whole files may take longer than one call's total timeout: bound the
        # connect and each read instead.
        self._transfer_timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=timeout
        )

    def _get_session(self) -> aiohttp.ClientSession:
        # created on first use: an aiohttp session belongs to the running event loop
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300),
                timeout=self._timeout,
                headers=self._headers,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def post(self, path: str, body: bytes) -> tuple[int, bytes, str | None]:
        """POST and read the whole answer; raises ``UpstreamError`` for anything but 2xx."""
        url = self.base_url + path
        with _mapped_errors(url):
            async with self._get_session().post(url, data=body) as response:
                data = await response.read()
                request_id = _request_id(response)
                if response.status >= 300:
                    raise _status_error(response.status, data, response.headers, request_id)
                return response.status, data, request_id

    async def stream(self, path: str, body: bytes) -> AsyncIterator[bytes]:
        """POST and yield the answer's bytes as they come. A non-2xx answer raises
        ``UpstreamError`` before anything is yielded, so a caller can still answer with an
        error status."""
        url = self.base_url + path
        with _mapped_errors(url):
            async with self._get_session().post(url, data=body) as response:
                if response.status >= 300:
                    data = await response.read()
                    raise _status_error(
                        response.status, data, response.headers, _request_id(response)
                    )
                async for chunk in response.content.iter_any():
                    yield chunk

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | aiohttp.Payload | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """Any method; the status, whole body and headers of a 2xx answer.

        ``json`` is sent serialized (orjson), ``data`` as is: a streamed `aiohttp.Payload`
        (e.g. a multipart writer; pass its ``content-type`` in ``headers``, which override the
        session's) gets the transfer timeout (connect and per-read) instead of the total one.
        Raises ``UpstreamError`` for anything but 2xx, and for connection errors/timeouts.
        """
        url = self.base_url + path
        body: bytes | aiohttp.Payload | None = orjson.dumps(json) if json is not None else data
        streamed = isinstance(body, aiohttp.Payload)
        options: dict[str, Any] = {"timeout": self._transfer_timeout} if streamed else {}
        with _mapped_errors(url):
            async with self._get_session().request(
                method, url, data=body, params=params, headers=headers, **options
            ) as response:
                payload = await response.read()
                if response.status >= 300:
                    raise _status_error(
                        response.status, payload, response.headers, _request_id(response)
                    )
                return response.status, payload, response.headers

    async def download(
        self, path: str, *, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[bytes]:
        """GET and yield the body's bytes as they come (never the whole body at once).

        ``path`` is appended to the base URL, unless it is an absolute ``http(s)://`` URL
        (Anthropic's ``results_url``), which is used as is with the same session headers.
        A non-2xx answer raises ``UpstreamError`` before anything is yielded. The timeout
        bounds the connect and each read, not the whole transfer.
        """
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        with _mapped_errors(url):
            async with self._get_session().get(
                url, params=params, timeout=self._transfer_timeout
            ) as response:
                if response.status >= 300:
                    data = await response.read()
                    raise _status_error(
                        response.status, data, response.headers, _request_id(response)
                    )
                async for chunk in response.content.iter_any():
                    yield chunk

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _request_id(response: aiohttp.ClientResponse) -> str | None:
    return response.headers.get("x-request-id") or response.headers.get("request-id")
