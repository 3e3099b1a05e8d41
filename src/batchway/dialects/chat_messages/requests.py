"""Request translation between OpenAI Chat Completions and Anthropic Messages (spec §6.5, §6.6).

Both directions of a request body live here; replies (answers, ids, usage, error bodies) are in
``replies`` and streams in ``streams``.

Pure functions over JSON-shaped dicts: no I/O. A request field with no equivalent on the
other side raises ``UntranslatableRequest`` with ``param`` naming it, unless it is listed in
``IGNORED_CHAT_FIELDS`` / ``IGNORED_MESSAGES_FIELDS`` (sampling extras, logging and caching
hints that Anthropic's own OpenAI compatibility layer ignores too). ``null`` values count as
absent, and a body of the wrong shape raises ``UntranslatableRequest`` rather than crash.

Decisions on points the spec leaves open:

- ``reasoning_effort`` (other than ``"none"``), ``verbosity`` (other than ``"medium"``),
  ``audio``, ``modalities`` with audio, ``web_search_options``, ``moderation`` and the
  legacy ``functions``/``function_call`` raise: dropping them would change the answer.
  ``prediction`` is ignored, because it only speeds decoding up.
- ``user`` (or else ``safety_identifier``) becomes ``metadata.user_id``. Message ``name``s
  and image ``detail`` are dropped, as the compatibility layer does.
- Whitespace-only stop sequences are dropped: Anthropic does not honour them.
- Messages → Chat sends ``max_tokens`` by default: many OpenAI-compatible servers (older
  vLLM and llama.cpp) know only that one. OpenAI's reasoning models need
  ``max_tokens_key="max_completion_tokens"``.
- ``strict`` on a function/tool is kept on both sides rather than ignored.
- ``top_k`` and a 5th stop sequence pass only with ``allow_extensions=True`` (vLLM accepts
  them), else they raise. ``thinking`` raises unless its type is ``"disabled"``. Thinking
  blocks in the history are dropped (Anthropic ignores earlier turns' thinking too), and so
  is ``cache_control`` (a caching hint).
- A ``tool_result`` with ``is_error: true`` becomes a tool message prefixed ``"Error: "``.
- Tool-call arguments that are not a JSON object raise in a request. In a response (already
  paid for) they are kept as ``{RAW_ARGUMENTS_KEY: "<raw string>"}``, which the reverse
  direction (``tool_call_from_tool_use``) turns back into the same string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from batchway.errors import UntranslatableRequest

__all__ = [
    "IGNORED_CHAT_FIELDS",
    "IGNORED_MESSAGES_FIELDS",
    "RAW_ARGUMENTS_KEY",
    "chat_to_messages_request",
    "messages_to_chat_request",
    "tool_call_from_tool_use",
]

JSON = dict[str, Any]

IGNORED_CHAT_FIELDS = frozenset(
    {
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "metadata",  # OpenAI's stored-completion tags, not Anthropic's metadata
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "response_format",
        "seed",
        "service_tier",
        "store",
        "stream_options",  # Anthropic streams always carry usage
        "top_logprobs",
    }
)
"""Chat Completions fields dropped when sending to an Anthropic model (spec §6.5)."""

IGNORED_MESSAGES_FIELDS = frozenset({"cache_control", "service_tier"})
"""Messages fields dropped when sending to an OpenAI-compatible model."""

RAW_ARGUMENTS_KEY = "_raw_arguments"
"""Key of a ``tool_use.input`` that holds tool-call arguments which were not a JSON object."""

_DATA_URL = re.compile(r"data:(?P<mime>[^;,]+)(?:;[^;,]*)*;base64,(?P<data>.*)", re.DOTALL)


def _fail(message: str, param: str) -> UntranslatableRequest:
    return UntranslatableRequest(message, param=param)


@contextmanager
def _malformed() -> Iterator[None]:
    """Report a body of the wrong shape as untranslatable rather than crash on it."""
    try:
        yield
    except (AttributeError, KeyError, TypeError) as exc:
        detail = f"{type(exc).__name__}: {exc}"
        raise UntranslatableRequest(f"the request body is malformed ({detail})") from exc


def _set(body: JSON) -> JSON:
    """The fields of ``body`` that are not null."""
    return {key: value for key, value in body.items() if value is not None}


# -- Chat Completions request -> Messages request ------------------------------------------


def chat_to_messages_request(body: JSON, *, default_max_tokens: int = 4096) -> JSON:
    """Translate a Chat Completions request body into a Messages request body."""
    with _malformed():
        return _chat_to_messages_request(body, default_max_tokens)


def _chat_to_messages_request(body: JSON, default_max_tokens: int) -> JSON:
    fields = _set(body)
    _check_chat_fields(fields)
    system, turns = _chat_messages_to_turns(fields.get("messages", []))
    out: JSON = {"model": fields.get("model")}
    max_tokens = fields.get("max_completion_tokens", fields.get("max_tokens"))
    out["max_tokens"] = default_max_tokens if max_tokens is None else max_tokens
    out["messages"] = turns
    if system:
        out["system"] = system
    stop = fields.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else list(stop)
        # Anthropic's compatibility layer honours only non-whitespace sequences
        kept = [s for s in stops if s.strip()]
        if kept:
            out["stop_sequences"] = kept
    if "temperature" in fields:
        out["temperature"] = min(fields["temperature"], 1.0)
    if "top_p" in fields:
        out["top_p"] = fields["top_p"]
    user = fields.get("user", fields.get("safety_identifier"))
    if user is not None:
        out["metadata"] = {"user_id": user}
    tools = [_chat_tool(tool, f"tools[{i}]") for i, tool in enumerate(fields.get("tools", []))]
    tool_choice = _chat_tool_choice(fields.get("tool_choice", "auto"))
    if tools:
        out["tools"] = tools
        if fields.get("parallel_tool_calls") is False and tool_choice["type"] != "none":
            tool_choice["disable_parallel_tool_use"] = True
        if "tool_choice" in fields or len(tool_choice) > 1:
            out["tool_choice"] = tool_choice
    elif tool_choice["type"] in ("any", "tool"):
        out["tool_choice"] = tool_choice  # OpenAI rejects this too; let the upstream say so
    if "stream" in fields:
        out["stream"] = fields["stream"]
    return out


_CHAT_HANDLED = frozenset(
    "model messages max_completion_tokens max_tokens stop temperature top_p n user"
    " safety_identifier tools tool_choice parallel_tool_calls stream modalities"
    " reasoning_effort verbosity".split()
)
_ANTHROPIC = "cannot be sent to an Anthropic model"


def _check_chat_fields(fields: JSON) -> None:
    for name in fields:
        if name not in _CHAT_HANDLED and name not in IGNORED_CHAT_FIELDS:
            raise _fail(f"{name} {_ANTHROPIC}: Messages has no equivalent", name)
    n = fields.get("n", 1)
    if n != 1:
        raise _fail(f"n={n} {_ANTHROPIC}: only n=1 is supported", "n")
    if any(m != "text" for m in fields.get("modalities", ["text"])):
        raise _fail(f"modalities {_ANTHROPIC}: only text output is supported", "modalities")
    effort = fields.get("reasoning_effort", "none")
    if effort != "none":
        raise _fail(f"reasoning_effort={effort} {_ANTHROPIC}", "reasoning_effort")
    verbosity = fields.get("verbosity", "medium")
    if verbosity != "medium":
        raise _fail(f"verbosity={verbosity} {_ANTHROPIC}", "verbosity")


def _chat_messages_to_turns(messages: list[JSON]) -> tuple[str, list[JSON]]:
    system: list[str] = []
    turns: list[JSON] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role")
        if role in ("system", "developer"):
            text = _chat_text(message.get("content"), f"{where}.content")
            system += [text] if text else []
        elif role == "user":
            _add_turn(turns, "user", _chat_user_content(message.get("content"), where))
        elif role == "assistant":
            _add_turn(turns, "assistant", _chat_assistant_content(message, where))
        elif role == "tool":
            result: JSON = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
            content = message.get("content")
            if isinstance(content, list):
                _chat_text(content, f"{where}.content")  # only text parts
                content = [{"type": "text", "text": part["text"]} for part in content]
            result["content"] = content or ""
            _add_turn(turns, "user", [result])
        else:
            raise _fail(f"role {role!r} {_ANTHROPIC}", f"{where}.role")
    for turn in turns:
        if turn["role"] == "user" and isinstance(turn["content"], list):
            # Anthropic wants a turn's tool results before anything else in it
            turn["content"].sort(key=lambda block: block.get("type") != "tool_result")
    return "\n".join(system), turns


def _add_turn(turns: list[JSON], role: str, content: str | list[JSON]) -> None:
    """Append a turn, merging it into the previous one if it has the same role."""
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"] = _blocks(turns[-1]["content"]) + _blocks(content)
    else:
        turns.append({"role": role, "content": content})


def _blocks(content: str | list[JSON]) -> list[JSON]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content


def _chat_text(content: Any, where: str) -> str:
    """The text of a string or a list of text parts (system, developer and tool messages)."""
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for j, part in enumerate(content):
        if part.get("type") != "text":
            raise _fail(f"{part.get('type')} parts {_ANTHROPIC} here", f"{where}[{j}].type")
        texts.append(part["text"])
    return "\n".join(texts)


def _chat_user_content(content: Any, where: str) -> str | list[JSON]:
    if content is None or isinstance(content, str):
        return content or ""
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(part["image_url"]["url"], f"{where}.content[{j}]"))
        else:
            raise _fail(f"{kind} content parts {_ANTHROPIC}", f"{where}.content[{j}].type")
    return blocks


def _image_block(url: str, where: str) -> JSON:
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if match is None:
            raise _fail(f"images must be base64 data URLs or http(s) URLs: {where}", where)
        source = {"type": "base64", "media_type": match["mime"], "data": match["data"]}
        return {"type": "image", "source": source}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _fail(f"images must be base64 data URLs or http(s) URLs: {where}", where)


def _chat_assistant_content(message: JSON, where: str) -> str | list[JSON]:
    fields = _set(message)
    for name in ("audio", "function_call"):
        if name in fields:
            raise _fail(f"assistant {name} {_ANTHROPIC}", f"{where}.{name}")
    content = fields.get("content")
    if isinstance(content, str) and "tool_calls" not in fields and "refusal" not in fields:
        return content
    blocks: list[JSON] = []
    texts = [content] if isinstance(content, str) else []
    for j, part in enumerate(content if isinstance(content, list) else []):
        if part.get("type") not in ("text", "refusal"):
            raise _fail(f"{part.get('type')} parts {_ANTHROPIC}", f"{where}.content[{j}].type")
        texts.append(part.get("text", part.get("refusal")))
    texts.append(fields.get("refusal", ""))
    blocks.extend({"type": "text", "text": text} for text in texts if text)
    for j, call in enumerate(fields.get("tool_calls", [])):
        at = f"{where}.tool_calls[{j}]"
        if call.get("type", "function") != "function":
            raise _fail(f"{call.get('type')} tool calls {_ANTHROPIC}", f"{at}.type")
        function = call["function"]
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise _fail(f"tool call arguments must be a JSON object: {at}", f"{at}.arguments")
        blocks.append(
            {"type": "tool_use", "id": call["id"], "name": function["name"], "input": arguments}
        )
    return blocks


def _chat_tool(tool: JSON, where: str) -> JSON:
    if tool.get("type") != "function":
        raise _fail(f"{tool.get('type')} tools {_ANTHROPIC}", f"{where}.type")
    function = tool["function"]
    out: JSON = {"name": function["name"]}
    if function.get("description") is not None:
        out["description"] = function["description"]
    out["input_schema"] = function.get("parameters") or {"type": "object"}
    if function.get("strict"):
        out["strict"] = True
    return out


def _chat_tool_choice(choice: Any) -> JSON:
    simple = {"auto": "auto", "required": "any", "none": "none"}
    if isinstance(choice, str) and choice in simple:
        return {"type": simple[choice]}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "tool", "name": choice["function"]["name"]}
    raise _fail(f"tool_choice {choice!r} {_ANTHROPIC}", "tool_choice")


# -- Messages request -> Chat Completions request ------------------------------------------

_OPENAI = "cannot be sent to an OpenAI-compatible model"
_MESSAGES_HANDLED = frozenset(
    "model messages max_tokens system stop_sequences temperature top_p top_k metadata"
    " tools tool_choice thinking stream".split()
)


def messages_to_chat_request(
    body: JSON, *, allow_extensions: bool = False, max_tokens_key: str = "max_tokens"
) -> JSON:
    """Translate a Messages request body into a Chat Completions request body.

    ``allow_extensions`` passes ``top_k`` and more than 4 stop sequences through, for
    servers that accept them (vLLM).
    """
    with _malformed():
        return _messages_to_chat_request(body, allow_extensions, max_tokens_key)


def _messages_to_chat_request(body: JSON, allow_extensions: bool, max_tokens_key: str) -> JSON:
    fields = _set(body)
    for name in fields:
        if name not in _MESSAGES_HANDLED and name not in IGNORED_MESSAGES_FIELDS:
            raise _fail(f"{name} {_OPENAI}: Chat Completions has no equivalent", name)
    out: JSON = {"model": fields.get("model"), "messages": _messages_to_chat(fields)}
    if "max_tokens" in fields:
        out[max_tokens_key] = fields["max_tokens"]
    stops = fields.get("stop_sequences", [])
    if len(stops) > 4 and not allow_extensions:
        raise _fail(f"{len(stops)} stop_sequences {_OPENAI}: at most 4 fit", "stop_sequences")
    if stops:
        out["stop"] = list(stops)
    for name in ("temperature", "top_p"):
        if name in fields:
            out[name] = fields[name]
    if "top_k" in fields:
        if not allow_extensions:
            raise _fail(f"top_k {_OPENAI}: Chat Completions has no top_k", "top_k")
        out["top_k"] = fields["top_k"]
    thinking = fields.get("thinking", {"type": "disabled"})
    if thinking.get("type") != "disabled":
        raise _fail(f"thinking type {thinking.get('type')!r} {_OPENAI}", "thinking")
    metadata = _set(fields.get("metadata", {}))
    for key in metadata:
        if key != "user_id":
            raise _fail(f"metadata.{key} {_OPENAI}", f"metadata.{key}")
    if "user_id" in metadata:
        out["user"] = metadata["user_id"]
    tools = [_messages_tool(tool, f"tools[{i}]") for i, tool in enumerate(fields.get("tools", []))]
    if tools:
        out["tools"] = tools
    if "tool_choice" in fields:
        _messages_tool_choice(fields["tool_choice"], out)
    if "stream" in fields:
        out["stream"] = fields["stream"]
        if fields["stream"]:
            out["stream_options"] = {"include_usage": True}
    return out


def _messages_to_chat(fields: JSON) -> list[JSON]:
    out: list[JSON] = []
    system = fields.get("system")
    if system is not None:
        text = system if isinstance(system, str) else _messages_text(system, "system")
        out.append({"role": "system", "content": text})
    for i, message in enumerate(fields.get("messages", [])):
        where = f"messages[{i}]"
        role, content = message.get("role"), message.get("content")
        if role not in ("user", "assistant"):
            raise _fail(f"role {role!r} {_OPENAI}", f"{where}.role")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
        elif role == "user":
            out.extend(_messages_user(content, f"{where}.content"))
        else:
            out.append(_messages_assistant(content, f"{where}.content"))
    return out


def _messages_text(blocks: list[JSON], where: str) -> str:
    texts = []
    for j, block in enumerate(blocks):
        if block.get("type") != "text":
            raise _fail(f"{block.get('type')} blocks {_OPENAI} here", f"{where}[{j}].type")
        texts.append(block["text"])
    return "\n".join(texts)


def _messages_user(blocks: list[JSON], where: str) -> list[JSON]:
    tool_messages: list[JSON] = []
    parts: list[JSON] = []
    for j, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "tool_result":
            content = block.get("content", "")
            at = f"{where}[{j}].content"
            text = content if isinstance(content, str) else _messages_text(content, at)
            if block.get("is_error"):
                text = f"Error: {text}"
            tool_messages.append(
                {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}
            )
        elif kind == "text":
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image_part(block["source"], f"{where}[{j}].source"))
        else:
            raise _fail(f"{kind} blocks {_OPENAI}", f"{where}[{j}].type")
    if len(parts) == 1 and parts[0]["type"] == "text":
        return [*tool_messages, {"role": "user", "content": parts[0]["text"]}]
    return tool_messages + ([{"role": "user", "content": parts}] if parts else [])


def _image_part(source: JSON, where: str) -> JSON:
    if source.get("type") == "base64":
        url = f"data:{source['media_type']};base64,{source['data']}"
    elif source.get("type") == "url":
        url = source["url"]
    else:
        raise _fail(f"{source.get('type')} image sources {_OPENAI}", f"{where}.type")
    return {"type": "image_url", "image_url": {"url": url}}


def _messages_assistant(blocks: list[JSON], where: str) -> JSON:
    texts: list[str] = []
    calls: list[JSON] = []
    for j, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "text":
            texts.append(block["text"])
        elif kind == "tool_use":
            calls.append(tool_call_from_tool_use(block))
        elif kind not in ("thinking", "redacted_thinking"):
            raise _fail(f"{kind} blocks {_OPENAI}", f"{where}[{j}].type")
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return message


def tool_call_from_tool_use(block: JSON) -> JSON:
    """A ``tool_use`` block as an OpenAI tool call."""
    tool_input = block.get("input") or {}
    raw = tool_input.get(RAW_ARGUMENTS_KEY) if len(tool_input) == 1 else None
    arguments = raw if isinstance(raw, str) else json.dumps(tool_input, ensure_ascii=False)
    function = {"name": block["name"], "arguments": arguments}
    return {"id": block["id"], "type": "function", "function": function}


def _messages_tool(tool: JSON, where: str) -> JSON:
    fields = _set(tool)
    if fields.get("type", "custom") != "custom":
        raise _fail(f"{fields['type']} tools {_OPENAI}", f"{where}.type")
    for name in fields:
        if name not in ("name", "description", "input_schema", "strict", "type", "cache_control"):
            raise _fail(f"tool field {name} {_OPENAI}", f"{where}.{name}")
    function: JSON = {"name": fields["name"]}
    if "description" in fields:
        function["description"] = fields["description"]
    function["parameters"] = fields.get("input_schema", {"type": "object"})
    if "strict" in fields:
        function["strict"] = fields["strict"]
    return {"type": "function", "function": function}


def _messages_tool_choice(choice: JSON, out: JSON) -> None:
    kind = choice.get("type")
    simple = {"auto": "auto", "any": "required", "none": "none"}
    if kind in simple:
        out["tool_choice"] = simple[kind]
    elif kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise _fail(f"tool_choice type {kind!r} {_OPENAI}", "tool_choice.type")
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False
