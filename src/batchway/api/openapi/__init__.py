"""The gateway's OpenAPI 3.1 document, served at ``/openapi.json``, and the API reference
page rendered from it at ``/docs``."""

from __future__ import annotations

from batchway.api.openapi.document import openapi_document
from batchway.api.openapi.routes import openapi_routes

__all__ = ["openapi_document", "openapi_routes"]
