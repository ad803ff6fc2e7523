"""The Lambda Invoke API, served to callers (curl, boto3, the AWS CLI), and `/metrics`.

Each handler validates the whole request first (function name, qualifier, headers, payload size,
client context, the payload being JSON), so that a bad request is refused with the AWS error
botocore models and never reaches an environment; then it hands one invocation to the pool and
renders its one outcome. What can be refused from the head alone is refused before the body is
read, and before `100 Continue` is sent to a client that asked for it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from aiohttp import web
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestPayloadError

from rie.functions.registry import Function, Functions
from rie.http import eventstream
from rie.http.aiohttp_server import body_truncated, render
from rie.model.errors import (
    ASYNC_PAYLOAD_LIMIT,
    CLIENT_CONTEXT_LIMIT,
    SYNC_PAYLOAD_LIMIT,
    InvalidRequestContent,
    MethodNotAllowed,
    RequestTooLarge,
    RieError,
    UnknownPath,
)
from rie.model.invocation import Invocation, Request
from rie.observe.metrics import render as render_metrics
from rie.settings.config import Config

log = logging.getLogger("rie")

PATH_INVOKE = "/2015-03-31/functions/{name}/invocations"
PATH_INVOKE_STREAM = "/2021-11-15/functions/{name}/response-streaming-invocations"
PATH_FUNCTIONS = "/2015-03-31/functions"
PATH_FUNCTION = "/2015-03-31/functions/{name}"
PATH_FUNCTION_CONFIGURATION = "/2015-03-31/functions/{name}/configuration"
LIST_MAX_ITEMS = 50  # ListFunctions' page size when MaxItems is not given, as Lambda's

H_INVOCATION_TYPE = "X-Amz-Invocation-Type"
H_LOG_TYPE = "X-Amz-Log-Type"
H_LOG_RESULT = "X-Amz-Log-Result"
H_CLIENT_CONTEXT = "X-Amz-Client-Context"
H_TRACE = "X-Amzn-Trace-Id"
H_TENANT = "X-Amz-Tenant-Id"
H_COGNITO = "X-Amz-Cognito-Identity"
H_REQUEST_ID = "X-Amzn-RequestId"
H_EXECUTED_VERSION = "X-Amz-Executed-Version"
H_FUNCTION_ERROR = "X-Amz-Function-Error"

INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
# what `curl -d` sends unless told otherwise; no Lambda event is form data, so it means JSON
_CURL_DEFAULT_TYPE = "application/x-www-form-urlencoded"
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
# what a caller's header may hold to be passed on to the runtime: visible ASCII, spaces and tabs
# (aiohttp hands other bytes over as UTF-8 or surrogate escapes; neither goes into a header)
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
# the caller headers passed on to the runtime (the client context is checked as it is decoded)
_FORWARDED = ("Content-Type", H_TRACE, H_TENANT, H_COGNITO)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NOT_JSON = "Could not parse request body into json: Could not parse payload into json: "
# a FunctionName the fast path takes as is: what the router's `{name}` matches, without escapes
# to decode, and not a dot segment (the URL's normalisation would have removed it)
_PLAIN_NAME = re.compile(r"(?!\.\.?$)[^{}/%]+")
_SOURCE_SHOWN = 500  # characters of a refused payload quoted in the error, as Lambda's parser does


@dataclass(frozen=True, slots=True)
class Services:
    functions: Functions


SERVICES = web.AppKey("services", Services)


def new_ids() -> tuple[str, str]:
    """A request id (a random UUID, version 4) and an X-Ray trace id, from one read of urandom."""
    raw = bytearray(os.urandom(36))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    request_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
    trace_id = f"Root=1-{int(time.time()):08x}-{h[32:56]};Parent={h[56:72]};Sampled=0"
    return request_id, trace_id


def resolve_function(functions: Functions, raw_name: str, qualifier: str | None) -> Function:
    """The function a FunctionName designates: `function` (with one function), a name, an ARN or a
    partial ARN, with `$LATEST` or nothing; else 404 ResourceNotFoundException."""
    return functions.resolve(raw_name, qualifier)


def decode_client_context(value: str | None) -> str | None:
    if value is None:
        return None
    if not _PRINTABLE.fullmatch(value):
        raise InvalidRequestContent("Client context must be a valid Base64-encoded JSON object.")
    if len(value) > CLIENT_CONTEXT_LIMIT:
        raise InvalidRequestContent(f"Client context must be at most {CLIENT_CONTEXT_LIMIT} bytes")
    try:
        text = base64.b64decode(value, validate=True).decode("utf-8")
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
    except (binascii.Error, ValueError):
        raise InvalidRequestContent(
            "Client context must be a valid Base64-encoded JSON object."
        ) from None
    # it travels on as a header: the same JSON, written without line breaks or non-ASCII
    return text if _PRINTABLE.fullmatch(text) else json.dumps(doc, separators=(",", ":"))


def event_payload(body: bytes) -> bytes:
    """The event as the function gets it. Lambda refuses a payload that is not JSON (any JSON
    value will do) and hands an empty one over as `{}`."""
    if not body:
        return b"{}"
    try:
        orjson.loads(body)  # the hot path: one fast parse, its result dropped
        return body
    except orjson.JSONDecodeError:
        pass
    detail = json_error(body)
    if detail is None:
        return body  # JSON that orjson declines: a number beyond a double, a lone surrogate
    raise InvalidRequestContent(_NOT_JSON + detail)


def _reject_constant(name: str) -> object:
    raise ValueError(f"Non-standard token '{name}'")


def json_error(body: bytes) -> str | None:
    """Why `body` is not JSON, in the shape of Lambda's parser messages (what went wrong, then
    where: the source quoted up to 500 characters, line and column); None if it is JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = body.decode("utf-8", "replace")
        prefix = text[: exc.start]
        what = f"Invalid UTF-8 start byte 0x{body[exc.start]:02x}"
        line, column = prefix.count("\n") + 1, exc.start - (prefix.rfind("\n") + 1) + 1
    else:
        try:
            json.loads(text, parse_constant=_reject_constant)
            return None
        except json.JSONDecodeError as exc:
            what, line, column = exc.msg, exc.lineno, exc.colno
            token = re.match(r"[A-Za-z_][\w.+-]*", text[exc.pos :])
            if exc.msg == "Expecting value" and token:
                what = (
                    f"Unrecognized token '{token.group()}': was expecting (JSON String, Number, "
                    "Array, Object or token 'null', 'true' or 'false')"
                )
        except RecursionError:
            what, line, column = "Maximum nesting depth exceeded", 1, 1
        except ValueError as exc:  # a non-standard constant (NaN, Infinity)
            what, line, column = str(exc), 1, 1
    source = text[:_SOURCE_SHOWN]
    cut = len(text) - len(source)
    shown = f'"{source}"' + (f"[truncated {cut} chars]" if cut else "")
    return f"{what}\n at [Source: (byte[]){shown}; line: {line}, column: {column}]"


