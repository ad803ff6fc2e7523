"""The HTTP front: plain HTTP requests in, the function's answers out, as a Function URL or an API
Gateway (HTTP API or REST API) in front of the function would give them.

Only the adapter lives here: each request is routed to a target (a function: its config and its
pool), turned into an event by `http_events`, run through the same `pool.invoke` as the Invoke
API (so throttling, timeouts, logs, tails, metrics and shutdown are the same), and its outcome
mapped back. Invariants: every request gets exactly one answer; a body over the front's limit is
refused before it is buffered; an invocation the client or API Gateway stopped waiting for still
runs to its end in its environment.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Protocol, cast
from urllib.parse import unquote, urlsplit

import orjson

from rie.api.invoke import LINE_LIMIT, MAX_HEADERS, new_ids
from rie.fronts.http_events import (
    INTEGRATION_CONTENT_TYPE,
    Api,
    Cors,
    EventInfo,
    Failure,
    Format,
    HttpAnswer,
    HttpRequest,
    MalformedResult,
    build_event,
    failure_answer,
    is_preflight,
    map_result,
    prelude_head,
    split_prelude,
    with_cors,
)
from rie.http.protocol import Connection, Dialect, Router, Server
from rie.http.protocol import Request as HttpWire
from rie.model.errors import (
    SYNC_PAYLOAD_LIMIT,
    RieError,
    ServiceUnavailable,
    TooManyRequests,
    TruncatedHTTPRequest,
)
from rie.model.invocation import Invocation, Request
from rie.observe.metrics import Metrics
from rie.settings.config import Config
from rie.settings.routes import Route, match_route, parse_route

log = logging.getLogger("rie")

# with several functions, `/lambda-url/NAME/PATH` reaches NAME with PATH (cargo lambda's scheme)
LAMBDA_URL_PREFIX = "/lambda-url/"
API_GATEWAY_LIMIT = 10 * 1024 * 1024  # API Gateway's payload limit; Lambda's 6 MB comes after
# API Gateway's integration timeouts: REST APIs 29 s (by default), HTTP APIs 30 s
_INTEGRATION_TIMEOUT_S = {Format.REST_API: 29.0, Format.HTTP_API: 30.0}


class Invoker(Protocol):
    async def invoke(self, inv: Invocation, wait_s: float) -> None: ...

    def try_place(self, inv: Invocation, on_done: Callable[[Invocation], None]) -> bool: ...


class Target(Protocol):
    """A function the front can reach: its configuration and the pool that runs it."""

    @property
    def config(self) -> Config: ...

    @property
    def pool(self) -> Invoker: ...

    @property
    def metrics(self) -> Metrics: ...


# a request's target: the function, the route it matched (None: $default), the route's path
# parameters, and the path the function sees
_Found = tuple["_Bound", Route | None, dict[str, str], str]


@dataclass(frozen=True, slots=True)
class _Bound:
    """A target with what the front derives from its config once, at start-up."""

    target: Target
    api: Api
    routes: tuple[Route, ...]
    cors: Cors
    streaming: bool
    integration_timeout_s: float | None

    @classmethod
    def of(cls, target: Target) -> _Bound:
        c = target.config
        fmt = Format(c.http_format)
        timeout = c.http_integration_timeout_s
        if timeout is None:
            timeout = _INTEGRATION_TIMEOUT_S.get(fmt)
        return cls(
            target,
            Api.for_function(fmt, c.function_name, c.region, c.account_id),
            tuple(parse_route(r) for r in c.routes),
            Cors(
                c.cors_allow_origins,
                c.cors_allow_methods,
                c.cors_allow_headers,
                c.cors_expose_headers,
                c.cors_max_age,
                c.cors_allow_credentials,
            )
            if fmt is Format.FUNCTION_URL
            else Cors(),
            fmt is Format.FUNCTION_URL and c.http_invoke_mode == "RESPONSE_STREAM",
            None if fmt is Format.FUNCTION_URL else timeout,
        )

    @property
    def format(self) -> Format:
        return self.api.format


class FrontAnswer(RieError):
    """An answer the front gives below its function (a refusal, a failure), as an error the
    HTTP core can send: in the front's own shape, never the Invoke API's (no X-Amzn-ErrorType)."""

    def __init__(self, answer: HttpAnswer) -> None:
        super().__init__(answer.body.decode("utf-8", "replace"))
        self.status = answer.status  # type: ignore[misc]
        self.answer = answer

    def headers(self) -> dict[str, str]:
        return dict(self.answer.headers)

    def body(self) -> bytes:
        return self.answer.body


def refusal(key: str, status: int) -> FrontAnswer:
    """The front's refusal of what is below its routes (a malformed request, a head that never
    completes), keyed `message` (API Gateway) or `Message` (a Function URL)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Bad Request"
    body = json.dumps({key: phrase}).encode()
    return FrontAnswer(HttpAnswer(status, (("Content-Type", "application/json"),), body))


