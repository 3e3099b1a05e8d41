"""The OpenAI Files + Batches engine behind `FakeOpenAIBatchAPI` and `FakeAzureBatchAPI`.

Spec sections 2, 3 and 5 of ``batch-apis.md``. The engine holds the files and batches, moves
batches through their status machine one *step* at a time and runs the lines of a batch with
the response builders of `_fake_openai`. It knows nothing of HTTP: the apps in
`fake_batch_apis` parse requests, call these methods and send what they return; every error
is an `ErrorReply`. All state is guarded by one lock, so the apps' event loop and test threads
(`advance_all`) can use it at the same time.
"""

from __future__ import annotations

import itertools
import os
import secrets
import string
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson

from batchway.core.endpoints import Endpoint
from batchway.testing._fake_openai import BUILDERS, Call, ErrorReply, JSONObject

_BASE62: Final = string.digits + string.ascii_letters
_DAY: Final = 86_400
_BATCH_FILE_TTL: Final = 30 * _DAY
_MAX_REPORTED_ERRORS: Final = 100

# OpenAI's list, a wider one than the gateway's; plain strings, as its error message shows them
OPENAI_ENDPOINTS: Final = frozenset(
    {
        Endpoint.RESPONSES.value,
        Endpoint.CHAT.value,
        Endpoint.EMBEDDINGS.value,
        Endpoint.COMPLETIONS.value,
        "/v1/moderations",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/videos",
    }
)
_UPLOAD_PURPOSES: Final = frozenset(
    {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}
)
_TERMINAL: Final = frozenset({"failed", "completed", "expired", "cancelled"})

# Azure reports every content filter category as not triggered.
_FILTERS_OK: Final[JSONObject] = {
    name: {"filtered": False, "severity": "safe"}
    for name in ("hate", "self_harm", "sexual", "violence")
}


def base62(n: int) -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(n))


def azure_error(status: int, code: str, message: str, param: str | None = None) -> ErrorReply:
    """An `ErrorReply` in Azure's envelope: ``{"error": {"code", "message"[, "param"]}}``."""
    reply = ErrorReply(status, message)
    error: JSONObject = {"code": code, "message": message}
    if param is not None:
        error["param"] = param
    reply.body = orjson.dumps({"error": error})
    return reply


def with_content_filters(body: JSONObject) -> JSONObject:
    """A chat or text completion with Azure's ``prompt_filter_results`` and per-choice
    ``content_filter_results`` added (not triggered)."""
    choices = body.get("choices")
    if not isinstance(choices, list):
        return body
    return {
        **body,
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": dict(_FILTERS_OK)}],
        "choices": [
            {**choice, "content_filter_results": dict(_FILTERS_OK)}
            if isinstance(choice, dict)
            else choice
            for choice in choices
        ],
    }


class BatchSettings(Protocol):
    """The settings of an app that the engine reads (and `fail_batches`/`refuse_batches`
    count down) at each call."""

    polls_per_step: int
    fail_batches: int
    refuse_batches: int
    expire_batches: bool
    max_lines: int | None
    file_pending_polls: int
    embedding_dimensions: int


@dataclass(slots=True)
class _File:
    obj: JSONObject
    content: bytes
    pending_polls: int = 0


@dataclass(slots=True)
class _Line:
    custom_id: str
    body: JSONObject
    model: str


@dataclass(slots=True)
class _Outcome:
    """What running one line gave: an HTTP answer (status, body) or a non-HTTP error code."""

    custom_id: str
    status: int | None
    body: JSONObject | None = None
    code: str | None = None


@dataclass(slots=True)
class _Batch:
    obj: JSONObject
    content: bytes
    fail: bool
    expire: bool
    output_ttl: int | None
    polls: int = 0
    lines: list[_Line] = field(default_factory=list)
    outcomes: list[_Outcome] = field(default_factory=list)


