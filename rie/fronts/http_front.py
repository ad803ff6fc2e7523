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
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

import orjson
from aiohttp import web

from rie.api.invoke import new_ids
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
from rie.fronts.server import Refusal, refusal_for
from rie.http.aiohttp_server import body_truncated
from rie.model.errors import SYNC_PAYLOAD_LIMIT, ServiceUnavailable, TooManyRequests
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


class HttpFront:
    """Routes requests to targets: by route across every function; with several functions,
    `/lambda-url/NAME/...` to NAME; with one function and no routes, every request to it."""

    def __init__(self, targets: Sequence[Target], unrouted: Metrics) -> None:
        """`unrouted` counts the answers given before a target was found (no route matched)."""
        self._bound = [_Bound.of(t) for t in targets]
        self._metrics = unrouted
        self._routes = [(route, b) for b in self._bound for route in b.routes]
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

    def build_app(self) -> web.Application:
        # limits are enforced while reading, before buffering; aiohttp's own is a backstop
        app = web.Application(client_max_size=API_GATEWAY_LIMIT + 1)
        app.router.add_route("*", "/{tail:.*}", self.handle, expect_handler=self._expect)
        return app

    @property
    def refusal(self) -> Refusal:
        """How the front refuses a request below its handler (malformed, unroutable)."""
        fmt = self._bound[0].format if self._bound else Format.HTTP_API
        return refusal_for("Message" if fmt is Format.FUNCTION_URL else "message")

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """`Expect: 100-continue`: a body over the limit is refused at once, before the client
        sends it (as the Invoke API does); any other expectation is unmet (417)."""
        if request.headers.get("Expect", "").lower() != "100-continue":
            return self.refusal(417, "Expectation Failed")
        target = _target(request.raw_path)
        found = None if target is None else self._route(request.method, target[0])
        if found is not None:
            bound = found[0]
            declared = request.content_length
            if declared is not None and declared > _limit(bound):
                return self._refuse(Failure.TOO_LARGE, bound.format)
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the answer itself has not begun
        return None

    def _refuse(self, failure: Failure, fmt: Format | None = None) -> web.Response:
        fmt = fmt or (self._bound[0].format if self._bound else Format.HTTP_API)
        response = self._answer(fmt, failure_answer(fmt, failure))
        # the body the client may still send is not read: the connection ends with the answer
        response.force_close()
        return response

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
        found = match_route([r for r, _ in self._routes], method, unquote(raw_path))
        if found is None:
            return None
        route, params = found
        bound = next(b for r, b in self._routes if r is route)
        return bound, route, params, raw_path

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

    async def handle(self, request: web.Request) -> web.StreamResponse:
        target = _target(request.raw_path)
        if target is None:
            return self._refuse(Failure.BAD_REQUEST)
        raw_path, raw_query = target
        peer = request.transport.get_extra_info("peername") if request.transport else None
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        head = HttpRequest(
            method=request.method,
            raw_path=raw_path,
            raw_query=raw_query,
            headers=tuple(
                (k.decode("latin-1"), v.decode("utf-8", "replace")) for k, v in request.raw_headers
            ),
            source_ip=peer[0] if peer else "127.0.0.1",
            protocol=f"HTTP/{request.version.major}.{request.version.minor}",
            port=sockname[1] if sockname else 0,
        )
        found = self._route(head.method, raw_path)
        if found is None:
            log.info(
                "HTTP front: nothing serves %s %s (routes: --route or the functions' `routes`%s)",
                head.method,
                raw_path,
                f"; or {LAMBDA_URL_PREFIX}NAME/..." if len(self._bound) > 1 else "",
            )
            fmt = self._bound[0].format if self._bound else Format.HTTP_API
            return self._answer(fmt, failure_answer(fmt, Failure.NOT_FOUND))
        bound, route, params, raw_path = found
        origin = head.header("origin")
        if bound.cors.enabled and is_preflight(head):
            # Function URLs answer preflights themselves, the function is not invoked
            preflight = bound.cors.preflight(
                origin,
                head.header("access-control-request-method"),
                head.header("access-control-request-headers"),
            )
            return self._answer(bound.format, preflight, counted_by=bound.target.metrics)
        try:
            body = await _read_body(request, _limit(bound))
        except ConnectionResetError:
            # the client half-closed before sending all of its body: no one to invoke for
            return self._answer(bound.format, failure_answer(bound.format, Failure.BAD_REQUEST))
        if body is None:
            return self._answer(bound.format, failure_answer(bound.format, Failure.TOO_LARGE))
        req = HttpRequest(
            head.method,
            raw_path,
            head.raw_query,
            head.headers,
            body,
            head.source_ip,
            head.protocol,
            head.port,
        )
        request_id, trace_id = new_ids()
        info = EventInfo(request_id, trace_id, int(time.time() * 1000), route, params)
        payload = orjson.dumps(build_event(bound.api, req, info))
        if len(payload) > SYNC_PAYLOAD_LIMIT:
            # the event is over Lambda's limit: the invoke is refused before the function runs
            failure = Failure.TOO_LARGE if bound.format is Format.FUNCTION_URL else Failure.REJECTED
            return self._answer(bound.format, failure_answer(bound.format, failure), bound, origin)
        config = bound.target.config
        inv = Invocation(
            request_id,
            Request(
                payload=payload,
                trace_id=trace_id,
                invoked_function_arn=config.function_arn,
            ),
            config.timeout_s,
        )
        if bound.streaming:
            return await self._stream(request, bound, inv, origin)
        answer = await self._run(bound, inv)
        return self._answer(bound.format, answer, bound, origin)

    # --- buffered --------------------------------------------------------------------------

    def _keep(self, run: asyncio.Future[None]) -> None:
        # the invocation goes on in its environment even though no one waits for it any more
        self._background.add(run)
        run.add_done_callback(self._background.discard)
        run.add_done_callback(_consume)

    async def _run(self, bound: _Bound, inv: Invocation) -> HttpAnswer:
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

    def _answer(
        self,
        fmt: Format,
        answer: HttpAnswer,
        bound: _Bound | None = None,
        origin: str | None = None,
        counted_by: Metrics | None = None,
    ) -> web.Response:
        """The answer, with the CORS headers of `bound`, counted by `counted_by`, else by
        `bound`'s function, else as an answer given to no function."""
        if bound is not None:
            answer = with_cors(answer, bound.cors, origin)
        metrics = counted_by or (self._metrics if bound is None else bound.target.metrics)
        metrics.http_answers[(fmt.value, answer.status)] += 1
        response = web.Response(status=answer.status, body=answer.body)
        for name, value in answer.headers:
            response.headers.add(name, value)
        return response

    # --- streamed (Function URL, RESPONSE_STREAM) ------------------------------------------

    async def _stream(
        self, request: web.Request, bound: _Bound, inv: Invocation, origin: str | None
    ) -> web.StreamResponse:
        chunks = _Chunks(inv)
        inv.on_chunk = chunks.put
        run = asyncio.ensure_future(
            bound.target.pool.invoke(inv, bound.target.config.queue_timeout_s)
        )
        self._keep(run)
        run.add_done_callback(lambda _: chunks.end())
        try:
            return await self._relay(request, bound, inv, origin, run, chunks)
        finally:
            chunks.close()  # whatever happened, the runtime's stream is not held any more

    async def _relay(
        self,
        request: web.Request,
        bound: _Bound,
        inv: Invocation,
        origin: str | None,
        run: asyncio.Future[None],
        chunks: _Chunks,
    ) -> web.StreamResponse:
        fmt = bound.format
        response: web.StreamResponse | None = None
        pending = b""
        try:
            while (chunk := await chunks.get()) is not None:
                if response is None:
                    pending += chunk
                    head = self._stream_head(inv, pending)
                    if head is None:
                        if len(pending) > PRELUDE_LIMIT:
                            raise MalformedResult("the prelude never ends")
                        continue  # the prelude is not complete yet
                    answer, pending = head
                    answer = with_cors(answer, bound.cors, origin)
                    bound.target.metrics.http_answers[(fmt.value, answer.status)] += 1
                    response = web.StreamResponse(status=answer.status)
                    for name, value in answer.headers:
                        response.headers.add(name, value)
                    response.enable_chunked_encoding()
                    await response.prepare(request)
                    chunk = pending
                if chunk:
                    await response.write(chunk)
        except MalformedResult as exc:
            log.warning("%s: malformed streamed response: %s", inv.request_id, exc)
            inv.on_chunk = _drop
            return self._answer(fmt, failure_answer(fmt, Failure.MALFORMED), bound, origin)
        except ConnectionResetError:
            chunks.close()  # the client hung up: the function still runs to its end
            await asyncio.shield(run)
            return response or web.Response(status=499)
        await asyncio.wait({run})
        if response is None:
            # nothing was streamed: a buffered answer, a refusal, or an error before any byte
            failure = _refusal(run)
            if failure is not None:
                return self._answer(fmt, failure_answer(fmt, failure), bound, origin)
            outcome = inv.outcome
            if inv.stream_content_type is not None and outcome and not outcome.function_error:
                # a stream that ended before its first body byte
                try:
                    head = self._stream_head(inv, pending)
                except MalformedResult:
                    head = None
                answer = head[0] if head else failure_answer(fmt, Failure.MALFORMED)
                return self._answer(fmt, answer, bound, origin)
            answer = self._result(fmt, inv, inv.outcome.body if inv.outcome else b"")
            return self._answer(fmt, answer, bound, origin)
        outcome = inv.outcome
        if outcome is None or outcome.function_error:
            # an error after the first bytes: the status is gone, so the client sees the
            # response cut short (no final chunk), as a Function URL leaves it
            log.warning(
                "%s: the stream ended with an error; the response is cut short", inv.request_id
            )
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response

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


