"""Object ids and API keys.

Ids look like the vendors' (``file-…``, ``batch_…``, ``batch_req_…``) so that clients
that sniff prefixes keep working; they carry no meaning beyond that.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import string

__all__ = [
    "hash_key",
    "item_line_id",
    "new_api_key",
    "new_id",
    "new_request_id",
    "result_file_id",
]

_BASE62 = string.digits + string.ascii_letters


def _base62(length: int) -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(length))


def new_id(kind: str) -> str:
    """A new random id of the given kind."""
    if kind == "file":
        return "file-" + _base62(22)
    if kind == "batch":
        return "batch_" + secrets.token_hex(16)
    if kind == "msgbatch":
        return "msgbatch_" + _base62(24)
    if kind == "batch_req":
        return "batch_req_" + secrets.token_hex(16)
    if kind == "key":
        return "key_" + secrets.token_hex(8)
    if kind == "req":
        return "req_" + secrets.token_hex(12)
    raise ValueError(f"unknown id kind {kind!r}")


_REQUEST_PREFIX = "req_" + secrets.token_hex(6)
_REQUEST_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """A request id, unique across processes: a random per-process prefix and a counter.

    Request ids only need to be unique, not unguessable, and this sits on the proxy's hot
    path, where drawing fresh random bytes for every request showed in profiles.
    """
    return f"{_REQUEST_PREFIX}{next(_REQUEST_COUNTER):010x}"


def new_api_key() -> str:
    """A new gateway key to hand to a user once; only its hash is stored."""
    return "bw-" + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of a gateway key (SHA-256: keys are long random strings, not passwords)."""
    return hashlib.sha256(key.encode()).hexdigest()


def _base62_of(data: bytes, length: int) -> str:
    number = int.from_bytes(data, "big")
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return "".join(chars)


def item_line_id(batch_id: str, line: int) -> str:
    """The ``batch_req_…`` id of a line: stable, so a rewritten file says the same."""
    return "batch_req_" + hashlib.sha256(f"{batch_id}:{line}".encode()).hexdigest()[:32]


def result_file_id(batch_id: str, kind: str) -> str:
    """The id of a batch's output or error file: stable, so finalizing twice is harmless."""
    return "file-" + _base62_of(hashlib.sha256(f"{batch_id}:{kind}".encode()).digest(), 22)