class HttpFront:
    """Routes requests to targets: by route across every function; with several functions,
    `/lambda-url/NAME/...` to NAME; with one function and no routes, every request to it.

    It is the one route of an HTTP core `Router` (rie/http/protocol.py): `check` routes a request
    from its head (so that a body over the target's limit is refused before it is read, and
    before a `100 Continue`), `handle` runs it once its body is in."""

    def __init__(self, targets: Sequence[Target], unrouted: Metrics) -> None:
        """`unrouted` counts the answers given before a target was found (no route matched)."""
        self._bound = [_Bound.of(t) for t in targets]
        self._metrics = unrouted
        self._routes = [(route, b) for b in self._bound for route in b.routes]
        self._route_list = [route for route, _ in self._routes]  # matched per request: made once
        self._owner = {id(route): b for route, b in self._routes}
        self._by_name = {b.target.config.function_name: b for b in self._bound}
        owners: dict[str, str] = {}
        for route, b in self._routes:
            name = b.target.config.function_name
            first = owners.setdefault(route.key, name)
            if first != name:
                # one API would refuse the second; here both are on one front: the first serves
                log.warning(
                    "route %s is given by %s and %s: %s serves it", route.key, first, name, first
                )
        self._background: set[asyncio.Future[None]] = set()
        self._format = self._bound[0].format if self._bound else Format.HTTP_API
        self._key = "Message" if self._format is Format.FUNCTION_URL else "message"

    def router(self) -> Router:
        """The core's router: every request-target comes here (`*` and authorities included,
        to be refused in the front's shape)."""
        dialect = Dialect(
            error=self._wire_error,
            line_limit=LINE_LIMIT,
            max_headers=MAX_HEADERS,
            greet_with_408=True,
            answer_half_closed=True,
            raw_headers=True,
        )
        router = Router(dialect)
        router.set_default(self)
        return router

    def server(self, head_timeout_s: float, keepalive_timeout_s: float) -> Server:
        return Server(self.router(), head_timeout_s, keepalive_timeout_s)

    def _wire_error(self, status: int, message: str, error_type: str) -> RieError:
        # the wire's own errors (malformed, timed out, failed): the front's refusal
        if error_type == TruncatedHTTPRequest.error_type:
            # the client half-closed before sending all of its body: no one to invoke for
            answer = failure_answer(self._format, Failure.BAD_REQUEST)
            self._metrics.http_answers[(self._format.value, answer.status)] += 1
            return FrontAnswer(answer)
        return refusal(self._key, status)

    def _route(self, method: str, raw_path: str) -> _Found | None:
        """The target of a request: `/lambda-url/NAME/...` names one when there are several
        (the path after the name is the function's own, as `cargo lambda watch` serves it),
        else the most specific route, else the only function when no function has routes."""
        if len(self._bound) > 1 and raw_path.startswith(LAMBDA_URL_PREFIX):
            name, sep, rest = raw_path[len(LAMBDA_URL_PREFIX) :].partition("/")
            bound = self._by_name.get(name)
            if bound is not None:
                return bound, None, {}, sep + rest or "/"
        if not self._routes:
            return (self._bound[0], None, {}, raw_path) if len(self._bound) == 1 else None
        found = match_route(
            self._route_list, method, unquote(raw_path) if "%" in raw_path else raw_path
        )
        if found is None:
            return None
        route, params = found
        return self._owner[id(route)], route, params, raw_path

    def describe(self) -> list[str]:
        """What the front serves, one line per function (printed at start-up)."""
        several = len(self._bound) > 1
        lines = []
        for b in self._bound:
            reach = [r.key for r in b.routes]
            if several:
                reach.append(f"ANY {LAMBDA_URL_PREFIX}{b.target.config.function_name}/...")
            elif not reach:
                reach.append("every request")
            lines.append(f"{b.target.config.function_name} ({b.format.value}): {', '.join(reach)}")
        return lines

    # --- the core's Route ------------------------------------------------------------------

    def check(self, conn: Connection, req: HttpWire) -> RieError | None:
        expect = req.headers.get("expect")
        if expect is not None and expect.lower() != "100-continue":
            req.keep_alive = False  # the body that may follow is not read
            return refusal(self._key, 417)
        path, query = req.path, req.query
        if path.startswith("/"):  # origin-form, the common case: split by the core already
            target: tuple[str, str] | None = (path, query.partition("#")[0])
        else:
            target = _target(f"{path}?{query}" if query else path)
        if target is None:
            # `OPTIONS *`, `CONNECT host:443`: nothing a function serves
            req.keep_alive = False
            return refusal(self._key, 400)
        found = self._route(req.method, target[0])
        req.context = (target, found)
        req.limit = API_GATEWAY_LIMIT if found is None else _limit(found[0])
        return None

    def too_large(self, req: HttpWire, limit: int) -> RieError:
        fmt = self._format
        context = req.context
        if isinstance(context, tuple) and context[1] is not None:
            fmt = context[1][0].format
        answer = failure_answer(fmt, Failure.TOO_LARGE)
        self._metrics.http_answers[(fmt.value, answer.status)] += 1
        return FrontAnswer(answer)

    def handle(self, conn: Connection, req: HttpWire) -> None:
        (raw_path, raw_query), found = cast(tuple[tuple[str, str], _Found | None], req.context)
        req.context = None
        if found is None:
            log.info(
                "HTTP front: nothing serves %s %s (routes: --route or the functions' `routes`%s)",
                req.method,
                raw_path,
                f"; or {LAMBDA_URL_PREFIX}NAME/..." if len(self._bound) > 1 else "",
            )
            fmt = self._format
            self._reply(conn, req, fmt, failure_answer(fmt, Failure.NOT_FOUND))
            return
        bound, route, params, raw_path = found
        peer = conn.context
        if peer is None:
            # once per connection: where it comes from, and the port it reached
            name = conn.extra_info("peername")
            sock = conn.extra_info("sockname")
            source = str(name[0]) if isinstance(name, tuple) else "127.0.0.1"
            port = int(sock[1]) if isinstance(sock, tuple) else 0
            peer = conn.context = (source, port)
        source_ip, port = cast(tuple[str, int], peer)
        head = HttpRequest(
            req.method,
            raw_path,
            raw_query,
            req.raw,
            bytes(req.body),
            source_ip,
            req.version,
            port,
        )
        origin = head.header("origin")
        fmt = bound.format
        if bound.cors.enabled and is_preflight(head):
            # Function URLs answer preflights themselves, the function is not invoked
            preflight = bound.cors.preflight(
                origin,
                head.header("access-control-request-method"),
                head.header("access-control-request-headers"),
            )
            self._reply(conn, req, fmt, preflight, counted_by=bound.target.metrics)
            return
        request_id, trace_id = new_ids()
        info = EventInfo(request_id, trace_id, int(time.time() * 1000), route, params)
        payload = orjson.dumps(build_event(bound.api, head, info))
        if len(payload) > SYNC_PAYLOAD_LIMIT:
            # the event is over Lambda's limit: the invoke is refused before the function runs
            failure = Failure.TOO_LARGE if fmt is Format.FUNCTION_URL else Failure.REJECTED
            self._reply(conn, req, fmt, failure_answer(fmt, failure), bound, origin)
            return
        config = bound.target.config
        inv = Invocation(
            request_id,
            Request(payload=payload, trace_id=trace_id, invoked_function_arn=config.function_arn),
            config.timeout_s,
        )
        conn.park(req, _ignore)  # answered when the invocation ends (or never, if the client left)
        if bound.streaming:
            _Stream(self, conn, req, bound, inv, origin).start()
            return
        # when a slot is free now (the common case): no task, no future, as the Invoke API's
        # InvokeFunction; API Gateway's integration timeout is one timer
        pending = _Pending(self, conn, req, bound, origin)
        try:
            placed = bound.target.pool.try_place(inv, pending.done)
        except ServiceUnavailable:
            self._reply(conn, req, fmt, failure_answer(fmt, Failure.REJECTED), bound, origin)
            return
        if placed:
            if bound.integration_timeout_s is not None:
                pending.timer = asyncio.get_running_loop().call_later(
                    bound.integration_timeout_s, pending.timed_out, inv
                )
            return
        self._keep(asyncio.ensure_future(self._buffered(conn, req, bound, inv, origin)))

    # --- buffered --------------------------------------------------------------------------

    async def _buffered(
        self, conn: Connection, req: HttpWire, bound: _Bound, inv: Invocation, origin: str | None
    ) -> None:
        try:
            answer = await self._run(bound, inv)
        except Exception:
            log.exception("HTTP front: unexpected failure on %s", req.method)
            conn.send_rendered(refusal(self._key, 500), close=True)
            return
        self._reply(conn, req, bound.format, answer, bound, origin)

    def _keep(self, run: asyncio.Future[None]) -> None:
        # the invocation goes on in its environment even though no one waits for it any more
        self._background.add(run)
        run.add_done_callback(self._background.discard)
        run.add_done_callback(_consume)

    async def _run(self, bound: _Bound, inv: Invocation) -> HttpAnswer:
        """The answer to `inv` once it ends, or API Gateway's once it stops waiting (the path of
        an invocation that waits for a slot; see `_Pending` for one placed at once)."""
        fmt = bound.format
        try:
            # API Gateway stops waiting at its integration timeout; a Function URL waits as long
            # as the function runs. Giving up only stops the waiting: the environment still runs
            # the invocation to its end (pool.invoke is cancelled while it awaits the outcome)
            async with asyncio.timeout(bound.integration_timeout_s):
                await bound.target.pool.invoke(inv, bound.target.config.queue_timeout_s)
        except TimeoutError:
            log.warning(
                "%s: integration timed out after %g s; the invocation goes on",
                inv.request_id,
                bound.integration_timeout_s,
            )
            return failure_answer(fmt, Failure.INTEGRATION_TIMEOUT)
        except TooManyRequests:
            return failure_answer(fmt, Failure.THROTTLED)
        except ServiceUnavailable:
            return failure_answer(fmt, Failure.REJECTED)
        return self._result(fmt, inv, inv.outcome.body if inv.outcome else b"")

    def _result(self, fmt: Format, inv: Invocation, body: bytes) -> HttpAnswer:
        outcome = inv.outcome
        if outcome is None or outcome.function_error:
            return failure_answer(fmt, Failure.FUNCTION_ERROR)
        try:
            if inv.stream_content_type == INTEGRATION_CONTENT_TYPE:
                # a streamed http-integration-response read by a buffered front
                split = split_prelude(body)
                if split is None:
                    raise MalformedResult("the streamed response ended inside its prelude")
                prelude, rest = split
                status, headers = prelude_head(prelude)
                return HttpAnswer(status, headers, rest)
            return map_result(fmt, body)
        except MalformedResult as exc:
            log.warning("%s: malformed response for %s: %s", inv.request_id, fmt.value, exc)
            return failure_answer(fmt, Failure.MALFORMED)
        except Exception:
            # a result no check foresaw is still the function's bad result: its front's 502
            log.exception("%s: unmappable response for %s", inv.request_id, fmt.value)
            return failure_answer(fmt, Failure.MALFORMED)

    def _reply(
        self,
        conn: Connection,
        req: HttpWire,
        fmt: Format,
        answer: HttpAnswer,
        bound: _Bound | None = None,
        origin: str | None = None,
        counted_by: Metrics | None = None,
    ) -> None:
        """Send `answer`, with the CORS headers of `bound`, counted by `counted_by`, else by
        `bound`'s function, else as an answer given to no function."""
        if bound is not None:
            answer = with_cors(answer, bound.cors, origin)
        try:
            lines = _head_lines(answer.headers)
            status = answer.status
            # a 204 or 304 has no body whatever the function said (RFC 9110, 15.3.5 and 15.4.5)
            nobody = status == 204 or status == 304
            conn.send(
                status,
                b"" if nobody else answer.body,
                None,
                close=not req.keep_alive,
                headers=lines,
                encoding="utf-8",
                head_only=nobody or req.method == "HEAD",
            )
        except UnicodeEncodeError:  # a lone surrogate in a header value: not sendable
            answer = failure_answer(fmt, Failure.MALFORMED)
            self._reply(conn, req, fmt, answer, counted_by=counted_by)
            return
        metrics = counted_by or (self._metrics if bound is None else bound.target.metrics)
        metrics.http_answers[(fmt.value, answer.status)] += 1

    @staticmethod
    def _stream_head(inv: Invocation, data: bytes) -> tuple[HttpAnswer, bytes] | None:
        """Status and headers of a streamed answer, and the body bytes seen so far."""
        if inv.stream_content_type == INTEGRATION_CONTENT_TYPE:
            split = split_prelude(data)
            if split is None:
                return None
            prelude, rest = split
            status, headers = prelude_head(prelude)
            return HttpAnswer(status, headers), rest
        content_type = inv.stream_content_type or "application/octet-stream"
        return HttpAnswer(200, (("Content-Type", content_type),)), data


