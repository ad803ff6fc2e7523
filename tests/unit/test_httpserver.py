"""The Invoke API's HTTP plumbing on its own (rie/http/aiohttp_server.py), over a real socket, with handlers
made to fail: an unexpected failure is a JSON AWS error, and one after the answer began drops the
connection instead of sending a second answer."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from rie.http.aiohttp_server import listen


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
