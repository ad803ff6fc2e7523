"""The Lambda Invoke API, served to callers (curl, boto3, the AWS CLI), and `/metrics`.

Its operations are routes on the project's HTTP/1.1 core (rie/http/protocol.py, which owns the
wire: framing, limits, 100-continue, half-close, time limits), in the Invoke API's dialect: a
strict parse, and every error of the wire rendered as the AWS error botocore models.

Each route validates the whole request from its head first (function name, qualifier, headers,
client context, the payload's size, an expectation), so that a bad request is refused before its
body is read and before `100 Continue` is sent; the payload is checked to be JSON once it is
complete; then one invocation is handed to the pool and its one outcome rendered in one write.
The hot path (InvokeFunction) allocates no task and no future: the pool calls back when the
invocation ends, and the answer's head is one formatted string.
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
from collections.abc import Callable
from urllib.parse import parse_qsl, unquote

import orjson

from rie.functions.registry import Function, Functions
from rie.http import eventstream
from rie.http.protocol import Connection, Dialect, Request, Router, Server
from rie.model.errors import (
    ASYNC_PAYLOAD_LIMIT,
    CLIENT_CONTEXT_LIMIT,
    SYNC_PAYLOAD_LIMIT,
    InvalidRequestContent,
    MethodNotAllowed,
    RequestTooLarge,
    RieError,
    ServiceUnavailable,
    TooManyRequests,
    UnknownPath,
    invoke_api_error,
)
from rie.model.invocation import Invocation
from rie.model.invocation import Request as InvocationRequest
from rie.observe.metrics import render as render_metrics

log = logging.getLogger("rie")

PATH_INVOKE = "/2015-03-31/functions/{name}/invocations"
PATH_INVOKE_STREAM = "/2021-11-15/functions/{name}/response-streaming-invocations"
PATH_FUNCTIONS = "/2015-03-31/functions"
PATH_FUNCTION = "/2015-03-31/functions/{name}"
PATH_FUNCTION_CONFIGURATION = "/2015-03-31/functions/{name}/configuration"
LIST_MAX_ITEMS = 50  # ListFunctions' page size when MaxItems is not given, as Lambda's

H_INVOCATION_TYPE = "x-amz-invocation-type"
H_LOG_TYPE = "x-amz-log-type"
H_LOG_RESULT = "X-Amz-Log-Result"
H_CLIENT_CONTEXT = "x-amz-client-context"
H_TRACE = "X-Amzn-Trace-Id"
H_TENANT = "X-Amz-Tenant-Id"
H_COGNITO = "X-Amz-Cognito-Identity"
H_REQUEST_ID = "X-Amzn-RequestId"
H_EXECUTED_VERSION = "X-Amz-Executed-Version"
H_FUNCTION_ERROR = "X-Amz-Function-Error"

INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
STREAM_INVOCATION_TYPES = ("RequestResponse", "DryRun")
# what `curl -d` sends unless told otherwise; no Lambda event is form data, so it means JSON
_CURL_DEFAULT_TYPE = "application/x-www-form-urlencoded"
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
# what a caller's header may hold to be passed on to the runtime: visible ASCII, spaces and tabs
# (the head is read as Latin-1: other bytes would reach the runtime as other characters)
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
# the caller headers passed on to the runtime (the client context is checked as it is decoded):
# (the name as given in errors, the lower-case key)
_FORWARDED = tuple((name, name.lower()) for name in ("Content-Type", H_TRACE, H_TENANT, H_COGNITO))
_NOT_JSON = "Could not parse request body into json: Could not parse payload into json: "
_SOURCE_SHOWN = 500  # characters of a refused payload quoted in the error, as Lambda's parser does
# the longest request line or header line, and the most header fields, a caller may send (as
# aiohttp's and Go's servers): past them a request is refused unread
LINE_LIMIT = 8190
MAX_HEADERS = 100


_entropy = bytearray()  # random bytes read ahead: one read of urandom per 64 invocations


def new_ids() -> tuple[str, str]:
    """A request id (a random UUID, version 4) and an X-Ray trace id, from 36 random bytes."""
    if len(_entropy) < 36:
        _entropy[:] = os.urandom(36 * 64)
    raw = _entropy[-36:]
    del _entropy[-36:]
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


def _expectation_error(req: Request) -> RieError | None:
    """417 for an `Expect` other than `100-continue` (HTTP/1.1 only: 1.0 has no expectations);
    the core sends `100 Continue` itself once the head is accepted."""
    expect = req.headers.get("expect")
    if expect is None or req.version != "HTTP/1.1" or expect.lower() == "100-continue":
        return None
    error = InvalidRequestContent(f"Unsupported expectation {expect!r}")
    error.status = 417  # type: ignore[misc]
    return error


def _query(req: Request) -> dict[str, str]:
    """The query's parameters (the first of each name, as aiohttp's `query.get` gave)."""
    params: dict[str, str] = {}
    if req.query:
        for key, value in parse_qsl(req.query, keep_blank_values=True):
            params.setdefault(key, value)
    return params


def _name(raw: str) -> str:
    return unquote(raw) if "%" in raw else raw


class _Accepted:
    """What an invoke's head said, kept from `check` to `handle`."""

    __slots__ = ("client_context", "fn", "invocation_type", "is_event", "operation", "tail")

    def __init__(
        self, fn: Function, operation: str, invocation_type: str, tail: bool, cc: str | None
    ) -> None:
        self.fn = fn
        self.operation = operation
        self.invocation_type = invocation_type
        self.is_event = invocation_type == "Event"
        self.tail = tail and not self.is_event
        self.client_context = cc


