"""Unit tests of ``batchway.core.nesting``: the depth check agrees with a plain walk."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from batchway.core.nesting import ORJSON_MAX_DEPTH, nested_deeper


def depth(value: Any) -> int:
    """The nesting depth by a plain walk: ``[]`` and ``{}`` are one level."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def arrays(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def objects(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


DOCUMENTS = [
    b"1",
    b'"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["',  # brackets in a string are not levels
    arrays(8),
    objects(8),
    b'{"a": [1, {"b": [[], {}, [[[]]]]}], "c": "{{{{{{{{{{"}',
    b"[" + b",".join([arrays(3)] * 50) + b"]",  # many brackets, little depth
    arrays(9),
    objects(9),
    arrays(200),
    objects(254),
]


@pytest.mark.parametrize("raw", DOCUMENTS)
@pytest.mark.parametrize("limit", [1, 4, 8, 128])
def test_nested_deeper_agrees_with_a_plain_walk(raw: bytes, limit: int) -> None:
    value = orjson.loads(raw)
    assert nested_deeper(raw, value, limit) is (depth(value) > limit)


@pytest.mark.parametrize("limit", [1, 64, 128, 200])
def test_the_boundary_is_exact_for_arrays_and_objects(limit: int) -> None:
    for make in (arrays, objects):
        at, over = make(limit), make(limit + 1)
        assert not nested_deeper(at, orjson.loads(at), limit)
        assert nested_deeper(over, orjson.loads(over), limit)


def test_orjson_still_writes_exactly_its_documented_depth() -> None:
    """The check relies on orjson's write limit: an orjson that moved it must fail here."""
    orjson.dumps(orjson.loads(arrays(ORJSON_MAX_DEPTH)))
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(orjson.loads(arrays(ORJSON_MAX_DEPTH + 1)))
