"""The Lambda Runtime API, served to one environment's runtime on its own loopback endpoint.

Its endpoints are thin routes on top of `http11` (which owns the wire: framing, limits, trailers,
keep-alive): each validates first (method, request id, state, size) from the head alone, then
makes exactly one state transition once the body is complete, then answers. Every environment has
its own endpoint, so a runtime can only ever see and answer its own environment's invocations.
More APIs of the same environment (extensions, telemetry) are mounted on the same router.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import cast

from rie.http.protocol import Connection, Request, Router, Server
from rie.model.errors import (
    RESPONSE_SIZE_LIMIT,
    InvalidFunctionResponseMode,
    RequestEntityTooLarge,
    RieError,
    RouteMethodNotAllowed,
    RouteNotFound,
)
from rie.model.invocation import Invocation, State
from rie.sandbox.environment import Environment

log = logging.getLogger("rie")

BASE = "/2018-06-01"
PATH_NEXT = BASE + "/runtime/invocation/next"
PATH_INVOCATION = BASE + "/runtime/invocation/"  # + {id}/response or {id}/error
PATH_INIT_ERROR = BASE + "/runtime/init/error"

H_REQUEST_ID = "Lambda-Runtime-Aws-Request-Id"
H_DEADLINE = "Lambda-Runtime-Deadline-Ms"
H_ARN = "Lambda-Runtime-Invoked-Function-Arn"
H_TRACE = "Lambda-Runtime-Trace-Id"
H_CLIENT_CONTEXT = "Lambda-Runtime-Client-Context"
H_COGNITO = "Lambda-Runtime-Cognito-Identity"
H_TENANT = "Lambda-Runtime-Aws-Tenant-Id"
H_ERROR_TYPE = "lambda-runtime-function-error-type"
H_ERROR_BODY = "lambda-runtime-function-error-body"
H_RESPONSE_MODE = "lambda-runtime-function-response-mode"
ERROR_CAUSE_TYPE = "application/vnd.aws.lambda.error.cause+json"

STREAM_LIMIT = 200 * 1024 * 1024  # what Lambda allows a streamed response
_ERROR_TYPE_RE = re.compile(r"(Runtime|Function)\.[A-Z][a-zA-Z]+")
_ERROR_KEYS = ("errorMessage", "errorType", "stackTrace")
_ACCEPTED = b'{"status":"OK"}'
# the function error of an invocation the runtime could not be given (e.g. a header value that is
# not Latin-1) or whose answer could not be taken (an unexpected failure here)
HAND_OVER_ERROR = "Runtime.InternalError"


def sanitize_error_type(value: str | None) -> str:
    if value and _ERROR_TYPE_RE.fullmatch(value):
        return value
    return "Function.Unknown" if value and value.startswith("Function.") else "Runtime.Unknown"


def shape_error_body(body: bytes, content_type: str | None, error_type: str) -> bytes:
    """What the caller will see for a runtime's error post.

    An error-cause document keeps only the fields Lambda keeps; any other body goes on as it is;
    a missing body is built from the error-type header, as Lambda does.
    """
    if not body.strip():
        return json.dumps({"errorMessage": "", "errorType": error_type}).encode()
    if content_type is not None and content_type.split(";")[0].strip() == ERROR_CAUSE_TYPE:
        try:
            doc = json.loads(body)
        except ValueError:
            return body
        if isinstance(doc, dict):
            return json.dumps({k: doc[k] for k in _ERROR_KEYS if k in doc}).encode()
    return body


def _not_allowed(method: str) -> RouteMethodNotAllowed:
    return RouteMethodNotAllowed(f"Method {method} not allowed")


class _Route:
    """What the Runtime API's routes share: their environment and their 413."""

    __slots__ = ("env",)

    def __init__(self, env: Environment) -> None:
        self.env = env

    def too_large(self, req: Request, limit: int) -> RieError:
        return RequestEntityTooLarge()


class NextRoute(_Route):
    """`GET /runtime/invocation/next`: a long poll, answered with this environment's next event."""

    __slots__ = ()

    def check(self, conn: Connection, req: Request) -> RieError | None:
        return None if req.method == "GET" else _not_allowed(req.method)

    def handle(self, conn: Connection, req: Request) -> None:
        delivery = conn.context
        if not isinstance(delivery, _Delivery):  # made once per connection, not per `next`
            delivery = conn.context = _Delivery(conn, self.env)
        conn.park(req, delivery.on_gone)
        inv = self.env.request_next(delivery)
        if inv is not None:
            delivery(inv)


