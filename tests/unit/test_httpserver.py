"""The HTTP plumbing of the Invoke API (rie/http/protocol.py in the Invoke API's dialect) and of the
dashboard (rie/http/aiohttp_server.py) on their own, over a real socket, with handlers made to
fail: an unexpected failure is a JSON AWS error, and one after the answer began drops the
connection instead of sending a second answer."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from rie.api.invoke import DIALECT
from rie.http.aiohttp_server import listen
from rie.http.protocol import Connection, Request, Router, Server
from rie.model.errors import RieError


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()


async def _serve_and_ask(handler: web.Handler, data: bytes) -> bytes:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner, port = await listen(app, "127.0.0.1", 0, fallback=False, head_timeout_s=5)
    try:
        return await _exchange(port, data)
    finally:
        await runner.cleanup()


async def _fails(request: web.Request) -> web.StreamResponse:
    raise RuntimeError("a bug")


async def _fails_midway(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"partial")
    raise RuntimeError("a bug after the answer began")


def test_an_unexpected_failure_is_a_json_service_exception() -> None:
    answer = asyncio.run(_serve_and_ask(_fails, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 "), answer
    assert b"Content-Type: application/json" in head
    assert b"X-Amzn-ErrorType: ServiceException" in head
    assert json.loads(body) == {"Type": "User", "message": "Internal error"}


def test_a_failure_after_the_answer_began_drops_the_connection() -> None:
    answer = asyncio.run(_serve_and_ask(_fails_midway, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert answer.count(b"HTTP/1.1 ") == 1, answer


def test_a_routing_refusal_by_aiohttp_is_json() -> None:
    async def only_root(request: web.Request) -> web.StreamResponse:
        return web.Response(text="root")

    async def run() -> bytes:
        app = web.Application()
        app.router.add_get("/", only_root)
        runner, port = await listen(app, "127.0.0.1", 0, fallback=False)
        try:
            return await _exchange(
                port, b"DELETE /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
        finally:
            await runner.cleanup()

    answer = asyncio.run(run())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 "), answer
    assert b"X-Amzn-ErrorType: UnknownOperationException" in head
    assert json.loads(body)["Type"] == "User"


# --- the same, on the Invoke API's own server ------------------------------------------------


class _Failing:
    """A route that fails unexpectedly, before its answer or (`midway`) after it began."""

    def __init__(self, midway: bool = False) -> None:
        self.midway = midway

    def check(self, conn: Connection, req: Request) -> RieError | None:
        return None

    def handle(self, conn: Connection, req: Request) -> None:
        if self.midway:
            conn.park(req, lambda: None)
            conn.begin_stream(200, "Content-Type: text/plain\r\n")
            conn.write_chunk(b"partial")
        raise RuntimeError("a bug")

    def too_large(self, req: Request, limit: int) -> RieError:
        raise AssertionError("no limit here")


async def _core_serve_and_ask(route: _Failing | None, data: bytes) -> bytes:
    router = Router(DIALECT)
    if route is not None:
        router.add("/x", route)
    server = Server(router, head_timeout_s=5)
    await server.start("127.0.0.1", 0, fallback=False)
    try:
        return await _exchange(server.port, data)
    finally:
        await server.close()


def test_core_an_unexpected_failure_is_a_json_service_exception() -> None:
    answer = asyncio.run(_core_serve_and_ask(_Failing(), b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 "), answer
    assert b"Content-Type: application/json" in head
    assert b"X-Amzn-ErrorType: ServiceException" in head
    assert json.loads(body) == {"Type": "User", "message": "Internal error"}


def test_core_a_failure_after_the_answer_began_drops_the_connection() -> None:
    data = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = asyncio.run(_core_serve_and_ask(_Failing(midway=True), data))
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert answer.count(b"HTTP/1.1 ") == 1, answer


def test_core_a_request_no_route_takes_is_json() -> None:
    data = b"DELETE /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = asyncio.run(_core_serve_and_ask(None, data))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 "), answer
    assert b"X-Amzn-ErrorType: UnknownOperationException" in head
    assert json.loads(body)["Type"] == "User"
