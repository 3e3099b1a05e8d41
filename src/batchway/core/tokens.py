"""Token estimates of a request before it is sent, for rate limits and budgets.

The estimate is reserved before the upstream call and settled to the real usage after it, so
it only needs to be close and cheap: it runs on every proxied request. Text is counted with a
tiktoken encoding when one can be read from local disk, never from the network (tiktoken itself
downloads its encodings on first use, which offline deployments cannot do), and otherwise with
a heuristic of one token per four UTF-8 bytes.

Where the encoding is looked for, in order (``o200k_base`` first, then ``cl100k_base``): the
directory in ``BATCHWAY_TIKTOKEN_DIR``, then tiktoken's own cache (``TIKTOKEN_CACHE_DIR``, else
``DATA_GYM_CACHE_DIR``, else ``<tmp>/data-gym-cache``). A directory may hold the file under its
plain name (``o200k_base.tiktoken``) or under tiktoken's cache name (the SHA-1 of its URL), and
the file must match tiktoken's published SHA-256. ``BATCHWAY_TIKTOKEN_DIR=""`` turns tiktoken off.
Loading takes a few hundred milliseconds, once: call :func:`text_counter` at startup (in a
thread) to keep it off the first request.

Images count a fixed :data:`IMAGE_TOKENS`, other attachments (audio, files, PDF documents) a
fixed :data:`FILE_TOKENS`: their base64 size says little about their tokens. Tool definitions
and JSON schemas count as their JSON text. Odd shapes never raise; what can be read is counted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import orjson

from batchway.core.endpoints import Endpoint

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "FILE_TOKENS",
    "IMAGE_TOKENS",
    "TextCounter",
    "estimate_input_tokens",
    "estimate_output_tokens",
    "estimate_tokens",
    "heuristic_count",
    "load_tiktoken_counter",
    "set_text_counter",
    "text_counter",
]

TextCounter = Callable[[str], int]

# Output allowed for when the request sets no limit: a typical answer's length. Legacy
# completions default to 16 upstream, so that is used there; embeddings produce no output.
DEFAULT_OUTPUT_TOKENS: Final = 256
COMPLETIONS_DEFAULT_MAX_TOKENS: Final = 16
IMAGE_TOKENS: Final = 765  # OpenAI's figure for a 1024x1024 image at high detail
LOW_DETAIL_IMAGE_TOKENS: Final = 85
FILE_TOKENS: Final = 1_000
MESSAGE_OVERHEAD: Final = 4  # role and separators around each message
REQUEST_OVERHEAD: Final = 3  # the primed reply
MAX_CHOICES: Final = 128  # upstream's limit on ``n``
_MAX_DEPTH: Final = 16  # deeper content is not counted (and cannot exhaust the stack)
# Longer texts use the heuristic even with tiktoken: encoding is linear but costs about a
# microsecond per 10 bytes, and a megabyte prompt must not stall the event loop.
_EXACT_LIMIT: Final = 64 * 1024


# --- counting text ---------------------------------------------------------------------------


def heuristic_count(text: str) -> int:
    """Tokens of ``text`` by the rule of thumb: one per four UTF-8 bytes, rounded up."""
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return (size + 3) // 4


_URL: Final = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
# What tiktoken_ext.openai_public builds each encoding from (tested against it), with the
# SHA-256 of the rank file. Copied so that nothing here can reach tiktoken's downloader.
_ENCODINGS: Final[dict[str, tuple[str, str, dict[str, int]]]] = {
    "o200k_base": (
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
    "cl100k_base": (
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
}


def _search_dirs(directory: str | None) -> Iterator[str]:
    if directory is not None:
        yield directory
        return
    ours = os.environ.get("BATCHWAY_TIKTOKEN_DIR")
    if ours == "":
        return  # explicitly off
    if ours:
        yield ours
    # tiktoken's own cache, resolved the way tiktoken.load.read_file_cached does
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    yield cache or os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _read_ranks(path: Path, sha256: str) -> dict[bytes, int] | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != sha256:
        return None
    ranks: dict[bytes, int] = {}
    try:
        for line in data.splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    except (ValueError, binascii.Error):
        return None
    return ranks


def load_tiktoken_counter(directory: str | None = None) -> TextCounter | None:
    """A counter built on a tiktoken encoding read from local disk, or None if none is there.

    Looks in ``directory`` only when given, else where the module docstring says. Never
    touches the network. Texts longer than 64 KiB are counted with :func:`heuristic_count`.
    """
    try:
        import tiktoken
    except ImportError:  # pragma: no cover - tiktoken is a dependency
        return None
    for base in _search_dirs(directory):
        for name, (sha256, pat_str, special_tokens) in _ENCODINGS.items():
            cache_name = hashlib.sha1(_URL.format(name).encode()).hexdigest()
            for filename in (f"{name}.tiktoken", cache_name):
                ranks = _read_ranks(Path(base, filename), sha256)
                if ranks is None:
                    continue
                encoding = tiktoken.Encoding(
                    name, pat_str=pat_str, mergeable_ranks=ranks, special_tokens=special_tokens
                )
                return _tiktoken_counter(encoding.encode_ordinary)
    return None


def _tiktoken_counter(encode: Callable[[str], list[int]]) -> TextCounter:
    def count(text: str) -> int:
        if len(text) > _EXACT_LIMIT:
            return heuristic_count(text)
        try:
            return len(encode(text))
        except Exception:  # a tokenizer quirk must not fail a request
            return heuristic_count(text)

    return count


_counter: TextCounter | None = None
_counter_lock = threading.Lock()


def text_counter() -> TextCounter:
    """The process's text counter: tiktoken if loadable from disk, else the heuristic.

    Resolved on first use and kept; call it once at startup to pay the loading cost there.
    """
    global _counter
    counter = _counter
    if counter is None:
        with _counter_lock:
            if _counter is None:
                _counter = load_tiktoken_counter() or heuristic_count
            counter = _counter
    return counter


def set_text_counter(counter: TextCounter | None) -> None:
    """Replace the process's text counter; None resolves it again on next use."""
    global _counter
    with _counter_lock:
        _counter = counter


