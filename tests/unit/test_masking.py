"""Unit tests of ``batchway.providers._masking``: which values are secret, and masking them
in whole bodies and in streams cut anywhere."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchway.config import ProviderConfig
from batchway.providers._masking import PLACEHOLDER, SecretMask, provider_secrets

SECRET = "sk-live-0123456789abcdef"


def _config(**fields: object) -> ProviderConfig:
    return ProviderConfig.model_validate(
        {"kind": "openai-compatible", "base_url": "http://127.0.0.1:1/v1", **fields}
    )


def test_the_api_key_and_credential_like_headers_are_secret() -> None:
    config = _config(
        api_key=SECRET,
        headers={
            "Authorization": "Bearer tok-from-a-header-1",
            "x-goog-api-key": "goog-key-12345",
            "Cookie": "session=abcdefgh1234",
            "x-team": "platform-team",  # not a credential
            "anthropic-version": "2023-06-01",
        },
    )

    assert provider_secrets(config) == [
        SECRET,
        "Bearer tok-from-a-header-1",
        "tok-from-a-header-1",
        "goog-key-12345",
        "session=abcdefgh1234",
    ]


def test_credentials_in_the_base_url_are_secret() -> None:
    config = _config(
        base_url="https://user:url-password-1@proxy.example/v1?api-key=query-key-99&v=2"
    )

    assert provider_secrets(config) == ["url-password-1", "query-key-99"]


@pytest.mark.parametrize("api_key", ["none", "None", None, "EMPTY", "short"])
def test_no_key_or_a_short_one_is_not_masked(api_key: str | None) -> None:
    assert provider_secrets(_config(api_key=api_key)) == []


def test_the_minimum_length_is_configurable() -> None:
    assert provider_secrets(_config(api_key="EMPTY", secret_min_length=3)) == ["EMPTY"]


def test_a_body_without_secrets_is_passed_as_the_same_object() -> None:
    mask = SecretMask([SECRET])
    body = b'{"choices": [{"message": {"content": "hello"}}]}'

    assert mask.apply(body) is body
    assert not SecretMask([]) and SecretMask([SECRET])


def test_every_occurrence_is_masked_and_json_stays_valid() -> None:
    mask = SecretMask([SECRET, 'quote"and\\slash-secret'])
    body = orjson.dumps(
        {"error": {"message": f'bad key {SECRET}, twice {SECRET}; quote"and\\slash-secret'}}
    )

    masked = mask.apply(body)

    assert orjson.loads(masked)["error"]["message"] == (
        f"bad key {PLACEHOLDER}, twice {PLACEHOLDER}; {PLACEHOLDER}"
    )
    assert mask.text(f"id-{SECRET}") == f"id-{PLACEHOLDER}"


def test_a_secret_inside_another_is_masked_whole() -> None:
    mask = SecretMask(["Bearer " + SECRET, SECRET])

    assert mask.apply(f"got Bearer {SECRET}".encode()) == f"got {PLACEHOLDER}".encode()


def _streamed(mask: SecretMask, chunks: list[bytes]) -> bytes:
    stream = mask.stream()
    out = b"".join(stream.feed(chunk) for chunk in chunks)
    return out + stream.flush()


def test_a_secret_split_across_chunks_is_masked() -> None:
    mask = SecretMask([SECRET])
    data = f"data: key {SECRET} end\n\n".encode()
    cut = data.index(b"0123")

    stream = mask.stream()
    first = stream.feed(data[:cut])
    rest = stream.feed(data[cut:]) + stream.flush()

    assert first == b"data: key "  # the possible start of the secret was held back
    assert first + rest == f"data: key {PLACEHOLDER} end\n\n".encode()


def test_a_chunk_that_only_looks_like_a_secret_start_is_passed_on_at_the_end() -> None:
    mask = SecretMask([SECRET])

    assert _streamed(mask, [b"data: sk-li", b"ke this"]) == b"data: sk-like this"
    assert _streamed(mask, [b"ends with sk-live-0"]) == b"ends with sk-live-0"


def test_a_chunk_ending_an_event_is_not_held() -> None:
    stream = SecretMask([SECRET]).stream()

    assert stream.feed(b"data: {}\n\n") == b"data: {}\n\n"


@settings(database=None, max_examples=300)
@given(
    before=st.binary(max_size=40),
    after=st.binary(max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
)
def test_any_cut_of_a_stream_masks_like_the_whole(
    before: bytes, after: bytes, cuts: list[int]
) -> None:
    mask = SecretMask([SECRET, "another-secret-value"])
    data = before + SECRET.encode() + after + b"another-secret-value" + before
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]

    streamed = _streamed(mask, chunks)

    assert streamed == mask.apply(data)
    assert SECRET.encode() not in streamed
