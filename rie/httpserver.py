"""aiohttp plumbing shared by the Runtime API and the Invoke API.

One thing aiohttp does not do on its own: when a client half-closes its connection in the middle of
a body (sends fewer bytes than its Content-Length, then shuts down its write side), aiohttp drops
the connection, so the client never learns why. Lambda answers 400 `TruncatedHTTPRequest`; to be
able to, the request handler here keeps the write half open and fails the body read instead.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

log = logging.getLogger("rie")


def body_truncated(request: web.BaseRequest) -> bool:
    """Whether the client half-closed before sending all of this request's body."""
    return getattr(request.protocol, "truncated", False) is True


class _HalfCloseRequestHandler(RequestHandler):
    truncated = False
    _last_body: StreamReader | None = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # remember the newest body: aiohttp may have taken its message off the queue without
        # having made the request current yet when the end of input arrives. (`_messages` is
        # aiohttp's own; should it ever go, truncations are merely no longer answered.)
        messages = getattr(self, "_messages", None)
        if messages:
            self._last_body = messages[-1][1]

    def eof_received(self) -> bool | None:  # type: ignore[override]
        bodies = [payload for _, payload in getattr(self, "_messages", ())]
        if self._last_body is not None:
            bodies.append(self._last_body)
        unfinished = [body for body in bodies if not body.is_eof()]
        if not unfinished:
            return None  # nothing in progress: let the connection close as usual
        # end the body where it stopped; the handler sees `truncated` and answers 400
        self.truncated = True
        for body in unfinished:
            body.feed_eof()
        self.close()  # no further request can come on this connection: close once answered
        return True  # keep our write half open so that the answer can still be sent


class _HalfCloseServer(Server):
    def __call__(self) -> RequestHandler:
        return _HalfCloseRequestHandler(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """An AppRunner whose connections answer a truncated body instead of dropping it."""

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _HalfCloseServer
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
