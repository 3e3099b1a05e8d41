"""Hypothesis strategies for what clients send: JSON text (not Python values, so that the
quirks of the text itself are covered), request bodies and batch input files.

JSON is generated as text because the interesting inputs have no Python value: duplicate
keys, ``1e400``, ``-0``, integers past 64 bits, escaped lone surrogates (``"\\ud800"``),
invalid escapes, raw control characters, nesting past the parser's limit. Files and bodies
are then encoded in every way a client might get wrong: invalid UTF-8, UTF-16 with and
without a BOM, a UTF-8 BOM, NUL bytes, CRLF line ends, no final newline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypeVar

from hypothesis import strategies as st

__all__ = [
    "FILE_ID",
    "GOOD_DEPTH",
    "GOOD_MODEL",
    "PARSER_DEPTH_LIMIT",
    "SAFE_DEPTH",
    "BatchFile",
    "FileLine",
    "any_json",
    "batch_files",
    "body_bytes",
    "encodings",
    "json_scalars",
    "nested",
    "request_bodies",
]

T = TypeVar("T")

GOOD_MODEL = "gpt-4o"  # the simulated provider: answers at once, no network
FILE_ID = "$FILE_ID"  # where a test puts the id of an input file it uploaded
# fields an upstream allocates by (an embedding's size): given only small or mistyped values
_UNBOUNDED = {"dimensions"}
_MISTYPED = [
    '"8"',
    "[8]",
    "null",
    "-1",
    "0",
    "8.5",
    "true",
    "{}",
    str(2**70),
]
# orjson parses at most 1024 levels; past that a body is not JSON at all
PARSER_DEPTH_LIMIT = 1024
# a line or body nested this deep must be taken (the gateway's depth limit is 128 by default)
GOOD_DEPTH = 100
# nesting drawn anywhere up to the parser's limit: past the depth limit it is refused
SAFE_DEPTH = PARSER_DEPTH_LIMIT

# -- JSON text --------------------------------------------------------------------------

_NUMBERS = [
    "0",
    "-0",
    "-0.0",
    "1e-400",  # underflows to 0.0
    "1E+2",
    str(2**63 - 1),
    str(2**63),
    str(-(2**63) - 1),
    str(2**64),
    str(2**70),
    str(-(2**70)),
    "0.1",
    "3.0",
    "1.7976931348623157e308",
]
_STRINGS = [
    '""',
    '"\\ud83d\\ude00"',  # a proper surrogate pair, escaped
    '"\\u0000"',
    '"a\\u0000b"',
    '"\u2028\u2029"',
    '"\\/"',
    '"\\n\\r\\t"',
    '"' + "x" * 600 + '"',
]
# text that is not JSON, though it looks close: a body holding one is refused as a whole
_NOT_JSON = [
    "1e400",  # a double's range ends before this
    "-1e400",
    "1" * 400,  # an integer past a double's range
    "NaN",
    "Infinity",
    "-Infinity",
    "undefined",
    "01",
    "+1",
    ".5",
    "1.",
    "0x10",
    "'a'",
    '"\\ud800"',  # a lone high surrogate, escaped
    '"\\udc00"',  # a lone low surrogate
    '"\\udc00\\ud800"',  # a pair the wrong way round
    '"\\x41"',  # not a JSON escape
    '"\\u12"',  # a short escape
    '"tab\there"',  # a raw control character
]


def _mostly(
    common: st.SearchStrategy[T], rare: st.SearchStrategy[T], one_in: int
) -> st.SearchStrategy[T]:
    """``common``, and ``rare`` one time in ``one_in`` (hypothesis starts from, and shrinks
    towards, the common one)."""
    return st.integers(0, one_in - 1).flatmap(lambda i: rare if i == one_in - 1 else common)


def _one_in(one_in: int) -> st.SearchStrategy[bool]:
    """True one time in ``one_in``."""
    return _mostly(st.just(False), st.just(True), one_in)


def json_string_literal() -> st.SearchStrategy[str]:
    """A JSON string as text, from any text or one of the awkward ones."""
    return st.one_of(
        st.builds(
            lambda text, ascii_only: json.dumps(text, ensure_ascii=ascii_only),
            st.text(max_size=20),
            st.booleans(),
        ),
        st.sampled_from(_STRINGS),
    )


def json_scalars() -> st.SearchStrategy[str]:
    """A JSON scalar as text; one time in a hundred, text that is not JSON at all (a body
    has many scalars: one in it spoils the whole body)."""
    valid = st.one_of(
        st.sampled_from(["null", "true", "false"]),
        st.integers(min_value=-(2**80), max_value=2**80).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.sampled_from(_NUMBERS),
        json_string_literal(),
    )
    return _mostly(valid, st.sampled_from(_NOT_JSON), 100)


def _object(members: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{key}:{value}" for key, value in members) + "}"


def _duplicated(members: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return members + members[:1] if members else members


def any_json() -> st.SearchStrategy[str]:
    """JSON text of any shape (depth bounded), duplicate keys and odd tokens included."""
    return st.recursive(
        json_scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=4).map(lambda items: "[" + ",".join(items) + "]"),
            st.lists(st.tuples(json_string_literal(), children), max_size=4).map(_object),
            st.lists(st.tuples(json_string_literal(), children), min_size=1, max_size=3)
            .map(_duplicated)
            .map(_object),
        ),
        max_leaves=12,
    )


def nested(depth: int, inner: str = "1", kind: str = "list") -> str:
    """``inner`` nested ``depth`` levels deep in lists or in objects."""
    if kind == "list":
        return "[" * depth + inner + "]" * depth
    return '{"a":' * depth + inner + "}" * depth


def deep_json(max_depth: int) -> st.SearchStrategy[str]:
    """Nesting up to ``max_depth`` levels or, one time in six, past the parser's limit."""
    return st.builds(
        nested,
        _mostly(
            st.integers(min_value=1, max_value=max_depth),
            st.integers(min_value=PARSER_DEPTH_LIMIT + 1, max_value=PARSER_DEPTH_LIMIT + 80),
            6,
        ),
        st.sampled_from(["1", "null", '"x"', "{}", "[]"]),
        st.sampled_from(["list", "object"]),
    )


