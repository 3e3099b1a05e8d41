"""The whole exception tree of batchway.

Each class declares the HTTP status it renders as, a dialect-neutral ``error_type``
and whether a caller may retry. A class raised without a message uses its docstring.

    GatewayError
    ├── RequestError                 400  the client sent something we cannot take
    │   ├── InvalidRequest           400
    │   ├── NotFound                 404
    │   ├── InvalidTransition        400  e.g. cancelling a finished batch
    │   └── PayloadTooLarge          413
    ├── AuthError                    401
    │   └── PermissionDenied         403
    ├── QuotaError                   429
    │   ├── RateLimited              429
    │   ├── BudgetExceeded           400
    │   └── StorageQuotaExceeded     400  a key's files would take more than its quota
    ├── UpstreamError                502  the provider failed the call
    │   ├── UpstreamAuthError        502  the provider refused the gateway's credentials
    │   ├── UpstreamTimeout          504  retryable
    │   ├── UpstreamUnavailable      503  retryable (5xx, connection errors)
    │   ├── UpstreamRateLimited      429  retryable, may carry retry_after
    │   └── UpstreamRejected         4xx  final
    │       └── UntranslatableRequest 400 a field has no equivalent in the provider's API
    ├── ConfigError                  500  bad configuration file (a startup error)
    ├── StoreError                   500
    └── ClientError                  500  the client commands (`batchway batches`) talking to a
        │                                 remote gateway: shown as one line, never rendered
        ├── UsageError               400  bad arguments, or a local file that cannot be used
        ├── GatewayUnreachable       503  retryable: no answer (bad host, refused, timed out)
        └── GatewayRefused           any  the gateway answered an error status (its own)
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BudgetExceeded",
    "ClientError",
    "ConfigError",
    "GatewayError",
    "GatewayRefused",
    "GatewayUnreachable",
    "InvalidRequest",
    "InvalidTransition",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "QuotaError",
    "RateLimited",
    "RequestError",
    "StorageQuotaExceeded",
    "StorageUnavailable",
    "StoreError",
    "UpstreamAuthError",
    "UpstreamError",
    "UpstreamRateLimited",
    "UpstreamRejected",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "UntranslatableRequest",
    "UsageError",
]


class GatewayError(Exception):
    """The gateway could not complete the request."""

    status_code = 500
    error_type = "server_error"
    retryable = False
    headers: dict[str, str] | None = None  # sent with the error (a request id, rate limits)

    def __init__(
        self, message: str | None = None, *, param: str | None = None, code: str | None = None
    ) -> None:
        self.message = message or (type(self).__doc__ or "").strip()
        self.param = param
        self.code = code
        super().__init__(self.message)


class RequestError(GatewayError):
    """The request is invalid."""

    status_code = 400
    error_type = "invalid_request_error"


class InvalidRequest(RequestError):
    """The request is invalid."""


class NotFound(RequestError):
    """No such object."""

    status_code = 404
    error_type = "not_found_error"


class InvalidTransition(RequestError):
    """The object is not in a state that allows this operation."""


class PayloadTooLarge(RequestError):
    """The request body is too large."""

    status_code = 413
    error_type = "request_too_large"


class AuthError(GatewayError):
    """Missing or invalid API key."""

    status_code = 401
    error_type = "authentication_error"


class PermissionDenied(AuthError):
    """This key may not do that."""

    status_code = 403
    error_type = "permission_error"


class QuotaError(GatewayError):
    """A quota was exceeded."""

    status_code = 429
    error_type = "rate_limit_error"


class RateLimited(QuotaError):
    """Rate limit exceeded."""

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: float = 1.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, code="rate_limit_exceeded")
        self.retry_after = retry_after
        self.headers = headers


class BudgetExceeded(QuotaError):
    """The key's budget cannot pay for what was asked (a batch refused at creation)."""

    status_code = 400
    error_type = "invalid_request_error"


class StorageQuotaExceeded(QuotaError):
    """The key's files would take more storage than its quota allows."""

    status_code = 400  # not 429: the SDKs retry 429, and retrying cannot make room
    error_type = "invalid_request_error"

    def __init__(self, message: str | None = None, *, param: str | None = None) -> None:
        super().__init__(message, param=param, code="storage_quota_exceeded")


class UpstreamError(GatewayError):
    """The upstream provider failed the call.

    ``status`` and ``body`` keep the provider's answer (when there was one) so that a
    batch line's error record can carry it; neither is ever shown on a gateway error page.
    """

    status_code = 502
    error_type = "api_error"

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        body: bytes | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.request_id = request_id
        self.retry_after = retry_after


class UpstreamAuthError(UpstreamError):
    """The upstream provider refused the gateway's credentials.

    An upstream 401 or 403 says the gateway's provider key is wrong (or lacks a right), not
    the client's gateway key: it is answered as a 502 naming the provider, never as the
    client's own authentication failure, and not retried.
    """

    error_type = "upstream_auth_error"

    def __init__(
        self,
        provider: str,
        *,
        status: int,
        body: bytes | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            f"provider {provider!r} refused the gateway's credentials (HTTP {status})",
            status=status,
            body=body,
            request_id=request_id,
        )
        self.code = self.error_type


class UpstreamTimeout(UpstreamError):
    """The upstream provider did not answer in time."""

    status_code = 504
    error_type = "timeout_error"
    retryable = True


class UpstreamUnavailable(UpstreamError):
    """The upstream provider is unavailable."""

    status_code = 503
    retryable = True


class UpstreamRateLimited(UpstreamError):
    """The upstream provider is rate limiting us."""

    status_code = 429
    error_type = "rate_limit_error"
    retryable = True


class UpstreamRejected(UpstreamError):
    """The upstream provider rejected the request."""

    status_code = 400
    error_type = "invalid_request_error"


class ConfigError(GatewayError):
    """The configuration is invalid."""


class StoreError(GatewayError):
    """The store failed."""


class StorageUnavailable(StoreError):
    """The object storage that holds files cannot be reached now; try again later."""

    status_code = 503
    retryable = True


class UntranslatableRequest(UpstreamRejected):
    """The request uses a field the provider's API has no equivalent for."""

    def __init__(self, message: str | None = None, *, param: str | None = None) -> None:
        super().__init__(message, status=400)
        self.param = param


class ClientError(GatewayError):
    """A client command could not be carried out against the remote gateway.

    Raised on the client's side of ``batchway batches`` (which drives a gateway over HTTP)
    and printed by the CLI as one line; the API never renders these.
    """


class UsageError(ClientError):
    """The command was given something it cannot use."""

    status_code = 400
    error_type = "invalid_request_error"


class GatewayUnreachable(ClientError):
    """The gateway could not be reached."""

    status_code = 503
    error_type = "api_error"
    retryable = True


class GatewayRefused(ClientError):
    """The gateway answered the call with an error; ``status_code`` is the status it sent."""

    def __init__(self, message: str | None = None, *, status: int) -> None:
        super().__init__(message)
        self.status_code = status
        self.retryable = status == 429 or status >= 500