def _expects_continue(request: web.BaseRequest) -> bool:
    expect = request.headers.get("Expect")
    if expect is None or request.version != HttpVersion11:
        return False
    if expect.lower() != "100-continue":
        error = InvalidRequestContent(f"Unsupported expectation {expect!r}")
        error.status = 417  # type: ignore[misc]
        raise error
    return True


async def read_payload(request: web.BaseRequest, limit: int, operation: str) -> bytes:
    """The request body, refused with 413 before buffering more than `limit` bytes of it.

    A client waiting for `100 Continue` gets it only here, once its head was found acceptable;
    one refused before has its answer instead, without having sent its body."""
    too_large = RequestTooLarge(
        f"Request must be smaller than {limit} bytes for the {operation} operation"
    )
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large
    if _expects_continue(request) and declared != 0:
        await request.writer.write(_CONTINUE)
        request.writer.output_size = 0  # what was sent is not (a part of) the answer
    body = bytearray()
    try:
        while True:
            chunk = await request.content.readany()
            if not chunk:
                break
            body += chunk
            if len(body) > limit:
                raise too_large
    except (RequestPayloadError, HttpProcessingError) as exc:
        detail = (str(exc).splitlines() or ["unreadable"])[0].rstrip(": ")
        raise InvalidRequestContent(f"Malformed request body: {detail}") from None
    if body_truncated(request) or (declared is not None and len(body) < declared):
        raise InvalidRequestContent("HTTP request detected as truncated")
    return bytes(body)