class _Delivery:
    """Hands an invocation to the runtime waiting in `next` on one connection."""

    __slots__ = ("conn", "env", "on_gone")

    def __init__(self, conn: Connection, env: Environment) -> None:
        self.conn = conn
        self.env = env
        self.on_gone = self.gone

    def gone(self) -> None:
        # a runtime that hung up while waiting in `next` must not be handed an invocation
        self.env.cancel_next(self)

    def alive(self) -> bool:
        """Whether the runtime is still there to be handed an invocation (it may have hung up
        in the same turn of the loop as the invocation came)."""
        return not self.conn.peer_closed()

    def __call__(self, inv: Invocation) -> None:
        try:
            r = inv.request
            headers = (
                f"{H_REQUEST_ID}: {inv.request_id}\r\n{H_DEADLINE}: {inv.deadline_ms}\r\n"
                f"{H_ARN}: {r.invoked_function_arn}\r\n{H_TRACE}: {r.trace_id}\r\n"
                f"Content-Type: {r.content_type}\r\n"
            )
            lines = 5
            if r.client_context is not None:
                headers += f"{H_CLIENT_CONTEXT}: {r.client_context}\r\n"
                lines += 1
            if r.cognito_identity is not None:
                headers += f"{H_COGNITO}: {r.cognito_identity}\r\n"
                lines += 1
            if r.tenant_id is not None:
                headers += f"{H_TENANT}: {r.tenant_id}\r\n"
                lines += 1
            if headers.count("\n") != lines or headers.count("\r") != lines:
                raise ValueError("a header value holds a line break")
            # rendered in full before anything is written: a failure leaves `next` unanswered
            self.conn.send(200, r.payload, None, headers=headers)
        except Exception as exc:
            self._hand_over_failed(inv, exc)

    def _hand_over_failed(self, inv: Invocation, exc: Exception) -> None:
        """The invocation cannot be given to the runtime: it ends here with a function error,
        and the runtime, which never saw it, goes on waiting in `next` for the next one."""
        log.error("invocation %s could not be handed to the runtime: %s", inv.request_id, exc)
        if not inv.final:
            inv.fail(HAND_OVER_ERROR, f"the invocation could not be handed to the runtime: {exc}")
        if self.conn.connected:
            following = self.env.request_next(self)
            if following is not None:
                self(following)


class PingRoute(_Route):
    __slots__ = ()

    def check(self, conn: Connection, req: Request) -> RieError | None:
        return None if req.method == "GET" else _not_allowed(req.method)

    def handle(self, conn: Connection, req: Request) -> None:
        conn.send(200, b"pong", content_type="text/plain", close=not req.keep_alive)


class InitErrorRoute(_Route):
    """`POST /runtime/init/error`."""

    __slots__ = ()

    def check(self, conn: Connection, req: Request) -> RieError | None:
        return None if req.method == "POST" else _not_allowed(req.method)

    def handle(self, conn: Connection, req: Request) -> None:
        error_type = sanitize_error_type(req.headers.get(H_ERROR_TYPE))
        body = shape_error_body(bytes(req.body), req.headers.get("content-type"), error_type)
        self.env.init_error(error_type, body)
        conn.send(202, _ACCEPTED, close=not req.keep_alive)


class InvocationRoute(_Route):
    """`POST /runtime/invocation/{id}/response` (buffered or streamed) and `.../{id}/error`."""

    __slots__ = ()

    def check(self, conn: Connection, req: Request) -> RieError | None:
        request_id, _, action = req.path[len(PATH_INVOCATION) :].partition("/")
        if action not in ("response", "error"):
            return RouteNotFound()
        if req.method != "POST":
            return _not_allowed(req.method)
        try:
            if action == "error":
                self.env.lookup(request_id, State.ERRORED)
                return None
            inv = self.env.lookup(request_id, State.RESPONDED)
            mode = req.headers.get(H_RESPONSE_MODE)
            if mode is not None:
                if mode != "streaming":
                    return InvalidFunctionResponseMode()
                inv.start_stream()
                inv.stream_content_type = req.headers.get("content-type")
                req.limit = STREAM_LIMIT
                req.sink = _StreamCollector(inv, conn)
        except RieError as error:
            return error
        return None

    def handle(self, conn: Connection, req: Request) -> None:
        request_id, _, action = req.path[len(PATH_INVOCATION) :].partition("/")
        try:
            if req.sink is not None:
                _end_stream(req, cast(_StreamCollector, req.sink))
            elif action == "response":
                self.env.lookup(request_id, State.RESPONDED).respond(bytes(req.body))
            else:
                error_type = sanitize_error_type(req.headers.get(H_ERROR_TYPE))
                inv = self.env.lookup(request_id, State.ERRORED)
                inv.error(
                    shape_error_body(bytes(req.body), req.headers.get("content-type"), error_type),
                    error_type,
                )
        except RieError:
            raise
        except Exception as exc:
            # the runtime's answer is lost: its invocation ends now rather than at its timeout;
            # the runtime gets 500 (a container error: it is expected to exit, which resets the
            # environment) from http11
            running = self.env.running.get(request_id)
            if running is not None and not running.final:
                message = f"the runtime's answer could not be taken: {exc!r}"
                running.fail(HAND_OVER_ERROR, message)
            raise
        conn.send(202, _ACCEPTED, close=not req.keep_alive)

    def too_large(self, req: Request, limit: int) -> RieError:
        """A response over the limit: the caller gets Function.ResponseSizeTooLarge at once."""
        request_id, _, action = req.path[len(PATH_INVOCATION) :].partition("/")
        inv = self.env.running.get(request_id) if action == "response" else None
        if inv is not None and inv.state in (State.RUNNING, State.STREAMING):
            message = (
                f"Response payload size exceeded maximum allowed payload size ({limit} bytes)."
            )
            body = json.dumps(
                {"errorMessage": message, "errorType": "Function.ResponseSizeTooLarge"}
            ).encode()
            inv.fail("Function.ResponseSizeTooLarge", body=body)
        return RequestEntityTooLarge()