def accept_head(
    functions: Functions, req: Request, name: str, operation: str, allowed: tuple[str, ...]
) -> _Accepted:
    """Validate an invoke request from its head alone; raises the AWS error to refuse it with.
    Sets the request's body limit."""
    headers = req.headers
    qualifier = _query(req).get("Qualifier") if req.query else None
    fn = resolve_function(functions, _name(name), qualifier)
    invocation_type = headers.get(H_INVOCATION_TYPE, "RequestResponse")
    if invocation_type not in allowed:
        raise InvalidRequestContent(
            f"Invalid invocation type {invocation_type!r}: expected one of {', '.join(allowed)}"
        )
    log_type = headers.get(H_LOG_TYPE, "None")
    if log_type != "None" and log_type != "Tail":
        raise InvalidRequestContent(f"Invalid log type {log_type!r}: expected None or Tail")
    for header, key in _FORWARDED:
        value = headers.get(key)
        if value is not None and not _HEADER_VALUE.fullmatch(value):
            raise InvalidRequestContent(
                f"Invalid value for header {header}: only visible ASCII characters are allowed"
            )
    client_context = decode_client_context(headers.get(H_CLIENT_CONTEXT))
    accepted = _Accepted(fn, operation, invocation_type, log_type == "Tail", client_context)
    req.limit = ASYNC_PAYLOAD_LIMIT if accepted.is_event else SYNC_PAYLOAD_LIMIT
    return accepted


def too_large(req: Request, limit: int) -> RieError:
    accepted = req.context
    operation = "InvokeFunction"
    if isinstance(accepted, _Accepted):
        operation = "InvokeAsync" if accepted.is_event else accepted.operation
    return RequestTooLarge(
        f"Request must be smaller than {limit} bytes for the {operation} operation"
    )


def start_invocation(
    conn: Connection, req: Request, accepted: _Accepted
) -> tuple[Invocation, Function] | None:
    """The invocation a complete invoke request asks for; None when it was answered already
    (DryRun, Event)."""
    payload = event_payload(bytes(req.body))
    request_id, new_trace = new_ids()
    close = not req.keep_alive
    if accepted.invocation_type == "DryRun":
        conn.send(204, b"", None, close=close, headers=f"{H_REQUEST_ID}: {request_id}\r\n")
        return None
    headers = req.headers
    content_type = headers.get("content-type")
    if not content_type or content_type == _CURL_DEFAULT_TYPE:
        content_type = "application/json"
    fn = accepted.fn
    config = fn.config
    inv = Invocation(
        request_id,
        InvocationRequest(
            payload=payload,
            content_type=content_type,
            trace_id=headers.get("x-amzn-trace-id") or new_trace,
            client_context=accepted.client_context,
            cognito_identity=headers.get("x-amz-cognito-identity"),
            tenant_id=headers.get("x-amz-tenant-id"),
            invoked_function_arn=config.function_arn,
            invocation_type=accepted.invocation_type,
            want_tail=accepted.tail,
        ),
        config.timeout_s,
    )
    if accepted.is_event:
        fn.events.submit(inv)
        conn.send(202, b"", None, close=close, headers=f"{H_REQUEST_ID}: {request_id}\r\n")
        return None
    return inv, fn