class _Pending:
    """A buffered answer owed to a client, for an invocation placed at once: given when the
    invocation ends, or at API Gateway's integration timeout if that comes first (the
    invocation then still runs to its end in its environment)."""

    __slots__ = ("answered", "bound", "conn", "front", "origin", "req", "timer")

    def __init__(
        self,
        front: HttpFront,
        conn: Connection,
        req: HttpWire,
        bound: _Bound,
        origin: str | None,
    ) -> None:
        self.front, self.conn, self.req, self.bound, self.origin = front, conn, req, bound, origin
        self.timer: asyncio.TimerHandle | None = None
        self.answered = False

    def done(self, inv: Invocation) -> None:
        if self.answered:
            return
        self.answered = True
        if self.timer is not None:
            self.timer.cancel()
        fmt = self.bound.format
        answer = self.front._result(fmt, inv, inv.outcome.body if inv.outcome else b"")
        self.front._reply(self.conn, self.req, fmt, answer, self.bound, self.origin)

    def timed_out(self, inv: Invocation) -> None:
        if self.answered:
            return
        self.answered = True
        log.warning(
            "%s: integration timed out after %g s; the invocation goes on",
            inv.request_id,
            self.bound.integration_timeout_s,
        )
        fmt = self.bound.format
        answer = failure_answer(fmt, Failure.INTEGRATION_TIMEOUT)
        self.front._reply(self.conn, self.req, fmt, answer, self.bound, self.origin)