async def accept(
    request: web.BaseRequest, operation: str, functions: Functions, name: str
) -> tuple[Invocation, Function] | web.Response:
    """Validate an invoke request for the function `name` designates; the Invocation to run and
    its function, or the answer to give at once."""
    fn = resolve_function(functions, name, request.query.get("Qualifier"))
    config = fn.config
    headers = request.headers

    invocation_type = headers.get(H_INVOCATION_TYPE, "RequestResponse")
    allowed = INVOCATION_TYPES if operation == "InvokeFunction" else ("RequestResponse", "DryRun")
    if invocation_type not in allowed:
        raise InvalidRequestContent(
            f"Invalid invocation type {invocation_type!r}: expected one of {', '.join(allowed)}"
        )
    log_type = headers.get(H_LOG_TYPE, "None")
    if log_type not in ("None", "Tail"):
        raise InvalidRequestContent(f"Invalid log type {log_type!r}: expected None or Tail")
    for header in _FORWARDED:
        for value in headers.getall(header, ()):
            if not _HEADER_VALUE.fullmatch(value):
                raise InvalidRequestContent(
                    f"Invalid value for header {header}: only visible ASCII characters are allowed"
                )
    client_context = decode_client_context(headers.get(H_CLIENT_CONTEXT))
    is_event = invocation_type == "Event"
    payload = event_payload(
        await read_payload(
            request,
            ASYNC_PAYLOAD_LIMIT if is_event else SYNC_PAYLOAD_LIMIT,
            "InvokeAsync" if is_event else operation,
        )
    )
    request_id, new_trace = new_ids()
    if invocation_type == "DryRun":
        return web.Response(status=204, headers={H_REQUEST_ID: request_id})

    content_type = headers.get("Content-Type")
    if not content_type or content_type == _CURL_DEFAULT_TYPE:
        content_type = "application/json"
    inv = Invocation(
        request_id,
        Request(
            payload=payload,
            content_type=content_type,
            trace_id=headers.get(H_TRACE) or new_trace,
            client_context=client_context,
            cognito_identity=headers.get(H_COGNITO),
            tenant_id=headers.get(H_TENANT),
            invoked_function_arn=config.function_arn,
            invocation_type=invocation_type,
            want_tail=log_type == "Tail" and not is_event,
        ),
        config.timeout_s,
    )
    if is_event:
        fn.events.submit(inv)
        return web.Response(status=202, headers={H_REQUEST_ID: request_id})
    return inv, fn


def _answer_headers(inv: Invocation, config: Config) -> dict[str, str]:
    return {
        H_REQUEST_ID: inv.request_id,
        H_EXECUTED_VERSION: config.function_version,
        H_TRACE: inv.request.trace_id,
    }


async def invoke(request: web.Request) -> web.StreamResponse:
    return await invoke_function(
        request, request.app[SERVICES].functions, request.match_info["name"]
    )


async def invoke_function(
    request: web.BaseRequest, functions: Functions, name: str
) -> web.StreamResponse:
    accepted = await accept(request, "InvokeFunction", functions, name)
    if isinstance(accepted, web.Response):
        return accepted
    inv, fn = accepted
    await fn.pool.invoke(inv, fn.config.queue_timeout_s)
    outcome = inv.outcome
    assert outcome is not None
    headers = _answer_headers(inv, fn.config)
    headers["Content-Type"] = "application/json"
    if outcome.function_error:
        headers[H_FUNCTION_ERROR] = "Unhandled"
    if inv.request.want_tail:
        headers[H_LOG_RESULT] = base64.b64encode(inv.tail).decode()
    return web.Response(body=outcome.body, headers=headers)


