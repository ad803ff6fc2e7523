"""The Lambda Runtime API, served to one environment's runtime on its own loopback endpoint.

Each handler validates first, then makes exactly one state transition, then renders. Because every
environment has its own endpoint (and its own aiohttp application), a runtime can only ever see and
answer its own environment's invocations.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re

from aiohttp import web
from aiohttp.typedefs import Handler

from .environment import Environment
from .errors import (
    RESPONSE_SIZE_LIMIT,
    InternalServerError,
    InvalidFunctionResponseMode,
    RequestEntityTooLarge,
    RieError,
    TruncatedHTTPRequest,
)
from .httpserver import Runner, listen
from .invocation import State

log = logging.getLogger("rie")

BASE = "/2018-06-01"
PATH_NEXT = BASE + "/runtime/invocation/next"
PATH_RESPONSE = BASE + "/runtime/invocation/{request_id}/response"
PATH_ERROR = BASE + "/runtime/invocation/{request_id}/error"
PATH_INIT_ERROR = BASE + "/runtime/init/error"

H_REQUEST_ID = "Lambda-Runtime-Aws-Request-Id"
H_DEADLINE = "Lambda-Runtime-Deadline-Ms"
H_ARN = "Lambda-Runtime-Invoked-Function-Arn"
H_TRACE = "Lambda-Runtime-Trace-Id"
H_CLIENT_CONTEXT = "Lambda-Runtime-Client-Context"
H_COGNITO = "Lambda-Runtime-Cognito-Identity"
H_TENANT = "Lambda-Runtime-Aws-Tenant-Id"
H_ERROR_TYPE = "Lambda-Runtime-Function-Error-Type"
H_RESPONSE_MODE = "Lambda-Runtime-Function-Response-Mode"
ERROR_CAUSE_TYPE = "application/vnd.aws.lambda.error.cause+json"

ENVIRONMENT = web.AppKey("environment", Environment)

_ERROR_TYPE_RE = re.compile(r"(Runtime|Function)\.[A-Z][a-zA-Z]+")
_ACCEPTED = b'{"status":"OK"}'
_ERROR_KEYS = ("errorMessage", "errorType", "stackTrace")


def sanitize_error_type(value: str | None) -> str:
    if value and _ERROR_TYPE_RE.fullmatch(value):
        return value
    return "Function.Unknown" if value and value.startswith("Function.") else "Runtime.Unknown"


def shape_error_body(body: bytes, content_type: str | None, error_type: str) -> bytes:
    """What the caller will see for a runtime's error post.

    An error-cause document keeps only the fields Lambda keeps; any other body goes on as it
    is; a missing body is built from the error-type header, as Lambda does.
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


def render(error: RieError) -> web.Response:
    return web.Response(status=error.status, body=error.body(), headers=error.headers())


def _accepted() -> web.Response:
    return web.Response(status=202, body=_ACCEPTED, content_type="application/json")


