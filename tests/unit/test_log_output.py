"""The log formats of `batchway serve` and `batchway worker`: text with key=value fields,
and one JSON object a line with the same fields (and an access line's parts)."""

from __future__ import annotations

import logging

import orjson

from batchway.cli.log_output import JsonFormatter, KeyValueFormatter


def _record(name: str, message: str, args: tuple[object, ...] = (), **extra: object):
    record = logging.LogRecord(name, logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_text_lines_end_with_the_fields():
    line = KeyValueFormatter("%(levelname)s %(message)s").format(
        _record("batchway.engine", "batch validated", batch_id="batch_1", lines=5)
    )
    assert line == "INFO batch validated batch_id=batch_1 lines=5"


def test_json_lines_carry_every_field():
    entry = orjson.loads(
        JsonFormatter().format(_record("batchway.engine", "batch %s", ("done",), lines=5))
    )
    assert entry["message"] == "batch done" and entry["lines"] == 5
    assert (entry["level"], entry["logger"]) == ("info", "batchway.engine")
    assert entry["time"].endswith("+00:00")


def test_an_access_line_is_taken_apart_and_colours_left_out():
    record = _record(
        "uvicorn.access",
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/healthz", "1.1", 200),
        color_message="\x1b[36m…",
    )
    entry = orjson.loads(JsonFormatter().format(record))
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/healthz", 200)
    assert "color_message" not in entry