# --- reading request shapes ------------------------------------------------------------------


def _str(value: Any, count: TextCounter) -> int:
    return count(value) if isinstance(value, str) else 0


def _json(value: Any, count: TextCounter) -> int:
    """Tokens of a JSON value (tool definitions, schemas, tool inputs) as its JSON text."""
    if not value:
        return 0
    try:
        text = orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):  # e.g. integers past 64 bits, deep nesting
        return 0
    return count(text.decode())


def _image(part: dict[str, Any]) -> int:
    detail = part.get("detail")
    url = part.get("image_url")
    if detail is None and isinstance(url, dict):
        detail = url.get("detail")
    return LOW_DETAIL_IMAGE_TOKENS if detail == "low" else IMAGE_TOKENS


_TEXT_TYPES: Final = frozenset({"text", "input_text", "output_text", "summary_text"})
_IMAGE_TYPES: Final = frozenset({"image_url", "image", "input_image"})
_FILE_TYPES: Final = frozenset({"input_audio", "audio", "file", "input_file", "document"})
# fields of other parts and items that carry text: tool_use/function_call name and arguments,
# tool_result and message content, function_call_output, thinking, refusal, reasoning summary
_TEXT_KEYS: Final = (
    "text",
    "content",
    "name",
    "arguments",
    "output",
    "thinking",
    "refusal",
    "summary",
)


def _content(value: Any, count: TextCounter, depth: int = 0) -> int:
    """Tokens of a content value: a string, a part, or a list of parts."""
    if isinstance(value, str):
        return count(value)
    if isinstance(value, list):
        if depth >= _MAX_DEPTH:
            return 0
        return sum([_part(part, count, depth + 1) for part in value])
    if isinstance(value, dict):
        return _part(value, count, depth + 1)
    return 0