class OpenAIBatchEngine:
    """Files and batches of one fake service; ``azure`` switches on Azure's differences."""

    def __init__(self, settings: BatchSettings, *, azure: bool, deployments: Iterable[str]) -> None:
        self._settings = settings
        self.azure = azure
        self.deployments = frozenset(deployments)
        self._lock = threading.Lock()
        self._files: dict[str, _File] = {}
        self._batches: dict[str, _Batch] = {}
        self._seq = itertools.count(1)
        self._seq_prefix = os.urandom(4).hex()

    # -- views for tests -----------------------------------------------------------------------

    def files(self) -> dict[str, JSONObject]:
        with self._lock:
            return {fid: _copy(f.obj) for fid, f in self._files.items() if _alive(f)}

    def file_content(self, file_id: str) -> bytes:
        with self._lock:
            return self._file(file_id, found_as=404).content

    def batches(self) -> dict[str, JSONObject]:
        with self._lock:
            return {bid: _copy(b.obj) for bid, b in self._batches.items()}

    def advance_all(self, steps: int = 1) -> int:
        """Move every unfinished batch ``steps`` steps; the number of batches that moved."""
        moved = set()
        with self._lock:
            for _ in range(steps):
                for batch in self._batches.values():
                    if batch.obj["status"] not in _TERMINAL:
                        self._step(batch)
                        moved.add(batch.obj["id"])
        return len(moved)

    def finish_all(self) -> None:
        """Advance every batch until it reaches a terminal status."""
        while self.advance_all():
            pass

    def reset(self) -> None:
        with self._lock:
            self._files.clear()
            self._batches.clear()

    # -- files -----------------------------------------------------------------------------------

    def upload(self, fields: dict[str, str], upload: tuple[str, bytes] | None) -> JSONObject:
        if upload is None:
            raise self._error(400, "missing_required_parameter", "file: field required", "file")
        purpose = fields.get("purpose")
        if purpose is None:
            raise self._error(
                400, "missing_required_parameter", "purpose: field required", "purpose"
            )
        if purpose not in _UPLOAD_PURPOSES:
            message = f"'{purpose}' is not one of {sorted(_UPLOAD_PURPOSES)} - 'purpose'"
            raise self._error(400, "invalid_value", message, "purpose")
        filename, content = upload
        if purpose == "batch" and not filename.endswith(".jsonl"):
            raise self._error(
                400, "invalid_file_format", "Invalid file format for Batch API. Must be .jsonl"
            )
        ttl = self._expires_after(fields)
        if ttl is None and purpose == "batch" and not self.azure:
            ttl = _BATCH_FILE_TTL
        pending = max(self._settings.file_pending_polls, 0) if self.azure else 0
        with self._lock:
            file = self._add_file(content, filename, purpose, ttl)
            if pending:
                file.obj["status"] = "pending"
                file.pending_polls = pending
            return _copy(file.obj)

    def list_files(self, query: dict[str, str]) -> JSONObject:
        purpose = query.get("purpose")
        limit = _int_param(query, "limit", 10_000, 1, 10_000)
        newest_first = query.get("order", "desc") != "asc"
        with self._lock:
            items = [f.obj for f in self._files.values() if _alive(f)]
            if purpose is not None:
                items = [obj for obj in items if obj["purpose"] == purpose]
            if newest_first:
                items.reverse()
            return _page(items, query.get("after"), limit)

    def retrieve_file(self, file_id: str) -> JSONObject:
        with self._lock:
            file = self._file(file_id, found_as=404)
            if file.pending_polls > 0:
                file.pending_polls -= 1
                if file.pending_polls == 0:
                    # Seen "pending" on this retrieve; the next one answers "processed".
                    answer = _copy(file.obj)
                    file.obj["status"] = "processed"
                    return answer
            return _copy(file.obj)

    def delete_file(self, file_id: str) -> JSONObject:
        with self._lock:
            self._file(file_id, found_as=404)
            del self._files[file_id]
        return {"id": file_id, "object": "file", "deleted": True}

    # -- batches ---------------------------------------------------------------------------------

    def create_batch(self, body: JSONObject | None) -> JSONObject:
        if body is None:
            raise self._error(400, None, "We could not parse the JSON body of your request.")
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(body.get(name), str):
                raise self._error(
                    400,
                    "missing_required_parameter",
                    f"Missing required parameter: '{name}'.",
                    name,
                )
        endpoint: str = body["endpoint"]
        if _canonical(endpoint) not in OPENAI_ENDPOINTS or (
            not self.azure and endpoint not in OPENAI_ENDPOINTS
        ):
            message = (
                f"Invalid value: '{endpoint}'. Supported values are: {sorted(OPENAI_ENDPOINTS)}."
            )
            raise self._error(400, "invalid_value", message, "endpoint")
        window: str = body["completion_window"]
        if window != "24h" and not self.azure:  # Azure accepts it and fails the job instead
            message = f"Invalid value: '{window}'. Supported values are: '24h'."
            raise self._error(400, "invalid_value", message, "completion_window")
        metadata = body.get("metadata")
        if metadata is not None and not _valid_metadata(metadata):
            message = "metadata: at most 16 string pairs, keys ≤ 64 and values ≤ 512 characters."
            raise self._error(400, "invalid_value", message, "metadata")
        output_ttl = _output_ttl(body.get("output_expires_after"))
        input_file_id: str = body["input_file_id"]
        with self._lock:
            file = self._files.get(input_file_id)
            if file is None or not _alive(file):
                raise self._error(400, None, f"Cannot find file {input_file_id}.", "input_file_id")
            if file.obj["purpose"] != "batch":
                message = f"File {input_file_id} has purpose '{file.obj['purpose']}', not 'batch'."
                raise self._error(400, None, message, "input_file_id")
            if self._take("refuse_batches"):
                raise self._refusal()
            now = int(time.time())
            batch_id = f"batch_{uuid.uuid4()}" if self.azure else f"batch_{os.urandom(16).hex()}"
            no_file = "" if self.azure else None
            obj: JSONObject = {
                "id": batch_id,
                "object": "batch",
                "endpoint": endpoint,
                "model": None,
                "errors": None,
                "input_file_id": input_file_id,
                "completion_window": window,
                "status": "validating",
                "output_file_id": no_file,
                "error_file_id": no_file,
                "created_at": now,
                "in_progress_at": None,
                "expires_at": None if self.azure else now + _DAY,
                "finalizing_at": None,
                "completed_at": None,
                "failed_at": None,
                "expired_at": None,
                "cancelling_at": None,
                "cancelled_at": None,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "usage": None,
                "metadata": metadata,
            }
            batch = _Batch(
                obj=obj,
                content=file.content,
                fail=self._take("fail_batches"),
                expire=self._settings.expire_batches,
                output_ttl=output_ttl,
            )
            self._batches[batch_id] = batch
            return _copy(obj)

    def retrieve_batch(self, batch_id: str) -> JSONObject:
        """The batch after this poll: every ``polls_per_step`` polls move it one step."""
        with self._lock:
            batch = self._batch(batch_id)
            per_step = self._settings.polls_per_step
            if per_step > 0 and batch.obj["status"] not in _TERMINAL:
                batch.polls += 1
                if batch.polls >= per_step:
                    self._step(batch)
            return _copy(batch.obj)

    def list_batches(self, query: dict[str, str]) -> JSONObject:
        limit = _int_param(query, "limit", 20, 1, 100)
        with self._lock:
            items = [b.obj for b in reversed(self._batches.values())]
            return _page(items, query.get("after"), limit)

    def cancel_batch(self, batch_id: str) -> JSONObject:
        with self._lock:
            batch = self._batch(batch_id)
            obj = batch.obj
            status = obj["status"]
            if status in ("validating", "in_progress"):
                obj["status"] = "cancelling"
                obj["cancelling_at"] = int(time.time())
                batch.polls = 0
            elif status != "cancelling":
                message = f"Cannot cancel a batch with status '{status}'."
                raise self._error(400, None, message)
            return _copy(obj)

    # -- the status machine ----------------------------------------------------------------------

    def _step(self, batch: _Batch) -> None:
        obj = batch.obj
        status = obj["status"]
        now = int(time.time())
        batch.polls = 0
        if status == "validating":
            errors = self._validate(batch)
            if errors:
                obj.update(status="failed", failed_at=now)
                obj["errors"] = {"object": "list", "data": errors}
                return
            obj.update(status="in_progress", in_progress_at=now, model=batch.lines[0].model)
            obj["request_counts"] = {"total": len(batch.lines), "completed": 0, "failed": 0}
        elif status == "in_progress":
            if batch.expire:
                ran = _first_half(batch.lines)
                self._run(batch, ran)
                batch.outcomes += [
                    _Outcome(line.custom_id, None, code="batch_expired")
                    for line in batch.lines[len(ran) :]
                ]
                self._finish(batch, "expired", "expired_at", now)
                return
            self._run(batch, batch.lines)
            obj.update(status="finalizing", finalizing_at=now)
            obj["request_counts"] = self._counts(batch)
        elif status == "finalizing":
            self._finish(batch, "completed", "completed_at", now)
        elif status == "cancelling":
            # Lines already run are kept; lines never run appear in neither file.
            self._run(batch, _first_half(batch.lines))
            self._finish(batch, "cancelled", "cancelled_at", now)

    def _finish(self, batch: _Batch, status: str, stamp: str, now: int) -> None:
        obj = batch.obj
        obj.update({"status": status, stamp: now})
        obj["request_counts"] = self._counts(batch)
        obj["usage"] = _usage(batch.outcomes)
        if not batch.lines:  # cancelled while validating: nothing ran, no files
            return
        # Real services do not keep the input order: write the lines reversed.
        done = list(reversed(batch.outcomes))
        ok = [o for o in done if o.status is not None and 200 <= o.status < 300]
        bad = [o for o in done if o.status is None or not 200 <= o.status < 300]
        batch_id = obj["id"]
        if ok or self.azure:
            obj["output_file_id"] = self._result_file(batch, ok, f"{batch_id}_output.jsonl")
        if bad or self.azure:  # Azure always writes an error file, maybe zero bytes
            obj["error_file_id"] = self._result_file(batch, bad, f"{batch_id}_error.jsonl")

    def _result_file(self, batch: _Batch, outcomes: list[_Outcome], filename: str) -> str:
        lines = [orjson.dumps(self._output_line(o)) + b"\n" for o in outcomes]
        ttl = batch.output_ttl
        if ttl is None and not self.azure:
            ttl = _BATCH_FILE_TTL
        return str(self._add_file(b"".join(lines), filename, "batch_output", ttl).obj["id"])

    def _output_line(self, outcome: _Outcome) -> JSONObject:
        line_id = f"batch_req_{os.urandom(16).hex()}"
        if outcome.status is None:
            messages = {
                "batch_expired": "This request could not be executed before the completion "
                "window expired.",
            }
            code = outcome.code or "batch_expired"
            error = {"code": code, "message": messages.get(code, code)}
            return {"id": line_id, "custom_id": outcome.custom_id, "response": None, "error": error}
        request_id = str(uuid.uuid4()) if self.azure else f"req_{os.urandom(16).hex()}"
        response = {"status_code": outcome.status, "request_id": request_id, "body": outcome.body}
        return {"id": line_id, "custom_id": outcome.custom_id, "response": response, "error": None}

    def _counts(self, batch: _Batch) -> JSONObject:
        succeeded = sum(1 for o in batch.outcomes if o.status is not None and 200 <= o.status < 300)
        return {
            "total": len(batch.lines),
            "completed": succeeded,
            "failed": len(batch.outcomes) - succeeded,
        }

    # -- validation and execution ----------------------------------------------------------------

    def _validate(self, batch: _Batch) -> list[JSONObject]:
        """Parse the input file into ``batch.lines``; the BatchErrors (empty when valid)."""
        errors: list[JSONObject] = []
        if self.azure and batch.obj["completion_window"] != "24h":
            message = "The completion window must be '24h'."
            return [_batch_error("invalid_request", message, "completion_window")]
        raw_lines = batch.content.split(b"\n")
        if raw_lines and not raw_lines[-1].strip():
            raw_lines.pop()  # a trailing newline (or trailing blank line) ends the file
        if not raw_lines:
            return [_batch_error("empty_file", "The input file is empty.")]
        endpoint = _canonical(batch.obj["endpoint"]) if self.azure else batch.obj["endpoint"]
        seen: set[str] = set()
        first_model: str | None = None
        lines: list[_Line] = []
        for number, raw in enumerate(raw_lines, start=1):
            line, problem = self._parse_line(raw, number, endpoint, seen)
            if problem is None and line is not None:
                if first_model is None:
                    first_model = line.model
                if line.model != first_model:
                    message = (
                        f"The model '{line.model}' differs from the model '{first_model}' of "
                        "the previous lines: a batch uses one model."
                    )
                    problem = _batch_error("model_mismatch", message, "body.model", number)
                elif self.azure and line.model not in self.deployments:
                    message = (
                        f"The deployment '{line.model}' does not exist or is not a batch "
                        "deployment."
                    )
                    problem = _batch_error("model_not_found", message, "body.model", number)
            if problem is not None:
                errors.append(problem)
            elif line is not None:
                lines.append(line)
        if errors:
            return errors[:_MAX_REPORTED_ERRORS]
        limit = self._settings.max_lines
        if limit is not None and len(lines) > limit:
            message = f"The input file has {len(lines)} requests; the limit is {limit}."
            return [_batch_error("too_many_tasks", message)]
        if batch.fail:
            message = (
                f"Enqueued token limit reached for {first_model} in organization org-fake. "
                "Limit: 90,000 enqueued tokens. Please try submitting an equal or smaller batch "
                "later."
            )
            return [_batch_error("token_limit_exceeded", message)]
        batch.lines = lines
        return []

    def _parse_line(
        self, raw: bytes, number: int, endpoint: str, seen: set[str]
    ) -> tuple[_Line | None, JSONObject | None]:
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError:
            message = "This line is not parseable as valid JSON."
            return None, _batch_error("invalid_json_line", message, None, number)
        if not isinstance(item, dict):
            message = "Each line must be a JSON object."
            return None, _batch_error("invalid_request", message, None, number)
        custom_id = item.get("custom_id")
        body = item.get("body")
        url = item.get("url")
        problem: tuple[str, str] | None = None
        if not isinstance(custom_id, str) or not custom_id:
            problem = ("custom_id", "Missing or invalid 'custom_id'.")
        elif item.get("method") != "POST":
            problem = ("method", "The 'method' must be 'POST'.")
        elif not isinstance(url, str):
            problem = ("url", "Missing or invalid 'url'.")
        elif not isinstance(body, dict):
            problem = ("body", "Missing or invalid 'body'.")
        elif not isinstance(body.get("model"), str):
            problem = ("body.model", "Missing or invalid 'body.model'.")
        if problem is not None:
            return None, _batch_error("invalid_request", problem[1], problem[0], number)
        assert isinstance(custom_id, str) and isinstance(url, str) and isinstance(body, dict)
        if (_canonical(url) if self.azure else url) != endpoint:
            message = f"The url '{url}' does not match the batch endpoint '{endpoint}'."
            return None, _batch_error("url_mismatch", message, "url", number)
        if custom_id in seen:
            message = f"The custom_id '{custom_id}' is used by an earlier line."
            return None, _batch_error("duplicate_custom_id", message, "custom_id", number)
        seen.add(custom_id)
        return _Line(custom_id, body, body["model"]), None

    def _run(self, batch: _Batch, lines: list[_Line]) -> None:
        route = _canonical(batch.obj["endpoint"])[len("/v1") :]
        batch.outcomes = [self._execute(route, line) for line in lines]

    def _execute(self, route: str, line: _Line) -> _Outcome:
        seq = f"{self._seq_prefix}{next(self._seq):012x}"
        model = line.model
        try:
            builder = BUILDERS.get(route)
            if builder is None:
                raise ErrorReply(400, f"The fake does not run {route} batches.", param="url")
            if line.body.get("stream") is True:
                message = "Streaming is not supported in the Batch API."
                raise ErrorReply(400, message, param="body.stream")
            if model.startswith(("fake-400", "fake-always-400")):
                raise ErrorReply(400, f"Model {model} rejects every request (fake).", param="model")
            if model.startswith("fake-500") and not model.startswith("fake-500-then-ok"):
                message = "The server had an error while processing your request (fake)."
                raise ErrorReply(500, message, "server_error")
            body = builder(Call(line.body, model, seq, self._settings.embedding_dimensions))
        except ErrorReply as failure:
            return _Outcome(line.custom_id, failure.status, orjson.loads(failure.body))
        if self.azure:
            body = with_content_filters(body)
        return _Outcome(line.custom_id, 200, body)

    # -- helpers ---------------------------------------------------------------------------------

    def _add_file(self, content: bytes, filename: str, purpose: str, ttl: int | None) -> _File:
        now = int(time.time())
        file_id = f"file-{uuid.uuid4().hex}" if self.azure else f"file-{base62(22)}"
        obj: JSONObject = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": now,
            "expires_at": None if ttl is None else now + ttl,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
        }
        file = _File(obj, content)
        self._files[file_id] = file
        return file

    def _file(self, file_id: str, *, found_as: int) -> _File:
        file = self._files.get(file_id)
        if file is None or not _alive(file):
            if self.azure:
                raise azure_error(404, "404", f"File '{file_id}' not found.")
            raise ErrorReply(found_as, f"No such File object: {file_id}", param="id")
        return file

    def _batch(self, batch_id: str) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            if self.azure:
                raise azure_error(404, "404", f"Batch '{batch_id}' not found.")
            raise ErrorReply(404, f"No batch found with id '{batch_id}'.", param="batch_id")
        return batch

    def _take(self, name: str) -> bool:
        """Count down the ``fail_batches``/``refuse_batches`` setting: True when it was > 0."""
        left = int(getattr(self._settings, name))
        if left <= 0:
            return False
        setattr(self._settings, name, left - 1)
        return True

    def _refusal(self) -> ErrorReply:
        message = (
            "token_limit_exceeded: Enqueued token limit reached for this model. "
            "Please try submitting an equal or smaller batch later."
        )
        if self.azure:
            return azure_error(400, "token_limit_exceeded", message)
        return ErrorReply(400, message, code="token_limit_exceeded")

    def _error(
        self, status: int, code: str | None, message: str, param: str | None = None
    ) -> ErrorReply:
        if self.azure:
            return azure_error(status, code or "invalidPayload", message, param)
        return ErrorReply(status, message, param=param, code=code)

    def _expires_after(self, fields: dict[str, str]) -> int | None:
        anchor = fields.get("expires_after[anchor]", fields.get("expires_after.anchor"))
        seconds = fields.get("expires_after[seconds]", fields.get("expires_after.seconds"))
        if anchor is None and seconds is None:
            return None
        low = 14 * _DAY if self.azure else 3600
        if anchor != "created_at" or seconds is None or not seconds.isdigit():
            message = "expires_after needs anchor 'created_at' and an integer number of seconds."
            raise self._error(400, "invalid_value", message, "expires_after")
        if not low <= int(seconds) <= _BATCH_FILE_TTL:
            message = f"expires_after.seconds must be between {low} and {_BATCH_FILE_TTL}."
            raise self._error(400, "invalid_value", message, "expires_after.seconds")
        return int(seconds)


