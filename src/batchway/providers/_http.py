"""Shared HTTP plumbing for providers: one pooled aiohttp session each, error mapping.

Everything a provider answers enters here, so this is where it is tamed, once: every body
has the provider's secrets masked (`SecretMask`), every failure becomes an ``UpstreamError``
that names the provider and never its URL, a 401/403 becomes `UpstreamAuthError`, and a
``Retry-After`` is read strictly and capped (`batchway.core.retry.retry_after_of`).

aiohttp was chosen over httpx by measurement (see docs/benchmarks.md): it spends far
less CPU per upstream call, which is the gateway's own overhead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from batchway.config import ProviderConfig
from batchway.core.retry import retry_after_of
from batchway.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from batchway.providers._masking import SecretMask

__all__ = ["HttpUpstream", "parse_answer"]


def parse_answer(data: bytes) -> Any:
    """A 2xx body as JSON; one that is not JSON is an upstream failure (retryable)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamUnavailable("the upstream answered with a body that is not JSON") from exc


def _status_error(
    provider: str,
    status: int,
    body: bytes,
    request_id: str | None,
    retry_after: float | None,
) -> UpstreamError:
    """The error for a non-2xx upstream answer (``body`` already masked)."""
    if status in (401, 403):
        return UpstreamAuthError(provider, status=status, body=body, request_id=request_id)
    kwargs: dict[str, Any] = {"status": status, "body": body, "request_id": request_id}
    if status == 429:
        return UpstreamRateLimited(
            f"provider {provider!r} is rate limiting the gateway (HTTP {status})",
            retry_after=retry_after,
            **kwargs,
        )
    if status >= 500 or status in (408, 409):
        return UpstreamUnavailable(
            f"provider {provider!r} failed (HTTP {status})", retry_after=retry_after, **kwargs
        )
    return UpstreamRejected(f"provider {provider!r} rejected the request (HTTP {status})", **kwargs)


@contextmanager
def _mapped_errors(provider: str) -> Iterator[None]:
    """Connection failures and timeouts as the gateway's retryable upstream errors. Their
    messages name the provider, never its URL (which may carry credentials); the aiohttp
    exception chained to them keeps the host for logs."""
    try:
        yield
    except UpstreamError:
        raise
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout(f"provider {provider!r} did not answer in time") from exc
    except aiohttp.ClientConnectorDNSError as exc:
        raise UpstreamUnavailable(f"cannot resolve the host of provider {provider!r}") from exc
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamUnavailable(f"cannot connect to provider {provider!r}") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(
            f"cannot reach provider {provider!r} ({type(exc).__name__})"
        ) from exc


class HttpUpstream:
    """A keep-alive connection pool to one upstream base URL, for the provider ``provider``.

    ``mask`` masks the provider's secrets in every body (and request id) it answers;
    ``retry_after_max`` caps the wait taken from its ``Retry-After``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        provider: str,
        headers: Mapping[str, str],
        max_connections: int,
        timeout: float,
        connect_timeout: float,
        mask: SecretMask | None = None,
        retry_after_max: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.provider = provider
        self._headers = {"content-type": "application/json", **headers}
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._mask = mask if mask else None  # None: nothing to mask, no check per body
        self._retry_after_max = retry_after_max
        origin = urlsplit(self.base_url)
        self._origin = (origin.scheme, origin.netloc)

        # Transfers of whole files may take longer than one call's total timeout: bound the
        # connect and each read instead.
        self._transfer_timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=timeout
        )

    @classmethod
    def for_provider(
        cls, name: str, config: ProviderConfig, base_url: str, headers: Mapping[str, str]
    ) -> HttpUpstream:
        """The pool of one configured provider: its limits, timeouts, secrets and caps."""
        return cls(
            base_url,
            provider=name,
            headers=headers,
            max_connections=config.max_concurrency,
            timeout=config.timeout_seconds,
            connect_timeout=config.connect_timeout_seconds,
            mask=SecretMask.of(config),
            retry_after_max=config.retry_after_max_seconds,
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

    def _body(self, data: bytes) -> bytes:
        return self._mask.apply(data) if self._mask is not None else data

    def _request_id(self, response: aiohttp.ClientResponse) -> str | None:
        request_id = response.headers.get("x-request-id") or response.headers.get("request-id")
        if request_id and self._mask is not None:
            return self._mask.text(request_id)
        return request_id

    async def _failure(self, response: aiohttp.ClientResponse) -> UpstreamError:
        """The error for a non-2xx answer, its body read and masked."""
        body = self._body(await response.read())
        retry_after = retry_after_of(response.headers, cap=self._retry_after_max)
        return _status_error(
            self.provider, response.status, body, self._request_id(response), retry_after
        )

    async def _chunks(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """The body's chunks as they come, masked (a chunk's end that may begin a secret is
        held back until the next chunk)."""
        if self._mask is None:
            async for chunk in response.content.iter_any():
                yield chunk
            return
        masking = self._mask.stream()
        async for chunk in response.content.iter_any():
            passed = masking.feed(chunk)
            if passed:
                yield passed
        rest = masking.flush()
        if rest:
            yield rest

    async def post(self, path: str, body: bytes) -> tuple[int, bytes, str | None]:
        """POST and read the whole answer; raises ``UpstreamError`` for anything but 2xx."""
        with _mapped_errors(self.provider):
            async with self._get_session().post(self.base_url + path, data=body) as response:
                if response.status >= 300:
                    raise await self._failure(response)
                data = await response.read()
                return response.status, self._body(data), self._request_id(response)

    async def stream(self, path: str, body: bytes) -> AsyncIterator[bytes]:
        """POST and yield the answer's bytes as they come. A non-2xx answer raises
        ``UpstreamError`` before anything is yielded, so a caller can still answer with an
        error status."""
        with _mapped_errors(self.provider):
            async with self._get_session().post(self.base_url + path, data=body) as response:
                if response.status >= 300:
                    raise await self._failure(response)
                async for chunk in self._chunks(response):
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
        with _mapped_errors(self.provider):
            async with self._get_session().request(
                method, url, data=body, params=params, headers=headers, **options
            ) as response:
                if response.status >= 300:
                    raise await self._failure(response)
                payload = self._body(await response.read())
                return response.status, payload, response.headers

    async def download(
        self, path: str, *, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[bytes]:
        """GET and yield the body's bytes as they come (never the whole body at once).

        ``path`` is appended to the base URL, unless it is an absolute ``http(s)://`` URL
        (Anthropic's ``results_url``), which is used as is with the same session headers when
        it is on the base URL's host, and otherwise fetched from the base URL with its path:
        the session's credentials never go to another host.
        A non-2xx answer raises ``UpstreamError`` before anything is yielded. The timeout
        bounds the connect and each read, not the whole transfer.
        """
        url = self._url(path)
        with _mapped_errors(self.provider):
            async with self._get_session().get(
                url, params=params, timeout=self._transfer_timeout
            ) as response:
                if response.status >= 300:
                    raise await self._failure(response)
                async for chunk in self._chunks(response):
                    yield chunk

    def _url(self, path: str) -> str:
        if not path.startswith(("http://", "https://")):
            return self.base_url + path
        target = urlsplit(path)
        if (target.scheme, target.netloc) == self._origin:
            return path
        return self.base_url + target.path + (f"?{target.query}" if target.query else "")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
