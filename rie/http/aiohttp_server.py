"""aiohttp plumbing under the dashboard (`--dashboard`): what aiohttp's own HTTP/1.1 server does
not do for us. (The Invoke API, the environments' APIs and the HTTP front are on
rie/http/protocol.py: aiohttp is imported only when the dashboard is asked for.)

Invariants kept here, below the handlers:
- Every answer is an AWS error or the handler's own: the HTTP parser's rejections (bad request line,
  duplicate or signed Content-Length, Content-Length with Transfer-Encoding, oversized headers...)
  and any unexpected failure are rendered as JSON with `X-Amzn-ErrorType`, never aiohttp's plain text.
- A client that half-closes still gets its answer: after a complete request the write half stays
  open until the answer is out; in the middle of a body (fewer bytes than its Content-Length) the
  body read fails instead, so that the handler can answer 400 rather than drop the connection.
- No connection is held forever: a request head must be complete within `head_timeout_s` of its
  first byte (of the connection's start for the first request), else the client gets 408 and the
  connection is closed; a connection idle between requests is closed after `keepalive_timeout_s`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.http import RawRequestMessage
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from rie.model.errors import InvokeApiError, RequestTimeout, invoke_api_error

log = logging.getLogger("rie")

DEFAULT_HEAD_TIMEOUT_S = 10.0
DEFAULT_KEEPALIVE_TIMEOUT_S = 75.0


def body_truncated(request: web.BaseRequest) -> bool:
    """Whether the client half-closed before sending all of this request's body."""
    return getattr(request.protocol, "truncated", False) is True


def render(error: InvokeApiError) -> web.Response:
    return web.Response(status=error.status, body=error.body(), headers=error.headers())


def _parser_message(exc: BaseException | None, fallback: str | None) -> str:
    if isinstance(exc, LineTooLong):
        return "Request header fields too large: a line of the request head is over 8190 bytes"
    if isinstance(exc, HttpProcessingError) and exc.message:
        # aiohttp's messages quote the offending bytes (on later lines, or as a bytes repr):
        # keep what went wrong, not the caller's bytes
        what = re.sub(r"""\s*b['"].*$""", "", exc.message.splitlines()[0]).rstrip(": ")
        return "Malformed HTTP request: " + (what or "unreadable request head")
    return fallback or "Malformed HTTP request"