def _drop(_: bytes) -> None:
    pass


async def invoke_streaming(request: web.Request) -> web.StreamResponse:
    """InvokeWithResponseStream: the result as event-stream `PayloadChunk`s, then `InvokeComplete`.

    A runtime that streams its response has each chunk passed on as it arrives; a buffered
    response goes out as one chunk.
    """
    accepted = await accept(
        request,
        "InvokeWithResponseStream",
        request.app[SERVICES].functions,
        request.match_info["name"],
    )
    if isinstance(accepted, web.Response):
        return accepted
    inv, fn = accepted
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
    inv.on_chunk = chunks.put_nowait
    run = asyncio.ensure_future(fn.pool.invoke(inv, fn.config.queue_timeout_s))
    run.add_done_callback(lambda _: chunks.put_nowait(None))
    response: web.StreamResponse | None = None

    async def started() -> web.StreamResponse:
        # headers go out with the first chunk, so that a throttled invoke can still answer 429
        nonlocal response
        if response is None:
            response = web.StreamResponse(headers=_answer_headers(inv, fn.config))
            response.content_type = eventstream.CONTENT_TYPE
            await response.prepare(request)
        return response

    try:
        while (chunk := await chunks.get()) is not None:
            await (await started()).write(eventstream.encode("PayloadChunk", chunk))
    except ConnectionResetError:
        # the caller hung up: the invocation still runs to its end, its chunks are dropped
        inv.on_chunk = _drop
        await asyncio.shield(run)
        assert response is not None
        return response
    await run  # raises the invoke's own errors (429, 503) when nothing was sent yet
    outcome = inv.outcome
    assert outcome is not None
    stream = await started()
    complete: dict[str, str] = {}
    if outcome.function_error:
        complete = {
            "ErrorCode": outcome.error_type or "Unhandled",
            "ErrorDetails": outcome.body.decode("utf-8", "replace"),
        }
    elif outcome.body:
        await stream.write(eventstream.encode("PayloadChunk", outcome.body))
    if inv.request.want_tail:
        complete["LogResult"] = base64.b64encode(inv.tail).decode()
    await stream.write(
        eventstream.encode("InvokeComplete", json.dumps(complete).encode(), "application/json")
    )
    await stream.write_eof()
    return stream


def _json(doc: object) -> web.Response:
    return web.Response(body=json.dumps(doc).encode(), content_type="application/json")


async def list_functions(request: web.Request) -> web.StreamResponse:
    """ListFunctions, paged by `Marker` (an index here) and `MaxItems` (1-10000)."""
    functions = request.app[SERVICES].functions.all
    marker, max_items = request.query.get("Marker", "0"), request.query.get("MaxItems", "")
    if not marker.isdigit():
        raise InvalidRequestContent(f"Invalid Marker {marker!r}")
    if max_items and not (max_items.isdigit() and 1 <= int(max_items) <= 10000):
        raise InvalidRequestContent("MaxItems must be between 1 and 10000")
    from rie.api import catalog  # the control plane's reads are rare: not loaded at start-up

    start, count = int(marker), int(max_items or LIST_MAX_ITEMS)
    page = functions[start : start + count]
    doc: dict[str, object] = {
        "Functions": [catalog.function_configuration(fn.config) for fn in page]
    }
    if start + count < len(functions):
        doc["NextMarker"] = str(start + count)
    return _json(doc)


async def get_function(request: web.Request) -> web.StreamResponse:
    fn = resolve_function(
        request.app[SERVICES].functions, request.match_info["name"], request.query.get("Qualifier")
    )
    from rie.api import catalog

    return _json(catalog.get_function(fn.config))


async def get_function_configuration(request: web.Request) -> web.StreamResponse:
    fn = resolve_function(
        request.app[SERVICES].functions, request.match_info["name"], request.query.get("Qualifier")
    )
    from rie.api import catalog

    return _json(catalog.function_configuration(fn.config))


