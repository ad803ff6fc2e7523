"""The emulator's one exception hierarchy.

Each class knows how it is rendered: its HTTP status and its error type. Runtime API errors render as
Lambda's `{"errorMessage", "errorType"}`; Invoke API errors render as AWS service errors
(`{"Type": "User", "message"}` with an `X-Amzn-ErrorType` header) so that botocore raises its modelled
exception. Nothing here imports aiohttp: the HTTP layers turn these into responses.
"""

from __future__ import annotations

import json
from typing import ClassVar

RESPONSE_SIZE_LIMIT = 6 * 1024 * 1024 + 100  # what the Runtime API accepts from a runtime
SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024  # what the Invoke API accepts for RequestResponse
ASYNC_PAYLOAD_LIMIT = 1024 * 1024  # and for Event
CLIENT_CONTEXT_LIMIT = 3583


class RieError(Exception):
    """Base of every error the emulator renders to a client."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "InternalServerError"
    default_message: ClassVar[str] = "Internal Server Error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(self.message)

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def body(self) -> bytes:
        return json.dumps({"errorMessage": self.message, "errorType": self.error_type}).encode()


# --- Runtime API (served to the function's process) -------------------------------------------


class RuntimeApiError(RieError):
    """An error answered to the runtime on the Runtime API."""


class InvalidStateTransition(RuntimeApiError):
    status = 403
    error_type = "InvalidStateTransition"

    def __init__(self, source: str, target: str) -> None:
        super().__init__(
            f"State transition from {source} to {target} failed for runtime. "
            "Error: State transition is not allowed"
        )


class InvalidRequestID(RuntimeApiError):
    status = 400
    error_type = "InvalidRequestID"
    default_message = "Invalid request ID"


class RequestEntityTooLarge(RuntimeApiError):
    status = 413
    error_type = "RequestEntityTooLarge"
    default_message = f"Exceeded maximum allowed payload size ({RESPONSE_SIZE_LIMIT} bytes)."


class TruncatedHTTPRequest(RuntimeApiError):
    status = 400
    error_type = "TruncatedHTTPRequest"
    default_message = "HTTP request detected as truncated"


class InvalidFunctionResponseMode(RuntimeApiError):
    status = 400
    error_type = "InvalidFunctionResponseMode"
    default_message = "Invalid function response mode"


class InternalServerError(RuntimeApiError):
    pass


class RouteNotFound(RuntimeApiError):
    status = 404
    error_type = "NotFound"
    default_message = "Not Found"


class RouteMethodNotAllowed(RuntimeApiError):
    status = 405
    error_type = "MethodNotAllowed"
    default_message = "Method Not Allowed"


# --- Invoke API (served to callers) -----------------------------------------------------------


class InvokeApiError(RieError):
    """An AWS service error of the Invoke API itself (not a function error)."""

    status = 500
    error_type = "ServiceException"
    default_message = "Internal error"
    extra: dict[str, str]

    def __init__(self, message: str | None = None, **extra: str) -> None:
        super().__init__(message)
        self.extra = extra

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "X-Amzn-ErrorType": self.error_type}

    def body(self) -> bytes:
        return json.dumps({"Type": "User", "message": self.message, **self.extra}).encode()


class ResourceNotFound(InvokeApiError):
    status = 404
    error_type = "ResourceNotFoundException"


class RequestTooLarge(InvokeApiError):
    status = 413
    error_type = "RequestEntityTooLargeException"


class InvalidRequestContent(InvokeApiError):
    status = 400
    error_type = "InvalidRequestContentException"


class TooManyRequests(InvokeApiError):
    status = 429
    error_type = "TooManyRequestsException"
    default_message = "Rate Exceeded."


class ServiceUnavailable(InvokeApiError):
    status = 503
    error_type = "ServiceException"
    default_message = "The emulator is shutting down"


class MethodNotAllowed(InvokeApiError):
    status = 405
    error_type = "MethodNotAllowedException"
    default_message = "Method not allowed"


class UnknownPath(InvokeApiError):
    status = 404
    error_type = "UnknownOperationException"
    default_message = "Unknown operation"


class RequestTimeout(InvokeApiError):
    status = 408
    error_type = "RequestTimeoutException"
    default_message = "The request head did not arrive in time"


def invoke_api_error(status: int, message: str) -> InvokeApiError:
    """The AWS error that goes with an HTTP status chosen below the handlers (by the HTTP parser,
    or for an unexpected failure); `status` is the status to answer with."""
    kind: type[InvokeApiError]
    if status == RequestTooLarge.status:
        kind = RequestTooLarge
    elif status == RequestTimeout.status:
        kind = RequestTimeout
    elif status == UnknownPath.status:
        kind = UnknownPath
    elif status == MethodNotAllowed.status:
        kind = MethodNotAllowed
    elif 400 <= status < 500:
        kind = InvalidRequestContent
    else:
        kind = InvokeApiError
    error = kind(message)
    if error.status != status:
        error.status = status  # type: ignore[misc]  # e.g. 417 or 504, under the nearest AWS type
    return error