def _head_lines(headers: Sequence[tuple[str, str]]) -> str:
    """The answer's header lines, with a Content-Type and a Date (as Function URLs and API
    Gateway send one) unless the function gave its own."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    content_type = date = False
    for name, _ in headers:
        lower = name.lower()
        content_type = content_type or lower == "content-type"
        date = date or lower == "date"
    if not content_type:
        lines += "Content-Type: application/octet-stream\r\n"
    if not date:
        lines += _date_line()
    return lines


_date: tuple[int, str] = (0, "")


def _date_line() -> str:
    """`Date: ...` for now, formatted once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, f"Date: {formatdate(now, usegmt=True)}\r\n")
    return _date[1]


def _ignore() -> None:
    """A buffered answer's client hung up: its answer is dropped when it comes (the core writes
    nothing to a closed connection); the invocation still runs to its end."""


class _Stream:
    """One streamed answer (Function URL, RESPONSE_STREAM): the head once the prelude is in,
    then each chunk as the runtime streams it, written straight to the client's connection. A
    client that reads slower than the runtime streams holds the runtime back (the core's
    `pause_writing`, through the runtime's socket), so that rie's memory does not grow."""

    __slots__ = ("bound", "conn", "front", "gone", "inv", "origin", "over", "pending", "req")

    def __init__(
        self,
        front: HttpFront,
        conn: Connection,
        req: HttpWire,
        bound: _Bound,
        inv: Invocation,
        origin: str | None,
    ) -> None:
        self.front, self.conn, self.req, self.bound = front, conn, req, bound
        self.inv, self.origin = inv, origin
        self.pending: bytes | None = b""  # None once the head is out
        self.gone = False  # the client hung up
        self.over = False  # answered (a 502 for a bad prelude): what follows is dropped

    def start(self) -> None:
        self.inv.on_chunk = self.chunk
        self.conn.park(self.req, self.on_gone)
        self.conn.on_backlog = self.backlog
        pool, config = self.bound.target.pool, self.bound.target.config
        run = asyncio.ensure_future(pool.invoke(self.inv, config.queue_timeout_s))
        self.front._keep(run)
        run.add_done_callback(self.finished)

    def backlog(self, behind: bool) -> None:
        if behind:
            log.debug("%s: the client is behind: the stream waits", self.inv.request_id)
        self.inv.hold_stream(behind)

    def on_gone(self) -> None:
        # the client hung up: the function still runs to its end, its chunks dropped
        self.gone = True
        self._let_go()

    def _let_go(self) -> None:
        self.conn.on_backlog = None
        self.inv.on_chunk = _drop
        self.inv.hold_stream(False)

    def chunk(self, data: bytes) -> None:
        if self.gone or self.over:
            return
        pending = self.pending
        if pending is None:
            self.conn.write_chunk(data)
            return
        pending += data
        fmt = self.bound.format
        try:
            head = HttpFront._stream_head(self.inv, pending)
            if head is None:
                if len(pending) > PRELUDE_LIMIT:
                    raise MalformedResult("the prelude never ends")
                self.pending = pending  # the prelude is not complete yet
                return
            answer, rest = head
            answer = with_cors(answer, self.bound.cors, self.origin)
            self.conn.begin_stream(answer.status, _head_lines(answer.headers), "utf-8")
        except (MalformedResult, UnicodeEncodeError) as exc:
            log.warning("%s: malformed streamed response: %s", self.inv.request_id, exc)
            self.over = True
            self._let_go()
            failure = failure_answer(fmt, Failure.MALFORMED)
            self.front._reply(self.conn, self.req, fmt, failure, self.bound, self.origin)
            return
        self.bound.target.metrics.http_answers[(fmt.value, answer.status)] += 1
        self.pending = None
        self.conn.write_chunk(rest)

    def finished(self, run: asyncio.Future[None]) -> None:
        if self.gone or self.over:
            return
        self._let_go()
        front, conn, req, bound, inv = self.front, self.conn, self.req, self.bound, self.inv
        fmt = bound.format
        outcome = inv.outcome
        if self.pending is not None:
            # nothing was streamed: a buffered answer, a refusal, or an error before any byte
            if run.cancelled():
                failure: Failure | None = Failure.REJECTED
            else:
                try:
                    failure = _refusal(run)
                except Exception:
                    log.exception("HTTP front: unexpected failure on %s", req.method)
                    conn.send_rendered(refusal(front._key, 500), close=True)
                    return
            if failure is not None:
                answer = failure_answer(fmt, failure)
            elif inv.stream_content_type is not None and outcome and not outcome.function_error:
                # a stream that ended before its first body byte
                try:
                    head = HttpFront._stream_head(inv, self.pending)
                except MalformedResult:
                    head = None
                answer = head[0] if head else failure_answer(fmt, Failure.MALFORMED)
            else:
                answer = front._result(fmt, inv, outcome.body if outcome else b"")
            front._reply(conn, req, fmt, answer, bound, self.origin)
            return
        if outcome is None or outcome.function_error:
            # an error after the first bytes: the status is gone, so the client sees the
            # response cut short (no final chunk), as a Function URL leaves it
            log.warning(
                "%s: the stream ended with an error; the response is cut short", inv.request_id
            )
            conn.abort()
            return
        conn.end_stream()