def _answer_head(inv: Invocation, fn: Function) -> str:
    return (
        f"{H_REQUEST_ID}: {inv.request_id}\r\n{H_EXECUTED_VERSION}: {fn.config.function_version}"
        f"\r\n{H_TRACE}: {inv.request.trace_id}\r\n"
    )


class _Answer:
    """Answers one InvokeFunction when its invocation ends (the pool calls `done`)."""

    __slots__ = ("conn", "fn", "gone", "inv", "keep_alive")

    def __init__(self, conn: Connection, req: Request, inv: Invocation, fn: Function) -> None:
        self.conn = conn
        self.inv = inv
        self.fn = fn
        self.keep_alive = req.keep_alive
        self.gone = False
        conn.park(req, self.on_gone)

    def on_gone(self) -> None:
        # the caller hung up: the invocation still runs to its end, unanswered
        self.gone = True

    def done(self, inv: Invocation) -> None:
        if self.gone:
            return
        outcome = inv.outcome
        assert outcome is not None
        head = _answer_head(inv, self.fn)
        if outcome.function_error:
            head += f"{H_FUNCTION_ERROR}: Unhandled\r\n"
        if inv.request.want_tail:
            head += f"{H_LOG_RESULT}: {base64.b64encode(inv.tail).decode()}\r\n"
        self.conn.send(200, outcome.body, close=not self.keep_alive, headers=head)

    def refused(self, error: RieError) -> None:
        """The invocation never ran (no slot in time, or the emulator stopping)."""
        if not self.gone:
            self.conn.send_rendered(error, not self.keep_alive)

    def start(self, wait_s: float) -> None:
        pool = self.fn.pool
        if pool.try_place(self.inv, self.done):
            return
        if wait_s <= 0:
            pool.throttled(self.inv)
            self.refused(TooManyRequests(Reason=pool.THROTTLE_REASON))
            return
        # no free slot: wait for one (the rare path: a task, as the HTTP front's)
        waiting = asyncio.ensure_future(pool.invoke(self.inv, wait_s))
        waiting.add_done_callback(self._waited)

    def _waited(self, waiting: asyncio.Future[None]) -> None:
        if waiting.cancelled():
            self.refused(ServiceUnavailable())
            return
        error = waiting.exception()
        if error is None:
            self.done(self.inv)
        elif isinstance(error, RieError):
            self.refused(error)
        else:
            log.error("invocation %s failed: %r", self.inv.request_id, error)
            self.refused(invoke_api_error(500, "Internal error"))


class _StreamAnswer(_Answer):
    """Answers one InvokeWithResponseStream: event-stream `PayloadChunk`s as the runtime streams
    them (or the buffered response as one), then `InvokeComplete`. The head goes out with the
    first chunk, so that an invoke refused for want of a slot can still answer 429."""

    __slots__ = ("started",)

    def __init__(self, conn: Connection, req: Request, inv: Invocation, fn: Function) -> None:
        super().__init__(conn, req, inv, fn)
        self.started = False
        inv.on_chunk = self.chunk
        # a caller that reads slower than the runtime streams holds the runtime back (through
        # its socket), so that rie's memory does not grow with the backlog
        conn.on_backlog = self.backlog

    def backlog(self, behind: bool) -> None:
        if behind:
            log.debug("invocation %s: the caller is behind: the stream waits", self.inv.request_id)
        self.inv.hold_stream(behind)

    def on_gone(self) -> None:
        self.gone = True
        self.conn.on_backlog = None
        self.inv.on_chunk = _drop  # its chunks are dropped; it still runs to its end
        self.inv.hold_stream(False)

    def _begin(self) -> None:
        if not self.started:
            self.started = True
            head = f"Content-Type: {eventstream.CONTENT_TYPE}\r\n" + _answer_head(self.inv, self.fn)
            self.conn.begin_stream(200, head)

    def chunk(self, data: bytes) -> None:
        if not self.gone:
            self._begin()
            self.conn.write_chunk(eventstream.encode("PayloadChunk", data))

    def done(self, inv: Invocation) -> None:
        if self.gone:
            return
        outcome = inv.outcome
        assert outcome is not None
        self._begin()
        complete: dict[str, str] = {}
        if outcome.function_error:
            complete = {
                "ErrorCode": outcome.error_type or "Unhandled",
                "ErrorDetails": outcome.body.decode("utf-8", "replace"),
            }
        elif outcome.body:
            self.conn.write_chunk(eventstream.encode("PayloadChunk", outcome.body))
        if inv.request.want_tail:
            complete["LogResult"] = base64.b64encode(inv.tail).decode()
        self.conn.write_chunk(
            eventstream.encode("InvokeComplete", json.dumps(complete).encode(), "application/json")
        )
        self.conn.end_stream()