async def read_body(request: web.Request, limit: int = RESPONSE_SIZE_LIMIT) -> bytes:
    """The whole body, refusing (before buffering it) one that is larger than `limit`."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise RequestEntityTooLarge()
    chunks = bytearray()
    try:
        while True:
            chunk = await request.content.readany()
            if not chunk:
                break
            chunks += chunk
            if len(chunks) > limit:
                raise RequestEntityTooLarge()
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise TruncatedHTTPRequest() from exc
    except Exception as exc:  # aiohttp's payload errors: the peer stopped mid-body
        if type(exc).__name__ in (
            "ContentLengthError",
            "PayloadEncodingError",
            "ClientPayloadError",
            "TransferEncodingError",
        ):
            raise TruncatedHTTPRequest() from exc
        raise
    if declared is not None and len(chunks) < declared:
        raise TruncatedHTTPRequest()
    return bytes(chunks)


async def next_invocation(request: web.Request) -> web.StreamResponse:
    env = request.app[ENVIRONMENT]
    inv = await env.next_invocation()
    req = inv.request
    headers = {
        H_REQUEST_ID: inv.request_id,
        H_DEADLINE: str(inv.deadline_ms),
        H_ARN: req.invoked_function_arn,
        H_TRACE: req.trace_id,
        "Content-Type": req.content_type,
    }
    if req.client_context is not None:
        headers[H_CLIENT_CONTEXT] = req.client_context
    if req.cognito_identity is not None:
        headers[H_COGNITO] = req.cognito_identity
    if req.tenant_id is not None:
        headers[H_TENANT] = req.tenant_id
    return web.Response(body=req.payload, headers=headers)


async def post_response(request: web.Request) -> web.StreamResponse:
    env = request.app[ENVIRONMENT]
    inv = env.lookup(request.match_info["request_id"], State.RESPONDED)
    mode = request.headers.get(H_RESPONSE_MODE)
    if mode is not None and mode != "streaming":
        raise InvalidFunctionResponseMode()
    try:
        body = await read_body(request)
    except RequestEntityTooLarge:
        if inv.state is State.RUNNING:
            message = f"Response payload size exceeded maximum allowed payload size ({RESPONSE_SIZE_LIMIT} bytes)."
            inv.fail(
                "Function.ResponseSizeTooLarge",
                body=json.dumps(
                    {"errorMessage": message, "errorType": "Function.ResponseSizeTooLarge"}
                ).encode(),
            )
        raise
    inv.respond(body)
    return _accepted()


async def post_error(request: web.Request) -> web.StreamResponse:
    env = request.app[ENVIRONMENT]
    inv = env.lookup(request.match_info["request_id"], State.ERRORED)
    error_type = sanitize_error_type(request.headers.get(H_ERROR_TYPE))
    body = await read_body(request)
    inv.error(shape_error_body(body, request.headers.get("Content-Type"), error_type), error_type)
    return _accepted()


async def post_init_error(request: web.Request) -> web.StreamResponse:
    env = request.app[ENVIRONMENT]
    error_type = sanitize_error_type(request.headers.get(H_ERROR_TYPE))
    body = await read_body(request)
    env.init_error(
        error_type, shape_error_body(body, request.headers.get("Content-Type"), error_type)
    )
    return _accepted()


async def ping(request: web.Request) -> web.StreamResponse:
    return web.Response(text="pong")


def rendering_errors(handler: Handler) -> Handler:
    """Render the project's errors as Runtime API JSON (a wrapper, cheaper than a middleware)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except RieError as error:
            return render(error)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Runtime API: unexpected failure on %s %s", request.method, request.path)
            return render(InternalServerError())

    return wrapped


async def not_found(request: web.Request) -> web.StreamResponse:
    return web.json_response({"errorMessage": "Not Found", "errorType": "NotFound"}, status=404)


async def method_not_allowed(request: web.Request) -> web.StreamResponse:
    body = {"errorMessage": f"Method {request.method} not allowed", "errorType": "MethodNotAllowed"}
    return web.json_response(body, status=405)


class RuntimeEndpoint:
    """One environment's Runtime API server."""

    def __init__(self, runner: Runner, port: int) -> None:
        self._runner = runner
        self.port = port

    async def close(self) -> None:
        await self._runner.cleanup()


async def bind(env: Environment, host: str, port: int) -> RuntimeEndpoint:
    app = web.Application(client_max_size=RESPONSE_SIZE_LIMIT)
    app[ENVIRONMENT] = env
    routes = [
        ("GET", PATH_NEXT, next_invocation),
        ("POST", PATH_RESPONSE, post_response),
        ("POST", PATH_ERROR, post_error),
        ("POST", PATH_INIT_ERROR, post_init_error),
        ("GET", "/ping", ping),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, rendering_errors(handler))
        app.router.add_route("*", path, method_not_allowed)
    app.router.add_route("*", "/{tail:.*}", not_found)
    # handler_cancellation: a `next` whose runtime hung up must stop waiting for an invocation
    runner, bound = await listen(app, host, port, fallback=True, handler_cancellation=True)
    return RuntimeEndpoint(runner, bound)
