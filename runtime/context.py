"""The context object handed to the handler, field for field as awslambdaric builds it.

Owns `LambdaContext` and its parts (client context, client, Cognito identity), built from the
`next` response headers and the function's environment variables on every invocation.
"""

from __future__ import annotations

import os
import sys
import time

from runtime.errors import CONTEXT_UNMARSHAL_ERROR, FaultError

TYPE_CHECKING = False  # `typing` costs milliseconds at start-up; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

# the only W3C trace-context fields `context.w3c()` exposes
_W3C_FIELDS = ("traceparent", "tracestate", "baggage")


# awslambdaric's field order, which repr() shows
_CLIENT_FIELDS = (
    "installation_id",
    "app_title",
    "app_version_name",
    "app_version_code",
    "app_package_name",
)


def _fields_repr(obj: object) -> str:
    inner = ",".join(f"{name}={getattr(obj, name)}" for name in obj.__slots__)  # type: ignore[attr-defined]
    return f"{type(obj).__name__}([{inner}])"


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, identity_id: str | None = None, pool_id: str | None = None) -> None:
        self.cognito_identity_id = identity_id
        self.cognito_identity_pool_id = pool_id

    def __repr__(self) -> str:
        return _fields_repr(self)


class Client:
    __slots__ = _CLIENT_FIELDS

    def __init__(self, fields: dict[str, Any]) -> None:
        for name in self.__slots__:
            setattr(self, name, fields.get(name))

    def __repr__(self) -> str:
        return _fields_repr(self)


class ClientContext:
    __slots__ = ("custom", "env", "client")  # noqa: RUF023 (repr order)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.custom = fields.get("custom")
        self.env = fields.get("env")
        client = fields.get("client")
        self.client = Client(client) if client is not None else None

    def __repr__(self) -> str:
        return _fields_repr(self)


_ENV_NAMES = (
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
)
_env_snapshot: tuple[str | None, ...] | None = None


def freeze_environment() -> None:
    """Read the function's settings from the environment once, after init.

    They never change during the life of a Lambda environment, and reading five variables
    on every invocation is a measurable share of the runtime's per-invocation cost."""
    global _env_snapshot
    _env_snapshot = tuple(os.environ.get(name) for name in _ENV_NAMES)


def _parse_header(value: str, what: str) -> Any:
    from runtime.codec import loads

    try:
        return loads(value)
    except ValueError as e:
        raise FaultError(CONTEXT_UNMARSHAL_ERROR, f"Unable to parse {what} JSON: {e}") from None


class LambdaContext:
    """What the handler gets as its second argument."""

    def __init__(
        self,
        request_id: str,
        deadline_ms: int,
        invoked_function_arn: str | None,
        tenant_id: str | None = None,
        client_context: str | None = None,
        cognito_identity: str | None = None,
    ) -> None:
        self.aws_request_id = request_id
        (
            self.log_group_name,
            self.log_stream_name,
            self.function_name,
            self.memory_limit_in_mb,
            self.function_version,
        ) = _env_snapshot or tuple(os.environ.get(name) for name in _ENV_NAMES)
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id
        self._deadline_ms = deadline_ms
        self._w3c: dict[str, str] = {}
        self.client_context: ClientContext | None = None
        self.identity = CognitoIdentity()
        if client_context:
            fields = _parse_header(client_context, "Client Context")
            if isinstance(fields, dict):
                # W3C trace context travels inside the client context but is exposed on its own
                w3c = fields.pop("w3c", None)
                if isinstance(w3c, dict):
                    self._w3c = {k: w3c[k] for k in _W3C_FIELDS if isinstance(w3c.get(k), str)}
                self.client_context = ClientContext(fields)
        if cognito_identity:
            fields = _parse_header(cognito_identity, "Cognito Identity")
            self.identity = CognitoIdentity(
                fields.get("cognitoIdentityId"), fields.get("cognitoIdentityPoolId")
            )

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def w3c(self) -> dict[str, str]:
        """The W3C trace context (`traceparent`, `tracestate`, `baggage`) sent with the invoke."""
        return dict(self._w3c)

    def log(self, msg: object) -> None:
        """Write `msg` to the function's log as it is (no newline added)."""
        # by its full name: `runtime` may be the function's own module by now (runtime.handler)
        from runtime.log import current_sink

        sink = current_sink()
        if sink is not None:
            sink.log(str(msg))
        else:
            sys.stdout.write(str(msg))

    def __repr__(self) -> str:
        names = (
            "aws_request_id",
            "log_group_name",
            "log_stream_name",
            "function_name",
            "memory_limit_in_mb",
            "function_version",
            "invoked_function_arn",
            "client_context",
            "identity",
            "tenant_id",
        )
        inner = ",".join(f"{n}={getattr(self, n)}" for n in names)
        return f"{type(self).__name__}([{inner}])"
