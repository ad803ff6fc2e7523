"""The HTTP front's connections: rie's aiohttp plumbing (time limits, half-closes, truncations)
with every refusal below the handler answered in the front's own shape, never the Invoke API's.

The HTTP parser's rejections (a malformed request line or header, a request-target aiohttp cannot
route such as `OPTIONS *` or `CONNECT host:443`), an unexpected failure and a request head that
never completes are answered as the function's front answers its failures: `{"message": ...}`
for API Gateway, `{"Message": ...}` for a Function URL, with no `X-Amzn-ErrorType`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from rie.http.aiohttp_server import Runner, _Handler, _Server

log = logging.getLogger("rie")

# what the front answers below its handler: (status, reason) -> the whole answer
Refusal = Callable[[int, str], web.Response]


def refusal_for(key: str) -> Refusal:
    """The front's refusals, keyed `message` (API Gateway) or `Message` (a Function URL)."""

    def refuse(status: int, reason: str) -> web.Response:
        body = json.dumps({key: reason}).encode()
        response = web.Response(status=status, body=body, content_type="application/json")
        response.force_close()  # what follows a refused request on its connection is unknown
        return response

    return refuse


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Bad Request"


class _FrontHandler(_Handler):
    refusal: Refusal = staticmethod(refusal_for("message"))

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # part of an answer is out already: nothing else can be said on this connection
            raise ConnectionError("an answer was already started; the connection is dropped")
        if status >= 500:
            log.error("HTTP front: unexpected failure on %s", request.method, exc_info=exc)
        else:
            log.debug("HTTP front: refused a malformed request: %s", exc or message)
        return self.refusal(status, _reason(status))

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if isinstance(resp, web.HTTPException) and resp.status >= 400:
            # raised by aiohttp's router, on a request-target that is not a path (`*`,
            # `host:port`): the request is malformed for this front
            status = 400 if not request.raw_path.startswith("/") else resp.status
            resp = self.refusal(status, _reason(status))
        return await super().finish_response(request, resp, start_time)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._answer_owed():
            self.close()
            return
        answer = self.refusal(408, "Request Timeout")
        body = answer.body if isinstance(answer.body, bytes) else b""
        head = (
            "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        transport.write(head.encode("latin-1") + body)
        self.force_close()


class _FrontServer(_Server):
    refusal: Refusal = staticmethod(refusal_for("message"))

    def __call__(self) -> RequestHandler:
        handler = _FrontHandler(self, loop=self._loop, **self._kwargs)
        handler.head_timeout_s = self.head_timeout_s
        handler.refusal = self.refusal
        return handler


class _FrontRunner(Runner):
    def __init__(self, app: web.Application, refusal: Refusal, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._refusal = refusal

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _FrontServer
        assert isinstance(server, _FrontServer)
        server.refusal = self._refusal
        return server


async def listen(
    app: web.Application, refusal: Refusal, host: str, port: int, **runner_args: Any
) -> tuple[Runner, int]:
    """Serve the front's `app` on host:port, refusing in the front's shape with `refusal`."""
    runner = _FrontRunner(app, refusal, access_log=None, handle_signals=False, **runner_args)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[-1][1])
