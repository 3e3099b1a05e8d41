"""A streaming ``multipart/form-data`` reader for uploads.

Starlette's own form parser spools files to temporary files first; here the file part
goes straight to blob storage chunk by chunk as it arrives, so an upload of any size
costs a flat amount of memory and is written once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from batchway.core.files import Upload
from batchway.errors import InvalidRequest

__all__ = ["Form", "read_upload"]

_MAX_FIELDS = 32
_MAX_FIELD_BYTES = 64 * 1024


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


async def read_upload(request: Request, begin_file: Callable[[Form], Awaitable[Upload]]) -> Form:
    """Read a multipart body; ``begin_file`` opens the upload when the file part starts.

    The text fields that came before the file part are already in the form when
    ``begin_file`` is called. On any error the upload is aborted before raising.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest("The body must be multipart/form-data.", param="file")

    form = Form()
    events: list[tuple[str, bytes]] = []
    header_field = bytearray()
    header_value = bytearray()
    part = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        events.append(("header", bytes(header_field).lower() + b"\0" + bytes(header_value)))
        header_field.clear()
        header_value.clear()

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": lambda: events.append(("begin", b"")),
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": lambda: events.append(("headers", b"")),
            "on_part_data": lambda data, start, end: events.append(("data", data[start:end])),
            "on_part_end": lambda: events.append(("end", b"")),
            "on_end": lambda: events.append(("done", b"")),
        },
    )
    complete = received = False
    try:
        async for chunk in request.stream():
            received = received or bool(chunk)
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise InvalidRequest("The multipart body is malformed.", param="file") from exc
            for kind, data in events:
                if kind == "begin":
                    part = _Part()
                elif kind == "header":
                    name, _, value = data.partition(b"\0")
                    part.headers[name] = value
                elif kind == "headers":
                    await _start_part(part, form, begin_file)
                elif kind == "data":
                    await _part_data(part, form, data)
                elif kind == "done":
                    complete = True
                elif part.filename is None and kind == "end":
                    if len(form.fields) >= _MAX_FIELDS:
                        raise InvalidRequest("Too many form fields.")
                    form.fields[part.name] = part.value.decode("utf-8", "replace")
            events.clear()
        parser.finalize()
        if received and not complete:  # the closing boundary never came: cut short
            raise InvalidRequest("The multipart body is incomplete.", param="file")
    except BaseException:
        if form.upload is not None:
            await form.upload.abort()
        raise
    return form


async def _start_part(
    part: _Part, form: Form, begin_file: Callable[[Form], Awaitable[Upload]]
) -> None:
    _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
    part.name = options.get(b"name", b"").decode("utf-8", "replace")
    filename = options.get(b"filename")
    if filename is None:
        return
    if part.name != "file" or form.upload is not None:
        raise InvalidRequest("Send exactly one file, in the field 'file'.", param="file")
    if b"\x00" in filename:
        raise InvalidRequest("The filename must not contain NUL characters.", param="file")
    part.filename = filename.decode("utf-8", "replace").rsplit("/", 1)[-1] or "upload"
    form.filename = part.filename
    form.upload = await begin_file(form)


async def _part_data(part: _Part, form: Form, data: bytes) -> None:
    if part.filename is not None:
        assert form.upload is not None
        await form.upload.write(data)
        return
    part.value.extend(data)
    if len(part.value) > _MAX_FIELD_BYTES:
        raise InvalidRequest(f"The form field {part.name!r} is too long.", param=part.name)