class _Handler(RequestHandler):
    truncated = False
    _input_ended = False  # the client half-closed after whole requests
    head_timeout_s = DEFAULT_HEAD_TIMEOUT_S
    _last_body: StreamReader | None = None
    _head_timer: asyncio.TimerHandle | None = None

    # --- time limits ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # a connection is opened to send a request: the first head is timed from here
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None and self.head_timeout_s > 0:
            loop = asyncio.get_running_loop()
            self._head_timer = loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._answer_owed():
            # an answer is still owed on this connection: it goes out, then the connection closes
            self.close()
            return
        error = RequestTimeout(
            f"The request head was not complete within {self.head_timeout_s:g} seconds"
        )
        head = (
            f"HTTP/1.1 {error.status} Request Timeout\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in error.headers().items())
            + f"Content-Length: {len(error.body())}\r\nConnection: close\r\n\r\n"
        )
        transport.write(head.encode("latin-1") + error.body())
        self.force_close()

    def _parsed(self) -> int:
        """How many request heads (or parser errors) aiohttp has read on this connection."""
        return int(getattr(self, "_request_count", 0))

    def _between_requests(self) -> bool:
        """No request head is half-read: the last request (if any) has all its body."""
        return self._last_body is None or self._last_body.is_eof()

    # --- input ----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        # (aiohttp's internals are read with getattr: should they change, the time limits and
        # the answers to truncations weaken, but requests are still served)
        if data and self._between_requests():
            # the first bytes of a new head: from here on it is a request, not an idle connection
            keepalive = getattr(self, "_keepalive_handle", None)
            if keepalive is not None:
                keepalive.cancel()
                self._keepalive_handle = None
            self._arm_head_timer()
        count = self._parsed()
        reading = None if self._between_requests() else self._last_body
        super().data_received(data)
        # remember the newest body: aiohttp may have taken its message off the queue without
        # having made the request current yet when the end of input arrives. (`_messages` is
        # aiohttp's own; should it ever go, truncations are merely no longer answered.)
        messages = getattr(self, "_messages", None)
        if messages:
            if reading is not None and not isinstance(messages[-1][0], RawRequestMessage):
                # the parser failed in the middle of a body (a bad chunk): aiohttp queues its
                # error as if it were a next request, and the body being read waits forever.
                # The request that body belongs to fails instead, and answers the error.
                error, _ = messages.pop()
                reading.set_exception(RequestPayloadError(getattr(error, "message", "")))
                return
            self._last_body = messages[-1][1]
            for i in range(max(len(messages) - (self._parsed() - count), 0), len(messages)):
                self._refuse_unknown_version(messages, i)
        if self._parsed() != count:
            # a head is complete. (Should the same bytes also start the next head, that one is
            # timed from its next bytes, or else bounded by the keep-alive time.)
            self._disarm_head_timer()

    @staticmethod
    def _refuse_unknown_version(messages: Any, i: int) -> None:
        """aiohttp takes `HTTP/2.0` (or 1.7...) in a request line and would answer in kind; only
        HTTP/1.0 and 1.1 are spoken here, so such a request is answered as a malformed one."""
        message, payload = messages[i]
        version = getattr(message, "version", None)
        if version is None or tuple(version) in ((1, 0), (1, 1)):
            return
        error_info = getattr(web_protocol, "_ErrInfo", None)  # aiohttp's own error marker
        if error_info is not None:
            text = f"Unsupported HTTP version HTTP/{version[0]}.{version[1]}"
            exc = HttpProcessingError(message=text)
            messages[i] = (error_info(status=400, exc=exc, message=text), payload)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        self._disarm_head_timer()
        bodies = [payload for _, payload in getattr(self, "_messages", ())]
        if self._last_body is not None:
            bodies.append(self._last_body)
        unfinished = [body for body in bodies if not body.is_eof()]
        if unfinished:
            # end the body where it stopped; the handler sees `truncated` and answers 400
            self.truncated = True
            for body in unfinished:
                body.feed_eof()
        elif not self._answer_owed():
            return None  # nothing in progress: let the connection close as usual
        # no further request can come on this connection: close it once every request already
        # received is answered (`finish_response` closes after the last of those queued)
        self._input_ended = True
        if not getattr(self, "_messages", None):
            self.close()
        return True  # keep our write half open so that the answers can still be sent

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if isinstance(resp, web.HTTPException) and resp.status >= 400:
            # raised by aiohttp itself (its router, on a request-target it cannot route)
            resp = render(invoke_api_error(resp.status, resp.reason))
        done = await super().finish_response(request, resp, start_time)
        if self._input_ended and not getattr(self, "_messages", None):
            self.close()
        return done

    def _answer_owed(self) -> bool:
        """Whether a complete request on this connection is still to be answered."""
        waiter = getattr(self, "_waiter", None)
        idle = waiter is not None and not waiter.done()
        return bool(getattr(self, "_messages", None)) or not idle

    # --- errors below the handlers ----------------------------------------------------------------

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's rejections and unexpected failures, as AWS errors (aiohttp renders text)."""
        if request.writer.output_size > 0:
            # part of an answer is out already: nothing else can be said on this connection
            raise ConnectionError("an answer was already started; the connection is dropped")
        if status >= 500:
            where = f"{request.method} {request.path}"
            log.error("Invoke API: unexpected failure on %s", where, exc_info=exc)
            text = "Internal error"
        else:
            log.debug("Invoke API: refused a malformed request: %s", exc)
            text = _parser_message(exc, message)
        response = render(invoke_api_error(status, text))
        response.force_close()
        return response


class _Server(Server):
    head_timeout_s = DEFAULT_HEAD_TIMEOUT_S

    def __call__(self) -> RequestHandler:
        handler = _Handler(self, loop=self._loop, **self._kwargs)
        handler.head_timeout_s = self.head_timeout_s
        return handler


class Runner(web.AppRunner):
    """An AppRunner whose connections keep the invariants in this module's docstring."""

    def __init__(
        self,
        app: web.Application,
        *,
        head_timeout_s: float = DEFAULT_HEAD_TIMEOUT_S,
        keepalive_timeout_s: float = DEFAULT_KEEPALIVE_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, keepalive_timeout=keepalive_timeout_s, **kwargs)
        self.head_timeout_s = head_timeout_s

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _Server
        assert isinstance(server, _Server)
        server.head_timeout_s = self.head_timeout_s
        return server


async def listen(
    app: web.Application, host: str, port: int, *, fallback: bool, **runner_args: Any
) -> tuple[Runner, int]:
    """Serve `app` on host:port; with `fallback`, a busy port gives way to a free one."""
    runner = Runner(app, access_log=None, handle_signals=False, **runner_args)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    except OSError as exc:
        if not fallback or port == 0 or exc.errno != errno.EADDRINUSE:
            await runner.cleanup()
            raise
        log.warning("%s:%d is in use, using a free port instead", host, port)
        await web.TCPSite(runner, host, 0).start()
    return runner, int(runner.addresses[-1][1])