def _part(part: Any, count: TextCounter, depth: int) -> int:
    if isinstance(part, str):
        return count(part)
    if not isinstance(part, dict) or depth >= _MAX_DEPTH:
        return 0
    kind = part.get("type")
    if kind in _TEXT_TYPES:
        text = part.get("text")
        if isinstance(text, str):
            return count(text)
    elif kind in _IMAGE_TYPES:
        return _image(part)
    elif kind in _FILE_TYPES:
        source = part.get("source")  # an Anthropic document may be plain text
        if isinstance(source, dict) and source.get("type") == "text":
            return _content(source.get("data"), count, depth)
        if isinstance(source, dict) and source.get("type") == "content":
            return _content(source.get("content"), count, depth)
        return FILE_TOKENS
    total = 0
    for key in _TEXT_KEYS:
        value = part.get(key)
        if value is not None:
            total += _content(value, count, depth)
    tool_input = part.get("input")  # tool_use
    if isinstance(tool_input, dict):
        total += _json(tool_input, count)
    return total


def _tool_calls(message: dict[str, Any], count: TextCounter) -> int:
    total = 0
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            if isinstance(call, dict):
                total += _function(call.get("function"), count)
    return total + _function(message.get("function_call"), count)


def _function(function: Any, count: TextCounter) -> int:
    if not isinstance(function, dict):
        return 0
    return _str(function.get("name"), count) + _str(function.get("arguments"), count)


def _messages(messages: Any, count: TextCounter) -> int:
    if not isinstance(messages, list):
        return 0
    total = 0
    for message in messages:
        total += MESSAGE_OVERHEAD
        if isinstance(message, dict):
            content = message.get("content")
            total += count(content) if type(content) is str else _content(content, count)
            name = message.get("name")
            if isinstance(name, str):
                total += count(name) + 1
            if "tool_calls" in message or "function_call" in message:
                total += _tool_calls(message, count)
    return total


def _schema(response_format: Any, count: TextCounter) -> int:
    if isinstance(response_format, dict):  # chat's response_format, responses' text.format
        schema = response_format.get("json_schema", response_format.get("schema"))
        return _json(schema, count)
    return 0


def _chat_input(body: dict[str, Any], count: TextCounter) -> int:
    total = REQUEST_OVERHEAD + _messages(body.get("messages"), count)
    total += _json(body.get("tools"), count) + _json(body.get("functions"), count)
    return total + _schema(body.get("response_format"), count)


def _messages_input(body: dict[str, Any], count: TextCounter) -> int:
    total = REQUEST_OVERHEAD + _content(body.get("system"), count)
    total += _messages(body.get("messages"), count)
    return total + _json(body.get("tools"), count)


def _responses_input(body: dict[str, Any], count: TextCounter) -> int:
    total = REQUEST_OVERHEAD + _str(body.get("instructions"), count)
    items = body.get("input")
    if isinstance(items, str):
        total += MESSAGE_OVERHEAD + count(items)
    elif isinstance(items, list):
        for item in items:
            total += MESSAGE_OVERHEAD + _part(item, count, 1)
    total += _json(body.get("tools"), count)
    text = body.get("text")
    if isinstance(text, dict):
        total += _schema(text.get("format"), count)
    return total


def _prompts(value: Any, count: TextCounter) -> tuple[int, int]:
    """Tokens and number of prompts of a completions ``prompt`` or an embeddings ``input``:
    a string, a list of strings, a token array, or a list of token arrays."""
    if isinstance(value, str):
        return count(value), 1
    if not isinstance(value, list) or not value:
        return 0, 0
    if isinstance(value[0], int):
        return len(value), 1  # one token array: one token per int
    tokens = 0
    for item in value:
        if isinstance(item, str):
            tokens += count(item)
        elif isinstance(item, list):
            tokens += len(item)
    return tokens, len(value)


def _prompt_count(prompt: Any) -> int:
    """How many prompts a completions request holds (each gets its own answers)."""
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
        return len(prompt)
    return 1


def _completions_input(body: dict[str, Any], count: TextCounter) -> int:
    return _prompts(body.get("prompt"), count)[0] + _str(body.get("suffix"), count)


def _embeddings_input(body: dict[str, Any], count: TextCounter) -> int:
    return _prompts(body.get("input"), count)[0]