def _drop(_: bytes) -> None:
    pass


def _refuse(req: Request, error: RieError) -> RieError:
    req.context = None
    return error


class FunctionsRoute:
    """`/2015-03-31/functions/...`: InvokeFunction (the hot path), GetFunction and
    GetFunctionConfiguration."""

    __slots__ = ("functions",)

    PREFIX = PATH_FUNCTIONS + "/"

    def __init__(self, functions: Functions) -> None:
        self.functions = functions

    def check(self, conn: Connection, req: Request) -> RieError | None:
        name, _, operation = req.path[len(self.PREFIX) :].partition("/")
        if not name or "{" in name or "}" in name:
            return UnknownPath(f"No operation at {req.path}")
        try:
            if operation == "invocations":
                if req.method != "POST":
                    return MethodNotAllowed(f"Method {req.method} not allowed on {req.path}")
                req.context = accept_head(
                    self.functions, req, name, "InvokeFunction", INVOCATION_TYPES
                )
                return _expectation_error(req)
            if req.method != "GET" or operation not in ("", "configuration"):
                return UnknownPath(f"No operation at {req.path}")
            req.context = operation
            return _expectation_error(req)
        except RieError as error:
            return _refuse(req, error)

    def handle(self, conn: Connection, req: Request) -> None:
        accepted = req.context
        if not isinstance(accepted, _Accepted):
            name = req.path[len(self.PREFIX) :].partition("/")[0]
            fn = resolve_function(self.functions, _name(name), _query(req).get("Qualifier"))
            from rie.api import catalog  # the control plane's reads are rare: loaded on use

            if accepted == "configuration":
                doc = catalog.function_configuration(fn.config)
            else:
                doc = catalog.get_function(fn.config)
            _send_json(conn, req, doc)
            return
        started = start_invocation(conn, req, accepted)
        if started is not None:
            inv, fn = started
            if fn.pool.closing:
                raise ServiceUnavailable()
            _Answer(conn, req, inv, fn).start(fn.config.queue_timeout_s)

    too_large = staticmethod(too_large)


class StreamRoute:
    """`/2021-11-15/functions/{name}/response-streaming-invocations`: InvokeWithResponseStream."""

    __slots__ = ("functions",)

    PREFIX = "/2021-11-15/functions/"
    SUFFIX = "/response-streaming-invocations"

    def __init__(self, functions: Functions) -> None:
        self.functions = functions

    def check(self, conn: Connection, req: Request) -> RieError | None:
        path = req.path
        name = path[len(self.PREFIX) : -len(self.SUFFIX)]
        if not path.endswith(self.SUFFIX) or not name or "/" in name or "{" in name or "}" in name:
            return UnknownPath(f"No operation at {path}")
        if req.method != "POST":
            return MethodNotAllowed(f"Method {req.method} not allowed on {path}")
        try:
            req.context = accept_head(
                self.functions, req, name, "InvokeWithResponseStream", STREAM_INVOCATION_TYPES
            )
        except RieError as error:
            return _refuse(req, error)
        return _expectation_error(req)

    def handle(self, conn: Connection, req: Request) -> None:
        accepted = req.context
        assert isinstance(accepted, _Accepted)
        started = start_invocation(conn, req, accepted)
        if started is not None:
            inv, fn = started
            if fn.pool.closing:
                raise ServiceUnavailable()
            _StreamAnswer(conn, req, inv, fn).start(fn.config.queue_timeout_s)

    too_large = staticmethod(too_large)


