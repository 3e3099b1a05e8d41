"""Unit tests of ``batchway.api.disposition``: RFC 6266 headers for any filename."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from batchway.api.disposition import attachment


@pytest.mark.parametrize(
    ("name", "fallback", "encoded"),
    [
        ("batch.jsonl", "batch.jsonl", "batch.jsonl"),
        ("日本.jsonl", "__.jsonl", "%E6%97%A5%E6%9C%AC.jsonl"),
        ('a"b\\c.jsonl', "a_b_c.jsonl", "a%22b%5Cc.jsonl"),
        ("50% off.csv", "50_ off.csv", "50%25%20off.csv"),
        ("a\x01\r\nb", "a___b", "a%01%0D%0Ab"),
        ("x;filename=y", "x;filename=y", "x%3Bfilename%3Dy"),
    ],
)
def test_attachment(name: str, fallback: str, encoded: str) -> None:
    header = attachment(name)
    assert header == f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
    header.encode("ascii")  # whatever the name, the header is plain ASCII
    assert unquote(encoded) == name