def _other_input(body: dict[str, Any], count: TextCounter) -> int:
    """An endpoint we do not know: count the usual places text is found."""
    total = _messages(body.get("messages"), count) + _json(body.get("tools"), count)
    for key in ("system", "instructions", "input", "prompt"):
        total += _content(body.get(key), count)
    return total


_INPUT: Final[dict[Endpoint, Callable[[dict[str, Any], TextCounter], int]]] = {
    Endpoint.CHAT: _chat_input,
    Endpoint.MESSAGES: _messages_input,
    Endpoint.COMPLETIONS: _completions_input,
    Endpoint.RESPONSES: _responses_input,
    Endpoint.EMBEDDINGS: _embeddings_input,
}
_OUTPUT_LIMITS: Final[dict[Endpoint, tuple[str, ...]]] = {
    Endpoint.CHAT: ("max_completion_tokens", "max_tokens"),
    Endpoint.MESSAGES: ("max_tokens",),
    Endpoint.COMPLETIONS: ("max_tokens",),
    Endpoint.RESPONSES: ("max_output_tokens",),
    Endpoint.EMBEDDINGS: (),
}
_ANY_LIMIT: Final = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def _endpoint(endpoint: str) -> Endpoint | None:
    """The endpoint a path names, more tolerantly than ``Endpoint.parse`` (estimates run on
    any path a proxied request may have); None for one we do not know."""
    path = endpoint.rstrip("/")  # tolerate "chat/completions", "/v1/embeddings/"
    if not path.startswith("/v1/"):
        path = "/v1/" + path.lstrip("/")
    return Endpoint.parse(path)


def _count(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None  # not bool, not negative


# --- the estimates ---------------------------------------------------------------------------


def estimate_input_tokens(
    endpoint: str, body: dict[str, Any], *, count: TextCounter | None = None
) -> int:
    """Input tokens of one request ``body`` sent to ``endpoint`` (``/v1/chat/completions``,
    ``/v1/messages``, ``/v1/completions``, ``/v1/responses``, ``/v1/embeddings``).

    ``count`` counts a text's tokens; by default :func:`text_counter`.
    """
    if not isinstance(body, dict):
        return 0
    known = _endpoint(endpoint)
    read = _INPUT[known] if known is not None else _other_input
    return read(body, count or text_counter())


def estimate_output_tokens(endpoint: str, body: dict[str, Any]) -> int:
    """Output tokens one request may produce: its limit (``max_completion_tokens``,
    ``max_tokens`` or ``max_output_tokens``) or :data:`DEFAULT_OUTPUT_TOKENS`, times its
    choices (``n``, ``best_of``) and, for completions, its prompts. Embeddings produce none."""
    known = _endpoint(endpoint)
    if known == Endpoint.EMBEDDINGS or not isinstance(body, dict):
        return 0
    limit: int | None = None
    for key in _OUTPUT_LIMITS[known] if known is not None else _ANY_LIMIT:
        value = body.get(key)
        if type(value) is int and value >= 0:
            limit = value
            break
    if limit is None:
        limit = (
            COMPLETIONS_DEFAULT_MAX_TOKENS
            if known == Endpoint.COMPLETIONS
            else DEFAULT_OUTPUT_TOKENS
        )
    if known == Endpoint.CHAT:
        n = body.get("n")
        return limit * min(n, MAX_CHOICES) if type(n) is int and n > 1 else limit
    if known == Endpoint.COMPLETIONS:
        choices = max(_count(body.get("n")) or 1, _count(body.get("best_of")) or 1)
        return limit * min(choices, MAX_CHOICES) * _prompt_count(body.get("prompt"))
    return limit


def estimate_tokens(
    endpoint: str, body: dict[str, Any], *, count: TextCounter | None = None
) -> int:
    """Tokens one request will use at most, as far as can be told before sending it: its
    input plus the output it may produce (see :func:`estimate_output_tokens`)."""
    return estimate_input_tokens(endpoint, body, count=count) + estimate_output_tokens(
        endpoint, body
    )