def field_value() -> st.SearchStrategy[str]:
    """What may stand where a request expects one field: anything, of any type, sometimes
    nested deep."""
    return _mostly(any_json(), deep_json(SAFE_DEPTH - 10), 5)


# -- encodings --------------------------------------------------------------------------


def _utf16(text: bytes, codec: str) -> bytes:
    return text.decode("utf-8", "replace").encode(codec)


@dataclass(frozen=True)
class Encoding:
    """How a body or file is turned into bytes; ``utf8`` tells whether the result is
    UTF-8 (less a leading BOM), i.e. whether its lines can be read at all."""

    name: str
    utf8: bool

    def apply(self, data: bytes) -> bytes:
        if self.name == "utf-8":
            return data
        if self.name == "utf-8-bom":
            return b"\xef\xbb\xbf" + data
        if self.name == "utf-16-le":
            return _utf16(data, "utf-16-le")
        if self.name == "utf-16-bom":
            return _utf16(data, "utf-16")  # with its BOM
        if self.name == "utf-16-be":
            return _utf16(data, "utf-16-be")
        if self.name == "latin-1":
            return data.decode("utf-8", "replace").encode("latin-1", "replace")
        raise AssertionError(self.name)


ENCODINGS = [
    Encoding("utf-8", True),
    Encoding("utf-8-bom", True),
    Encoding("utf-16-le", False),
    Encoding("utf-16-bom", False),
    Encoding("utf-16-be", False),
    Encoding("latin-1", True),  # the same bytes as UTF-8 while the text is ASCII
]


def encodings() -> st.SearchStrategy[Encoding]:
    """Mostly UTF-8, as clients send it; the rest of the time any of the others."""
    return st.sampled_from([ENCODINGS[0]] * 8 + ENCODINGS[1:])


_GARBAGE = [
    b"",
    b"\x00",
    b"\xff\xfe",
    b"\xc3\x28",  # an invalid UTF-8 sequence
    b"\xed\xa0\x80",  # a surrogate encoded as UTF-8
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\x80",
    b"{\x00}",
    b'{"a": "\x01"}',
]


