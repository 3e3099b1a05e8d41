"""A streaming ``multipart/form-data`` reader for uploads.

Starlette's own form parser spools files to temporary files first; here the file part
goes straight to blob storage chunk by chunk as it arrives, so an upload of any size
costs a flat amount of memory and is written once.

Whatever the shape of the body, it is either read or refused with a 400: a boundary the
parser cannot take (over 256 characters), headers over ``limits.max_form_header_bytes``,
too many or too long text fields, and a filename with control characters (which no HTTP
header could carry back on download) or over ``limits.max_filename_length`` characters.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from batchway.config import BatchLimits
from batchway.core.files import Upload, human_size
from batchway.errors import InvalidRequest

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["Form", "read_upload"]

_MAX_BOUNDARY = 256  # python-multipart's ceiling (RFC 2046 itself allows 70)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(slots=True)
class Form:
    """The text fields of a form and its one file part."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    upload: Upload | None = None


@dataclass(slots=True)
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    value: bytearray = field(default_factory=bytearray)


async def read_upload(
    request: Request, limits: BatchLimits, begin_file: Callable[[Form], Awaitable[Upload]]
) -> Form:
    """Read a multipart body; ``begin_file`` opens the upload when the file part starts.

    The text fields that came before the file part are already in the form when
    ``begin_file`` is called. On any error the upload is aborted before raising.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest("The body must be multipart/form-data with a boundary.", param="file")
    if len(boundary) > _MAX_BOUNDARY:
        raise InvalidRequest(
            f"The multipart boundary is longer than {_MAX_BOUNDARY} characters.", param="file"
        )
    reader = _Reader(limits, begin_file)
    try:
        parser = MultipartParser(boundary, reader.callbacks())
        async for chunk in request.stream():
            reader.received = reader.received or bool(chunk)
            try:
                parser.write(chunk)
            except FormParserError as exc:
                raise _malformed(exc) from exc
            await reader.handle_events()
            if reader.complete:
                break  # whatever follows the closing boundary is no part of the form
        if not reader.complete:
            parser.finalize()
            if reader.received:  # the closing boundary never came: cut short
                raise InvalidRequest("The multipart body is incomplete.", param="file")
    except BaseException:
        if reader.form.upload is not None:
            await reader.form.upload.abort()
        raise
    return reader.form


def _malformed(exc: FormParserError) -> InvalidRequest:
    if "maximum header" in str(exc).lower():  # the parser's own caps on header lines
        return InvalidRequest(
            "A part of the multipart body has too many headers or a header line that is too long.",
            param="file",
        )
    return InvalidRequest("The multipart body is malformed.", param="file")


class _Reader:
    """Turns the parser's callbacks into a form, within the limits."""

    def __init__(
        self, limits: BatchLimits, begin_file: Callable[[Form], Awaitable[Upload]]
    ) -> None:
        self.limits = limits
        self.begin_file = begin_file
        self.form = Form()
        self.part = _Part()
        self.events: list[tuple[str, bytes]] = []
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.header_bytes = 0  # of the current part, checked as they arrive
        self.received = False
        self.complete = False

    def callbacks(self) -> MultipartCallbacks:
        events = self.events
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": lambda: events.append(("headers", b"")),
            "on_part_data": lambda data, start, end: events.append(("data", data[start:end])),
            "on_part_end": lambda: events.append(("end", b"")),
            "on_end": lambda: events.append(("done", b"")),
        }

    def _part_begin(self) -> None:
        self.header_bytes = 0
        self.events.append(("begin", b""))

    def _count_header(self, size: int) -> None:
        # a header line has no end the parser would enforce: count it while it comes
        self.header_bytes += size
        if self.header_bytes > self.limits.max_form_header_bytes:
            raise InvalidRequest(
                "The headers of a multipart part are longer than the "
                f"{human_size(self.limits.max_form_header_bytes)} allowed.",
                param="file",
            )

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.header_field.extend(data[start:end])

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.header_value.extend(data[start:end])

    def _header_end(self) -> None:
        header = bytes(self.header_field).lower() + b"\0" + bytes(self.header_value)
        self.events.append(("header", header))
        self.header_field.clear()
        self.header_value.clear()

    async def handle_events(self) -> None:
        form, limits = self.form, self.limits
        for kind, data in self.events:
            if kind == "begin":
                self.part = _Part()
            elif kind == "header":
                name, _, value = data.partition(b"\0")
                self.part.headers[name] = value
            elif kind == "headers":
                await self._start_part()
            elif kind == "data":
                await self._part_data(data)
            elif kind == "done":
                self.complete = True
            elif self.part.filename is None and kind == "end":
                if len(form.fields) >= limits.max_form_fields:
                    raise InvalidRequest(f"The form has more than {limits.max_form_fields} fields.")
                form.fields[self.part.name] = self.part.value.decode("utf-8", "replace")
        self.events.clear()

    async def _start_part(self) -> None:
        part, form = self.part, self.form
        _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_name = options.get(b"filename")
        if raw_name is None:
            return
        if part.name != "file" or form.upload is not None:
            raise InvalidRequest("Send exactly one file, in the field 'file'.", param="file")
        filename = raw_name.decode("utf-8", "replace").rsplit("/", 1)[-1] or "upload"
        if _CONTROL.search(filename):
            raise InvalidRequest("The filename must not contain control characters.", param="file")
        if len(filename) > self.limits.max_filename_length:
            raise InvalidRequest(
                f"The filename is longer than {self.limits.max_filename_length} characters.",
                param="file",
            )
        part.filename = form.filename = filename
        form.upload = await self.begin_file(form)

    async def _part_data(self, data: bytes) -> None:
        part, form = self.part, self.form
        if part.filename is not None:
            assert form.upload is not None
            await form.upload.write(data)
            return
        part.value.extend(data)
        if len(part.value) > self.limits.max_form_field_bytes:
            raise InvalidRequest(f"The form field {part.name!r} is too long.", param=part.name)