# -- module helpers ------------------------------------------------------------------------------


def _copy(obj: JSONObject) -> JSONObject:
    copied: JSONObject = orjson.loads(orjson.dumps(obj))
    return copied


def _alive(file: _File) -> bool:
    expires_at = file.obj["expires_at"]
    return expires_at is None or expires_at > time.time()


def _canonical(endpoint: str) -> str:
    """``/chat/completions`` and ``/v1/chat/completions`` name the same endpoint (Azure)."""
    return endpoint if endpoint.startswith("/v1/") else "/v1" + endpoint


def _first_half(lines: list[_Line]) -> list[_Line]:
    """The lines that had run when a batch was cancelled or expired: the first half, rounded
    up, in input order (deterministic)."""
    return lines[: (len(lines) + 1) // 2]


def _batch_error(
    code: str, message: str, param: str | None = None, line: int | None = None
) -> JSONObject:
    return {"code": code, "message": message, "param": param, "line": line}


def _usage(outcomes: list[_Outcome]) -> JSONObject:
    input_tokens = output_tokens = 0
    for outcome in outcomes:
        usage = outcome.body.get("usage") if outcome.status == 200 and outcome.body else None
        if isinstance(usage, dict):
            input_tokens += int(usage.get("prompt_tokens", usage.get("input_tokens")) or 0)
            output_tokens += int(usage.get("completion_tokens", usage.get("output_tokens")) or 0)
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def _page(items: list[JSONObject], after: str | None, limit: int) -> JSONObject:
    """The list envelope of ``items`` (already in answer order) after the ``after`` id."""
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    data = [_copy(item) for item in items[:limit]]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(items) > limit,
    }


def _int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    value = query.get(name)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise ErrorReply(400, f"'{name}' must be an integer from {low} to {high}.", param=name)
    return int(value)


def _valid_metadata(metadata: Any) -> bool:
    if not isinstance(metadata, dict) or len(metadata) > 16:
        return False
    return all(
        isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
        for k, v in metadata.items()
    )


def _output_ttl(value: Any) -> int | None:
    if value is None:
        return None
    seconds = value.get("seconds") if isinstance(value, dict) else None
    if (
        not isinstance(value, dict)
        or value.get("anchor") != "created_at"
        or not isinstance(seconds, int)
        or not 3600 <= seconds <= _BATCH_FILE_TTL
    ):
        message = "output_expires_after needs anchor 'created_at' and 3600 to 2592000 seconds."
        raise ErrorReply(400, message, param="output_expires_after")
    return seconds