async def metrics(request: web.Request) -> web.StreamResponse:
    functions = request.app[SERVICES].functions
    text = render_metrics([(fn.name, fn.metrics) for fn in functions], functions.unrouted)
    return web.Response(
        text=text, content_type="text/plain", charset="utf-8", headers={"Cache-Control": "no-store"}
    )


async def ping(request: web.Request) -> web.StreamResponse:
    return web.Response(text="pong")


def rendering_errors(handler: Handler) -> Handler:
    """Render the project's errors as AWS service errors (a wrapper, cheaper than a middleware)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        return await answering_errors(request, handler(request))

    return wrapped


async def answering_errors(
    request: web.BaseRequest, answer: Awaitable[web.StreamResponse]
) -> web.StreamResponse:
    """`answer`, or the project's error it raised rendered as an AWS service error."""
    try:
        return await answer
    except RieError as error:
        response = web.Response(status=error.status, body=error.body(), headers=error.headers())
        body = request.content
        if not body.is_eof():
            # refused before its body was read: the connection cannot carry another request
            response.force_close()
            expect = request.headers.get("Expect", "")
            if body.total_bytes == 0 and expect.lower() == "100-continue":
                # nor will the body come, for want of a `100 Continue`: close at once
                # rather than wait for it
                body.feed_eof()
        return response
    except ConnectionResetError:
        # the caller hung up before its request was complete: there is no one to answer
        return web.Response(status=400)


async def unknown_path(request: web.Request) -> web.StreamResponse:
    return render(UnknownPath(f"No operation at {request.path}"))


async def method_not_allowed(request: web.Request) -> web.StreamResponse:
    return render(MethodNotAllowed(f"Method {request.method} not allowed on {request.path}"))


async def _no_early_continue(request: web.Request) -> None:
    """`100 Continue` is sent by `read_payload`, once the head is known to be acceptable."""


def fast_invoke_path(
    app: web.Application,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The Invoke API's request handler: InvokeFunction (the hot path) is answered without
    aiohttp's router, middleware and expect handling; every other request goes through `app`.

    The shortcut is taken only where the router would pick the same route with the same name: a
    POST whose path is exactly `PATH_INVOKE` with a name free of escapes (`%`), `{`, `}` and dot
    segments, and no `Expect` header (whose handling is the router's)."""
    routed = app._handle
    functions = app[SERVICES].functions
    prefix, suffix = PATH_INVOKE.split("{name}")
    cut, end = len(prefix), -len(suffix)

    def handle(request: web.Request) -> Awaitable[web.StreamResponse]:
        if request.method == "POST":
            path = request.rel_url.path_safe
            if path.startswith(prefix) and path.endswith(suffix) and len(path) > cut - end:
                name = path[cut:end]
                if _PLAIN_NAME.fullmatch(name) and "Expect" not in request.headers:
                    return answering_errors(request, invoke_function(request, functions, name))
        return routed(request)

    return handle


def build_app(services: Services) -> web.Application:
    # the limit is enforced by read_payload, before buffering; aiohttp's own is a backstop
    app = web.Application(client_max_size=SYNC_PAYLOAD_LIMIT + 1)
    app[SERVICES] = services
    for method, path, handler in (
        ("POST", PATH_INVOKE, invoke),
        ("POST", PATH_INVOKE_STREAM, invoke_streaming),
        ("GET", "/metrics", metrics),
        ("GET", "/ping", ping),
    ):
        app.router.add_route(
            method, path, rendering_errors(handler), expect_handler=_no_early_continue
        )
        app.router.add_route("*", path, method_not_allowed, expect_handler=_no_early_continue)
    # the control plane's reads; its other operations on these paths are unknown here (404)
    for path, handler in (
        (PATH_FUNCTIONS, list_functions),
        (PATH_FUNCTIONS + "/", list_functions),
        (PATH_FUNCTION, get_function),
        (PATH_FUNCTION_CONFIGURATION, get_function_configuration),
    ):
        app.router.add_route(
            "GET", path, rendering_errors(handler), expect_handler=_no_early_continue
        )
    app.router.add_route("*", "/{tail:.*}", unknown_path, expect_handler=_no_early_continue)
    return app
