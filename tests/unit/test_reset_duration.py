"""The reset headers' durations, written as OpenAI writes them."""

from __future__ import annotations

import pytest

from batchway.core.proxy import reset_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0ms"),
        (0.02, "20ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (59.999, "59.999s"),
        (60.9, "1m0.9s"),
        (360.0, "6m0s"),
        (3600.0, "1h0m0s"),
        (3661.25, "1h1m1.25s"),
    ],
)
def test_reset_duration(seconds: float, text: str):
    assert reset_duration(seconds) == text
