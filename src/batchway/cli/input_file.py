"""The local files the client commands read and write: a batch's input, the requests of an
inline batch, metadata pairs, and result files written whole or not at all."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import orjson

from batchway.errors import GatewayRefused, UsageError

__all__ = [
    "DEFAULT_ENDPOINT",
    "InlineRequests",
    "check_input",
    "check_writable",
    "first_url",
    "parse_metadata",
    "writing",
]

DEFAULT_ENDPOINT = "/v1/chat/completions"
_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/responses")
_FIRST_LINE_BYTES = 1 << 20  # enough to read the url of any sensible first line
_BOM = b"\xef\xbb\xbf"
_REQUEST_INDEX = re.compile(r"requests\[(\d+)\]")


def check_input(path: Path) -> Path:
    """``path`` if it is a readable file, else a UsageError naming it."""
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    if not os.access(path, os.R_OK):
        raise UsageError(f"cannot read {path}: permission denied")
    return path


def check_writable(path: Path | None) -> None:
    """Refuse now, not after the batch has run, a result path that cannot be written."""
    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a directory")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"cannot write {path}: no such directory {folder}")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write {path}: permission denied")


@contextmanager
def writing(path: Path) -> Iterator[IO[bytes]]:
    """A file to write at ``path``, which appears there only once it was written whole."""
    partial = path.with_name(path.name + ".part")
    try:
        with partial.open("wb") as sink:
            yield sink
        partial.replace(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)


def first_url(path: Path) -> str:
    """The endpoint the file's first line names (``url``), else the default endpoint."""
    with path.open("rb") as handle:
        line = handle.readline(_FIRST_LINE_BYTES).removeprefix(_BOM)
    try:
        url = orjson.loads(line).get("url")
    except (orjson.JSONDecodeError, AttributeError):
        return DEFAULT_ENDPOINT  # the gateway reports the line itself
    if isinstance(url, str) and "/v1" + url in _ENDPOINTS:
        return "/v1" + url  # Azure's form, without /v1
    return url if url in _ENDPOINTS else DEFAULT_ENDPOINT


def parse_metadata(pairs: list[str] | None) -> dict[str, str]:
    """``key=value`` options as a dict."""
    metadata: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata takes key=value, not {pair!r}")
        metadata[key] = value
    return metadata


class InlineRequests:
    """A file of ``{"custom_id", "params"}`` lines, sent as an inline batch's body.

    Each line is checked to be a JSON object before anything is sent; the body then streams
    from the file, one line at a time, so memory stays flat whatever its size. The gateway's
    refusals name requests by index (``requests[3]``); ``explain`` names the file's lines.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[int] = []  # the file's line number of each request
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                line = raw.removeprefix(_BOM) if number == 1 else raw
                if not line.strip():
                    continue
                try:
                    request = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise UsageError(f"{path}, line {number}: not JSON ({exc})") from exc
                if not isinstance(request, dict):
                    raise UsageError(f"{path}, line {number}: not a JSON object")
                self.lines.append(number)
        if not self.lines:
            raise UsageError(f"{path} holds no request")

    def body(self) -> Iterator[bytes]:
        """``{"requests": [...]}``, a line at a time."""
        yield b'{"requests":['
        first = True
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                line = (raw.removeprefix(_BOM) if number == 1 else raw).strip()
                if not line:
                    continue
                yield line if first else b"," + line
                first = False
        yield b"]}"

    def explain(self, refused: GatewayRefused) -> GatewayRefused:
        """The gateway's refusal with each ``requests[i]`` named by its line in the file."""

        def line_of(match: re.Match[str]) -> str:
            index = int(match[1])
            if index >= len(self.lines):
                return match[0]
            return f"line {self.lines[index]} ({match[0]})"

        message = _REQUEST_INDEX.sub(line_of, refused.message)
        return GatewayRefused(message, status=refused.status_code)