# a streamed answer's chunks waiting for its client: past the high mark the runtime's stream is
# held (its socket is not read), under the low mark it goes on
STREAM_HIGH_WATER = 1024 * 1024
STREAM_LOW_WATER = 256 * 1024
# a streamed http-integration-response's JSON prelude (status, headers, cookies) is small: one
# that has not ended within this many bytes is not one
PRELUDE_LIMIT = 1024 * 1024


class _Chunks:
    """The chunks of one streamed answer on their way to its client, bounded in bytes."""

    __slots__ = ("_ever_held", "_held", "_inv", "_queue", "_size")

    def __init__(self, inv: Invocation) -> None:
        self._inv = inv
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._size = 0
        self._held = False
        self._ever_held = False

    def put(self, chunk: bytes) -> None:
        self._queue.put_nowait(chunk)
        self._size += len(chunk)
        if not self._held and self._size > STREAM_HIGH_WATER:
            self._held = True
            if not self._ever_held:
                self._ever_held = True
                log.debug("%s: the client is behind: the stream waits", self._inv.request_id)
            self._inv.hold_stream(True)

    def end(self) -> None:
        self._queue.put_nowait(None)

    async def get(self) -> bytes | None:
        chunk = await self._queue.get()
        if chunk is not None:
            self._size -= len(chunk)
            if self._held and self._size <= STREAM_LOW_WATER:
                self._held = False
                self._inv.hold_stream(False)
        return chunk

    def close(self) -> None:
        """No one reads any more: what is queued goes, and the stream is let go."""
        self._inv.on_chunk = _drop
        while not self._queue.empty():
            self._queue.get_nowait()
        self._size = 0
        if self._held:
            self._held = False
            self._inv.hold_stream(False)


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


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to be over `limit` (before buffering it)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        return None
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > limit:
            return None
    if body_truncated(request):
        raise ConnectionResetError("the client sent less than it announced")
    return bytes(body)