def _target(raw: str) -> tuple[str, str] | None:
    """(path, query) of a request-target as sent, neither decoded; None if it names no path.

    An absolute-form target (`GET http://host/p?q`, which a server must accept) gives its path
    and query; `*` (OPTIONS) and an authority (CONNECT) name nothing a function serves."""
    if not raw.startswith("/"):
        if not raw.lower().startswith(("http://", "https://")):
            return None
        parts = urlsplit(raw)
        return parts.path or "/", parts.query
    path, _, query = raw.partition("?")
    return path, query.partition("#")[0]


def _limit(bound: _Bound) -> int:
    return SYNC_PAYLOAD_LIMIT if bound.format is Format.FUNCTION_URL else API_GATEWAY_LIMIT


# a streamed http-integration-response's JSON prelude (status, headers, cookies) is small: one
# that has not ended within this many bytes is not one
PRELUDE_LIMIT = 1024 * 1024


def _consume(run: asyncio.Future[None]) -> None:
    if not run.cancelled():
        run.exception()  # retrieved here so that a refusal nobody awaited is not logged


def _drop(_: bytes) -> None:
    pass


def _refusal(run: asyncio.Future[None]) -> Failure | None:
    """What kept an invocation from running, when something did."""
    error = run.exception()
    if error is None:
        return None
    if isinstance(error, TooManyRequests):
        return Failure.THROTTLED
    if isinstance(error, ServiceUnavailable):
        return Failure.REJECTED
    raise error