def _end_stream(req: Request, collector: _StreamCollector) -> None:
    inv = collector.inv
    collector.release()
    if inv.state is not State.STREAMING:
        return  # ended meanwhile (timeout): the runtime's late trailers change nothing
    error_type = req.headers.get(H_ERROR_TYPE)
    if error_type is not None:
        error_type = sanitize_error_type(error_type)
        try:
            body = base64.b64decode(req.headers.get(H_ERROR_BODY, ""), validate=True)
        except (binascii.Error, ValueError):
            body = b""
        inv.fail_stream(shape_error_body(body, None, error_type), error_type)
    else:
        inv.end_stream(collector.body())


class _StreamCollector:
    """Passes a streamed response on to a streaming caller, or gathers it for a buffered one."""

    __slots__ = ("_chunks", "_conn", "inv")

    def __init__(self, inv: Invocation, conn: Connection) -> None:
        self.inv = inv
        self._chunks: list[bytes] = []
        self._conn: Connection | None = conn
        inv.on_hold = self._hold

    def _hold(self, hold: bool) -> None:
        if self._conn is not None:
            self._conn.hold(hold)

    def release(self) -> None:
        """The stream is over: the connection is read again (its next request is the runtime's
        `next`), whatever its caller still asks."""
        self.inv.on_hold = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.hold(False)

    @property
    def limit(self) -> int:
        # a stream read by a buffered caller can be no larger than a buffered response
        return RESPONSE_SIZE_LIMIT if self.inv.on_chunk is None else STREAM_LIMIT

    def add(self, data: bytes) -> None:
        if self.inv.on_chunk is not None:
            self.inv.stream_chunk(data)
        else:
            self._chunks.append(data)

    def body(self) -> bytes:
        return b"".join(self._chunks)

    def cut_short(self) -> None:
        self.release()
        if self.inv.state is State.STREAMING:
            message = "Runtime closed the response stream before it was complete"
            body = json.dumps(
                {"errorMessage": message, "errorType": "Runtime.TruncatedResponse"}
            ).encode()
            self.inv.fail_stream(body, "Runtime.TruncatedResponse")


def router(env: Environment) -> Router:
    """The Runtime API's routes for one environment. Other APIs served on the same endpoint
    (extensions, telemetry) add their own routes to the router this returns."""
    r = Router()
    r.add(PATH_NEXT, NextRoute(env))
    r.add(PATH_INIT_ERROR, InitErrorRoute(env))
    r.add("/ping", PingRoute(env))
    r.add_prefix(PATH_INVOCATION, InvocationRoute(env))
    return r


class RuntimeEndpoint(Server):
    """One environment's Runtime API server (the `Endpoint` its environment holds)."""


async def bind(
    env: Environment,
    host: str,
    port: int,
    mounts: Sequence[Callable[[Environment, Router], None]] = (),
) -> RuntimeEndpoint:
    """Serve `env`'s Runtime API on host:port (a free port if that one is taken); each of
    `mounts` adds more routes (another API of the same environment) to its router."""
    routes = router(env)
    for mount in mounts:
        mount(env, routes)
    config = env.config
    endpoint = RuntimeEndpoint(routes, config.request_head_timeout_s, config.keepalive_timeout_s)
    await endpoint.start(host, port)
    return endpoint
