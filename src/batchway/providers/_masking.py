"""A provider's secrets, masked in everything it answers before the gateway uses the answer.

An upstream may echo the credentials it was sent (a 401 quoting the key, a debugging proxy
repeating its headers). `HttpUpstream` runs every body through the provider's `SecretMask`
where the bytes enter, so no client answer, log line, request-log row or batch result file
can carry them. What counts as a secret of a provider:

- its ``api_key`` (unless it is ``none``);
- the value of each configured ``headers`` entry whose name looks like a credential (it
  contains ``auth``, ``key``, ``token``, ``secret``, ``passw``, ``cookie``, ``credential``,
  ``signature`` or ``session``), and the credential after a scheme (``Bearer sk-…``);
- the password of ``base_url`` and the values of its query parameters named like that.

Values shorter than ``secret_min_length`` are left alone: masking ``EMPTY`` or ``x`` would
garble answers and protect nothing. Each secret is masked as it is and as it is written
inside a JSON string, by `PLACEHOLDER`, which keeps a JSON body valid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit

import orjson

from batchway.config import ProviderConfig

__all__ = ["PLACEHOLDER", "SecretMask", "StreamMask", "provider_secrets"]

PLACEHOLDER = "[masked]"
_PLACEHOLDER = PLACEHOLDER.encode()
_SECRET_NAME = re.compile(
    r"auth|key|token|secret|passw|cookie|credential|signature|session", re.IGNORECASE
)


def provider_secrets(config: ProviderConfig) -> list[str]:
    """The values of a provider's config that are masked in its answers (see the module)."""
    found: list[str] = []
    if config.sends_api_key and config.api_key:
        found.append(config.api_key)
    for name, value in config.headers.items():
        if _SECRET_NAME.search(name):
            found.append(value)
            parts = value.split()
            if len(parts) == 2:  # "Bearer sk-…": the credential alone too
                found.append(parts[1])
    if config.base_url:
        url = urlsplit(config.base_url)
        if url.password:
            found.append(url.password)
        found += [value for name, value in parse_qsl(url.query) if _SECRET_NAME.search(name)]
    return [value for value in found if len(value) >= config.secret_min_length]


class SecretMask:
    """Replaces every occurrence of a set of secrets by `PLACEHOLDER`.

    Checking a body that holds none costs one ``in`` test per secret form (bytes, no copy).
    """

    __slots__ = ("_firsts", "_heads", "_patterns", "_texts")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        patterns: set[bytes] = set()
        for secret in secrets:
            if secret:
                patterns.add(secret.encode())
                patterns.add(orjson.dumps(secret)[1:-1])  # as written inside a JSON string
        # longest first, so that a secret containing another is masked whole
        self._patterns = tuple(sorted(patterns, key=len, reverse=True))
        self._texts = tuple(pattern.decode() for pattern in self._patterns)
        self._firsts = tuple(pattern[:1] for pattern in self._patterns)
        self._heads = tuple(pattern[:-1] for pattern in self._patterns)  # proper prefixes

    @classmethod
    def of(cls, config: ProviderConfig) -> SecretMask:
        """The mask of one provider's secrets."""
        return cls(provider_secrets(config))

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def apply(self, data: bytes) -> bytes:
        """``data`` with every secret masked (the same object when it holds none)."""
        for pattern in self._patterns:
            if pattern in data:
                data = data.replace(pattern, _PLACEHOLDER)
        return data

    def text(self, text: str) -> str:
        """``text`` with every secret masked."""
        for pattern in self._texts:
            if pattern in text:
                text = text.replace(pattern, PLACEHOLDER)
        return text

    def held(self, data: bytes) -> int:
        """How many bytes at the end of ``data`` could be the start of a secret."""
        end = len(data)
        if not end:
            return 0
        last = data[-1]
        hold = 0
        for pattern, first, head in zip(self._patterns, self._firsts, self._heads, strict=True):
            if last not in head:  # no start of this secret can end here (a stream's "\n")
                continue
            at = data.find(first, max(end - len(pattern) + 1, 0))
            while at != -1 and end - at > hold:
                if pattern.startswith(data[at:]):
                    hold = end - at
                    break
                at = data.find(first, at + 1)
        return hold

    def stream(self) -> StreamMask:
        """A masker for one stream of chunks."""
        return StreamMask(self)


class StreamMask:
    """Masks a stream chunk by chunk, holding back the end of a chunk that could be the
    start of a secret until the next chunk says whether it is one."""

    __slots__ = ("_carry", "_mask")

    def __init__(self, mask: SecretMask) -> None:
        self._mask = mask
        self._carry = b""

    def feed(self, chunk: bytes) -> bytes:
        """What of ``chunk`` (and of what was held back) can be passed on now, masked."""
        data = self._mask.apply(self._carry + chunk if self._carry else chunk)
        hold = self._mask.held(data)
        if hold:
            self._carry = data[-hold:]
            return data[:-hold]
        self._carry = b""
        return data

    def flush(self) -> bytes:
        """What was held back, once the stream is over (it was never a whole secret)."""
        carry, self._carry = self._carry, b""
        return carry
