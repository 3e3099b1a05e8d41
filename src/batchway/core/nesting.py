"""How deeply a JSON document nests its arrays and objects, checked cheaply.

orjson reads documents nested up to 1,024 levels but writes at most 254, so a request
nested between the two could be taken in and then never sent on or stored. Every JSON
body and batch line is therefore held to ``limits.max_json_depth`` (well under 254) when
it is parsed.

The check costs next to nothing for almost every request: a document with no more than
``limit`` opening brackets cannot nest deeper than ``limit``, and counting them runs at C
speed. Only a document with more brackets than that is measured precisely, and that too
at C speed: orjson itself refuses to write a value nested deeper than it can, so the value
is wrapped in enough lists that exactly the documents deeper than ``limit`` go past
orjson's own depth.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["ORJSON_MAX_DEPTH", "nested_deeper"]

ORJSON_MAX_DEPTH = 254  # the deepest nesting orjson writes (it reads up to 1,024)


def nested_deeper(raw: bytes, value: Any, limit: int) -> bool:
    """Whether ``value`` (parsed from ``raw``) nests arrays and objects deeper than
    ``limit`` levels; ``[1]`` and ``{"a": 1}`` are one level deep, a scalar none.

    ``limit`` must be below ``ORJSON_MAX_DEPTH`` (the config keeps it there).
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # each level needs its own bracket
    wrapped = value
    for _ in range(ORJSON_MAX_DEPTH - limit):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return True  # a parsed document can fail to be written for its depth alone
    return False
