"""Inline batches (``{"requests": [{custom_id, params}, ...]}``): how their refusals read.

A request's problems are found by the same line validation as a batch file's; here a line
number becomes the request's index and a ``body`` parameter its ``params``, as in
Anthropic's Message Batches: ``requests[2].params.max_tokens: …``.
"""

from __future__ import annotations

from collections.abc import Sequence

from batchway.core.models import BatchError
from batchway.errors import InvalidRequest

__all__ = ["inline_param", "refused_requests"]

_SHOWN = 10  # problems named in one message


def inline_param(line: int | None, param: str | None) -> str:
    """Where a problem of request ``line`` (1-based) is, in the inline body."""
    if line is None:
        return "requests"
    prefix = f"requests[{line - 1}]"
    if param is None:
        return prefix
    if param.startswith("body"):
        return prefix + ".params" + param[len("body") :]
    return f"{prefix}.{param}"


def refused_requests(errors: Sequence[BatchError], count: int) -> InvalidRequest:
    """The 400 for inline requests with problems: each named by its index (up to a cap),
    then how many more there were; ``param`` is where the first one is."""
    shown = [f"{inline_param(e.line, e.param)}: {e.message}" for e in errors[:_SHOWN]]
    more = count - len(shown)
    message = "; ".join(shown) + (f"; and {more} more problems" if more > 0 else "")
    return InvalidRequest(message, param=inline_param(errors[0].line, errors[0].param))