def body_bytes(texts: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    """A body from JSON text: mostly as UTF-8, else encoded any way, with junk before or
    after, or no JSON at all."""
    odd = st.one_of(
        st.tuples(texts, encodings()).map(lambda pair: pair[1].apply(pair[0].encode())),
        st.tuples(texts, st.sampled_from(_GARBAGE), st.booleans()).map(
            lambda t: (t[1] + t[0].encode()) if t[2] else (t[0].encode() + t[1])
        ),
        st.sampled_from(_GARBAGE),
        st.binary(max_size=64),
    )
    return _mostly(texts.map(str.encode), odd, 5)


# -- request bodies ---------------------------------------------------------------------

# bodies for the synchronous routes go to the fake upstream, over HTTP like a real provider
# (the simulated provider does not check its input: see test_hostile_input.py)
SYNC_MODEL = "fake-ok"
_MODELS = [
    f'"{SYNC_MODEL}"',
    '"team-model"',
    '"no-such-model"',
    '""',
    '"gpt-4o\\u0000"',
    '"fake-ok-batch"',
    "null",
    "5",
    '["gpt-4o"]',
]

# the fields each route reads, each with a well-formed value; a body takes some of them
# and replaces some values with anything at all
_ROUTE_FIELDS: dict[str, dict[str, list[str]]] = {
    "chat": {
        "model": _MODELS,
        "messages": [
            '[{"role": "user", "content": "hi"}]',
            '[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]',
            '[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]',
            "[]",
        ],
        "max_tokens": ["1", "16"],
        "max_completion_tokens": ["8"],
        "stream": ["false", "true"],
        "stream_options": ['{"include_usage": true}'],
        "temperature": ["0.5"],
        "n": ["1"],
        "user": ['"u"'],
    },
    "embeddings": {
        "model": _MODELS,
        "input": ['"hello"', '["a", "b"]', "[1, 2, 3]", "[[1, 2], [3]]"],
        "encoding_format": ['"float"', '"base64"'],
        "dimensions": ["4", "8"],
    },
    "completions": {
        "model": _MODELS,
        "prompt": ['"once upon"', '["a", "b"]'],
        "max_tokens": ["4"],
        "stream": ["false"],
    },
    "responses": {
        "model": _MODELS,
        "input": ['"hello"', '[{"role": "user", "content": "hi"}]'],
        "instructions": ['"be brief"'],
        "max_output_tokens": ["16"],
    },
    "messages": {
        "model": _MODELS,
        "max_tokens": ["16", "1"],
        "messages": [
            '[{"role": "user", "content": "hi"}]',
            '[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]',
        ],
        "system": ['"be brief"', '[{"type": "text", "text": "be brief"}]'],
        "stream": ["false", "true"],
        "stop_sequences": ['["END"]'],
        "temperature": ["0.2"],
        "metadata": ['{"user_id": "u"}'],
    },
    "batch": {
        "input_file_id": [f'"{FILE_ID}"', '"file-nonexistent"', '""'],
        "endpoint": [
            '"/v1/chat/completions"',
            '"/chat/completions"',
            '"/v1/messages"',
            '"/v1/nothing"',
        ],
        "completion_window": ['"24h"', '"48h"'],
        "metadata": ['{"k": "v"}', "{}"],
        "output_expires_after": ['{"anchor": "created_at", "seconds": 3600}'],
    },
    "inline": {
        "requests": [
            '[{"custom_id": "a", "params": {"model": "gpt-4o", "max_tokens": 4, '
            '"messages": [{"role": "user", "content": "hi"}]}}]',
            '[{"custom_id": "a", "params": {}}]',
            "[]",
        ],
    },
    "message_batch": {
        "requests": [
            '[{"custom_id": "a", "params": {"model": "gpt-4o", "max_tokens": 4, '
            '"messages": [{"role": "user", "content": "hi"}]}}]',
            '[{"custom_id": "a-1", "params": {"model": "nope", "max_tokens": 4, "messages": []}}]',
            '[{"custom_id": "bad id!", "params": {}}]',
            "[]",
        ],
    },
    "key": {
        "name": ['"fuzz-key"', '""', '"' + "n" * 201 + '"', '"nul\\u0000name"'],
        "rpm": ["60", "0", "-1"],
        "tpm": ["1000"],
        "tph": ["10000"],
        "budget_usd": ["1.5", "-1"],
        "budget_period": ['"month"', '"day"', '"fortnight"'],
        "models": ['["gpt-4o"]', "[]", "[1]"],
    },
}

# the fields a route needs, the first value of each in _ROUTE_FIELDS being a good one
_REQUIRED: dict[str, tuple[str, ...]] = {
    "chat": ("model", "messages"),
    "embeddings": ("model", "input"),
    "completions": ("model", "prompt"),
    "responses": ("model", "input"),
    "messages": ("model", "max_tokens", "messages"),
    "batch": ("input_file_id", "endpoint", "completion_window"),
    "inline": ("requests",),
    "message_batch": ("requests",),
    "key": ("name",),
}


@st.composite
def _request_body(draw: st.DrawFn, kind: str) -> str:
    """A body for a route of ``kind``: its required fields (each most of the time) and some
    others, some with well-formed values and some with anything (another type, nesting, odd
    numbers), in any order, sometimes with unknown fields and duplicate keys."""
    fields = _ROUTE_FIELDS[kind]
    required = [name for name in _REQUIRED[kind] if not draw(_one_in(8))]
    others = sorted(set(fields) - set(required))
    if others:
        required += draw(st.lists(st.sampled_from(others), unique=True, max_size=3))
    names = required
    members = []
    for name in names:
        if name not in _UNBOUNDED and draw(_one_in(6)):
            value = draw(field_value())
        elif name in _UNBOUNDED:  # never a huge number: the fake would build it
            value = draw(st.sampled_from(fields[name] + _MISTYPED))
        else:
            value = draw(_mostly(st.just(fields[name][0]), st.sampled_from(fields[name]), 2))
        members.append((json.dumps(name), value))
    if draw(_one_in(4)):
        members += draw(st.lists(st.tuples(json_string_literal(), field_value()), max_size=2))
    members = draw(st.permutations(members))
    if draw(_one_in(6)) and members:
        members = _duplicated(list(members))
    return _object(list(members))


def request_bodies(kind: str) -> st.SearchStrategy[str]:
    """Mostly a body made for a route of ``kind``; one time in six, any JSON at all."""
    return _mostly(_request_body(kind), any_json(), 6)


# -- batch input files ------------------------------------------------------------------


@dataclass(frozen=True)
class FileLine:
    """One line of an input file, and what the gateway must make of it: ``valid`` True
    (it runs), False (it is reported, by its number) or None (either will do)."""

    text: bytes
    valid: bool | None
    custom_id: str | None = None  # of a good line


@dataclass(frozen=True)
class BatchFile:
    """An input file as uploaded, and its lines before encoding."""

    data: bytes
    lines: tuple[FileLine, ...]
    encoding: Encoding

    @property
    def readable(self) -> bool:
        """Whether the gateway reads the lines as they were written (UTF-8, perhaps with
        a BOM; Latin-1 only while the text is ASCII)."""
        if self.encoding.name == "latin-1":
            return all(line.text.isascii() for line in self.lines)
        return self.encoding.utf8


_ABSENT = "<absent>"


def _members(fields: dict[str, str]) -> list[tuple[str, str]]:
    return [(json.dumps(k), v) for k, v in fields.items() if v != _ABSENT]


def _body(**fields: str) -> str:
    members = {"model": f'"{GOOD_MODEL}"', "messages": '[{"role": "user", "content": "hi"}]'}
    return _object(_members({**members, **fields}))


def _line(
    custom_id: str, fields: dict[str, str] | None = None, then: tuple[tuple[str, str], ...] = ()
) -> str:
    """A good line with ``fields`` changed, and ``then`` appended (duplicate keys)."""
    members = {
        "custom_id": json.dumps(custom_id),
        "method": '"POST"',
        "url": '"/v1/chat/completions"',
        "body": _body(),
    }
    members.update(fields or {})
    return _object(_members(members) + [(json.dumps(k), v) for k, v in then])


# changes to a good line that make it bad, each on a field the gateway reads
_BAD_FIELDS: dict[str, list[str]] = {
    "custom_id": [
        "null",
        "1",
        "-0",
        "1e400",
        str(2**70),
        "{}",
        "[]",
        "true",
        '""',
        '"a\\u0000"',
        json.dumps("x" * 513),
        _ABSENT,
    ],
    "method": ['"post"', '"GET"', '"POST "', "null", '["POST"]', "1", _ABSENT],
    "url": [
        '"/v1/embeddings"',
        '"/v1/chat/completions/"',
        '"v1/chat/completions"',
        '"/V1/chat/completions"',
        '" /v1/chat/completions"',
        '"/v1/chat/completions?x=1"',
        '"https://api.openai.com/v1/chat/completions"',
        "null",
        "5",
        '{"path": "/v1/chat/completions"}',
        _ABSENT,
    ],
    "body": [
        "[]",
        '"{}"',
        "null",
        "1",
        "true",
        _ABSENT,
        _body(model=_ABSENT),
        _body(model="null"),
        _body(model="1"),
        _body(model='""'),
        _body(model='"no-such-model"'),
        _body(model='["gpt-4o"]'),
        _body(model='"gpt-4o\\u0000"'),
        _body(stream="true"),
        _body(stream="1"),
        _body(stream='"yes"'),
    ],
}
# changes that keep a good line good
_GOOD_FIELDS: dict[str, list[str]] = {
    "custom_id": [json.dumps("x" * 500), '"\\ud83d\\ude00"', '"caf\u00e9"', '" "'],
    "url": ['"/chat/completions"', '"/v1/chat/completions"'],
    "body": [
        _body(stream="false"),
        _body(stream="null"),
        _body(stream="0"),
        _body(stream='""'),
        _body(model='"gpt-4o-batch"'),
        _body(temperature="-0"),
        _body(seed=str(2**70)),
        _body(max_tokens="1e3"),
        _body(extra='"\\ud83d\\ude00"'),
        _body(extra='"\\u0000"'),
        _body(extra="1e-400"),
        _body(extra="-0.0"),
        _body(messages='[{"role": "user", "content": "\\u2028 caf\\u00e9 \\ud83d\\ude00"}]'),
        _body(nested=nested(GOOD_DEPTH)),
        _body(nested=nested(GOOD_DEPTH, kind="object")),
        _body(model='"fake-ok"'),
    ],
}


@st.composite
def _file_line(draw: st.DrawFn, number: int, good_only: bool) -> FileLine:
    custom_id = custom_id_used = f"ok-{number}"  # unique, and unlike any other line's
    choice = draw(st.integers(0, 3 if good_only else 11))
    if choice <= 3:  # good, perhaps with a change that keeps it good
        fields: dict[str, str] = {}
        if choice:
            field = draw(st.sampled_from(sorted(_GOOD_FIELDS)))
            fields[field] = draw(st.sampled_from(_GOOD_FIELDS[field]))
            if field == "custom_id":  # still unique
                fields[field] = fields[field][:-1] + f'-{number}"'
                custom_id_used = json.loads(fields[field])
        return FileLine(_line(custom_id, fields).encode(), True, custom_id_used)
    if choice <= 6:  # bad in one field
        field = draw(st.sampled_from(sorted(_BAD_FIELDS)))
        value = draw(st.sampled_from(_BAD_FIELDS[field]))
        return FileLine(_line(custom_id, {field: value}).encode(), False)
    if choice == 7:  # a duplicate key: the last one counts
        field = draw(st.sampled_from(sorted(_BAD_FIELDS)))
        # a value that is not JSON at all (1e400) spoils the line wherever it stands
        bad = draw(
            st.sampled_from([v for v in _BAD_FIELDS[field] if v not in (_ABSENT, *_NOT_JSON)])
        )
        if draw(st.booleans()):
            return FileLine(_line(custom_id, then=((field, bad),)).encode(), False)
        good = _good_value(field, custom_id)
        line = _line(custom_id, {field: bad}, then=((field, good),))
        return FileLine(line.encode(), True, custom_id)
    if choice == 8:  # anything at all in the body
        return FileLine(_line(custom_id, {"body": _body(extra=draw(field_value()))}).encode(), None)
    if choice == 9:  # anything at all in the line
        text = draw(
            st.one_of(
                any_json(),
                deep_json(SAFE_DEPTH - 10),
                st.sampled_from(["[", "{", '{"custom_id": "x",}', "{}}", "\x00"]),
            )
        )
        return FileLine(text.encode(), None)
    if choice == 10:  # bytes that are not JSON (or not UTF-8) inside a good line
        raw = draw(st.sampled_from(_GARBAGE[1:]))
        return FileLine(_line(custom_id).encode()[:-1] + raw + b"}", False)
    # text that is not JSON in the body of a good line: a lone surrogate, 1e400, a raw
    # control character in a string, NaN...
    extra = draw(st.sampled_from(_NOT_JSON))
    return FileLine(_line(custom_id, {"body": _body(extra=extra)}).encode(), False)


def _good_value(field: str, custom_id: str) -> str:
    return {
        "custom_id": json.dumps(custom_id),
        "method": '"POST"',
        "url": '"/v1/chat/completions"',
        "body": _body(),
    }[field]


@st.composite
def batch_files(draw: st.DrawFn, max_lines: int = 12) -> BatchFile:
    """An input file of good, bad and doubtful lines, encoded and ended any way."""
    count = draw(st.integers(0, max_lines))
    good_only = draw(st.integers(0, 2)) == 0  # a file that must run, a third of the time
    lines = [draw(_file_line(number, good_only)) for number in range(1, count + 1)]
    good = [i for i, line in enumerate(lines) if line.valid]
    if len(good) >= 2 and draw(st.booleans()):
        # a later good line takes the custom_id of an earlier one
        first, later = sorted(
            draw(st.lists(st.sampled_from(good), min_size=2, max_size=2, unique=True))
        )
        taken = lines[first].custom_id
        assert taken is not None
        lines[later] = FileLine(_line(taken).encode(), False)
    encoding = draw(encodings())
    line_end = draw(st.sampled_from([b"\n", b"\r\n"]))
    data = line_end.join(line.text for line in lines)
    if draw(st.booleans()) and lines:  # a final newline, perhaps blank lines after it
        data += line_end + draw(st.sampled_from([b"", b"\n", b"\n\n", b"\r\n", b" \t\n"]))
    return BatchFile(data=encoding.apply(data), lines=tuple(lines), encoding=encoding)
