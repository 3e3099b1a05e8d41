"""The client dialects' wire shapes, each in one place.

- `openai`: Files and Batches objects (`wire`, `batches`) and the batch output and error
  lines (`results`);
- `anthropic`: Message Batches objects and their results lines (`wire`, `batches`);
- `azure`: what Azure OpenAI adds to OpenAI's wire: `api-version`, deployment paths, errors;
- `chat_messages`: OpenAI chat completions ↔ Anthropic messages, for providers that speak
  the other dialect: `requests`, `replies`, `streams`, and `errors` (an upstream error in
  the client's envelope);
- `inline`: how the refusal of inline batch requests reads (`requests[i].params…`);
- `sse`: reading and writing Server-Sent Events.

Dialects import only ``batchway.core`` and ``batchway.errors``: the HTTP layer, the
providers and the worker use them, never the other way round.
"""