def _send_json(conn: Connection, req: Request, doc: object) -> None:
    conn.send(200, json.dumps(doc).encode(), close=not req.keep_alive)


class _GetRoute:
    """A GET-only path (anything else on it: 404, or 405 where `strict`)."""

    __slots__ = ("answer", "strict")

    def __init__(self, answer: Callable[[Connection, Request], None], strict: bool) -> None:
        self.answer = answer
        self.strict = strict

    def check(self, conn: Connection, req: Request) -> RieError | None:
        if req.method != "GET":
            if self.strict:
                return MethodNotAllowed(f"Method {req.method} not allowed on {req.path}")
            return UnknownPath(f"No operation at {req.path}")
        return _expectation_error(req)

    def handle(self, conn: Connection, req: Request) -> None:
        self.answer(conn, req)

    too_large = staticmethod(too_large)


class _UnknownRoute:
    __slots__ = ()

    def check(self, conn: Connection, req: Request) -> RieError | None:
        return UnknownPath(f"No operation at {req.path}")

    def handle(self, conn: Connection, req: Request) -> None:  # never: check refuses
        raise UnknownPath(f"No operation at {req.path}")

    too_large = staticmethod(too_large)


def wire_error(status: int, message: str, error_type: str) -> RieError:
    """The wire's own errors (a malformed head, a time limit, a truncated body, a failure) as
    AWS errors."""
    if status >= 500:
        message = "Internal error"  # what went wrong is logged, not told
    elif error_type == "TruncatedHTTPRequest":
        message = "HTTP request detected as truncated"
    return invoke_api_error(status, message)


DIALECT = Dialect(
    error=wire_error,
    line_limit=LINE_LIMIT,
    max_headers=MAX_HEADERS,
    need_host=True,
    greet_with_408=True,
    answer_half_closed=True,
)


def router(functions: Functions) -> Router:
    """The Invoke API's routes (and `/metrics`, `/ping`) in front of `functions`."""
    r = Router(DIALECT)
    r.add_prefix(FunctionsRoute.PREFIX, FunctionsRoute(functions))
    r.add_prefix(StreamRoute.PREFIX, StreamRoute(functions))

    def list_functions(conn: Connection, req: Request) -> None:
        """ListFunctions, paged by `Marker` (an index here) and `MaxItems` (1-10000)."""
        params = _query(req)
        marker, max_items = params.get("Marker", "0"), params.get("MaxItems", "")
        if not marker.isdigit():
            raise InvalidRequestContent(f"Invalid Marker {marker!r}")
        if max_items and not (max_items.isdigit() and 1 <= int(max_items) <= 10000):
            raise InvalidRequestContent("MaxItems must be between 1 and 10000")
        from rie.api import catalog  # the control plane's reads are rare: loaded on use

        every = functions.all
        start, count = int(marker), int(max_items or LIST_MAX_ITEMS)
        page = every[start : start + count]
        doc: dict[str, object] = {
            "Functions": [catalog.function_configuration(fn.config) for fn in page]
        }
        if start + count < len(every):
            doc["NextMarker"] = str(start + count)
        _send_json(conn, req, doc)

    def metrics(conn: Connection, req: Request) -> None:
        text = render_metrics([(fn.name, fn.metrics) for fn in functions], functions.unrouted)
        conn.send(
            200,
            text.encode(),
            "text/plain; charset=utf-8",
            close=not req.keep_alive,
            headers="Cache-Control: no-store\r\n",
        )

    def ping(conn: Connection, req: Request) -> None:
        conn.send(200, b"pong", "text/plain; charset=utf-8", close=not req.keep_alive)

    r.add("/metrics", _GetRoute(metrics, strict=True))
    r.add("/ping", _GetRoute(ping, strict=True))
    r.add(PATH_FUNCTIONS, _GetRoute(list_functions, strict=False))
    r.add(PATH_FUNCTIONS + "/", _GetRoute(list_functions, strict=False))
    r.set_default(_UnknownRoute())
    return r


class InvokeApi(Server):
    """The Invoke API's listening socket and its callers' connections."""


def server(functions: Functions, head_timeout_s: float, keepalive_timeout_s: float) -> InvokeApi:
    return InvokeApi(router(functions), head_timeout_s, keepalive_timeout_s)
