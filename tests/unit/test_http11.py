"""rie.http.protocol on its own: a real server on a loopback port, a test router, raw-socket clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

import pytest

from rie.http import protocol as http11
from rie.http.protocol import Connection, Request, Router, Server
from rie.model.errors import RequestEntityTooLarge, RieError, RouteMethodNotAllowed


class Echo:
    """POST: answers with the body and the headers (trailers included) it got."""

    limit = 100

    def check(self, conn: Connection, req: Request) -> RieError | None:
        if req.method != "POST":
            return RouteMethodNotAllowed()
        req.limit = self.limit
        return None

    def handle(self, conn: Connection, req: Request) -> None:
        doc = {"body": req.body.decode(), "trailer": req.headers.get("x-trailer")}
        conn.send(200, json.dumps(doc).encode(), close=not req.keep_alive)

    def too_large(self, req: Request, limit: int) -> RieError:
        return RequestEntityTooLarge(f"over {limit}")


class Parked:
    """GET: parked until the test answers it (or the client hangs up)."""

    def __init__(self) -> None:
        self.waiting: list[Connection] = []
        self.gone = 0
        self.changed = threading.Event()

    def check(self, conn: Connection, req: Request) -> RieError | None:
        return None

    def handle(self, conn: Connection, req: Request) -> None:
        def on_gone() -> None:
            self.gone += 1
            self.changed.set()

        conn.park(req, on_gone)
        self.waiting.append(conn)
        self.changed.set()

    def too_large(self, req: Request, limit: int) -> RieError:
        return RequestEntityTooLarge()


class Running:
    def __init__(self, **limits: float) -> None:
        self.loop = asyncio.new_event_loop()
        self.echo = Echo()
        self.parked = Parked()
        router = Router()
        router.add("/park", self.parked)
        router.add_prefix("/echo/", self.echo)
        self.server = Server(router, **limits)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.server.start("127.0.0.1", 0))

    def call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def soon(self, fn) -> None:  # type: ignore[no-untyped-def]
        done: Future[None] = Future()

        def run() -> None:
            try:
                fn()
                done.set_result(None)
            except BaseException as exc:  # handed to the test thread
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        done.result(10)

    def close(self) -> None:
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def srv() -> Iterator[Running]:
    r = Running()
    try:
        yield r
    finally:
        r.close()


def connect(srv: Running) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.server.port), timeout=10)


def read_answer(s: socket.socket, buf: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response from `s` (Content-Length framed); what follows stays in `buf`."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError(bytes(buf))
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError(rest)
        rest += chunk
    buf[:] = rest[n:]
    return int(lines[0].split(" ")[1]), headers, rest[:n]


def closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def test_content_length_and_keep_alive_and_pipelining(srv: Running) -> None:
    s, buf = connect(srv), bytearray()
    one = b"POST /echo/a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
    s.sendall(one + one.replace(b"abc", b"xyz"))  # two requests in one write
    assert read_answer(s, buf)[2] == b'{"body": "abc", "trailer": null}'
    assert read_answer(s, buf)[2] == b'{"body": "xyz", "trailer": null}'
    s.sendall(b"POST /echo/b HTTP/1.1\r\nContent-Length: 1\r\nConnection: close\r\n\r\n!")
    status, headers, _ = read_answer(s, buf)
    assert status == 200 and headers["connection"] == "close" and closed(s)


def test_chunked_body_with_trailers_sent_bytewise(srv: Running) -> None:
    s, buf = connect(srv), bytearray()
    data = (
        b"POST /echo/t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2;ext=1\r\nhe\r\n3\r\nllo\r\n0\r\nX-Trailer: late\r\n\r\n"
    )
    for i in range(len(data)):
        s.sendall(data[i : i + 1])
    status, _, body = read_answer(s, buf)
    assert status == 200 and json.loads(body) == {"body": "hello", "trailer": "late"}


def test_a_body_over_the_limit_is_refused_before_it_is_read_and_dropped(srv: Running) -> None:
    s, buf = connect(srv), bytearray()
    s.sendall(b"POST /echo/big HTTP/1.1\r\nContent-Length: 500\r\n\r\n")
    status, _, body = read_answer(s, buf)  # answered before any of the body was sent
    assert status == 413 and json.loads(body)["errorMessage"] == "over 100"
    s.sendall(b"x" * 500 + b"POST /echo/ok HTTP/1.1\r\nContent-Length: 2\r\n\r\nok")
    assert read_answer(s, buf)[0] == 200  # the refused body was drained: the connection lives


def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(srv: Running) -> None:
    s, buf = connect(srv), bytearray()
    s.sendall(b"POST /echo/big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n" + b"y" * 101)
    assert read_answer(s, buf)[0] == 413


@pytest.mark.parametrize(
    "data",
    [
        b"NOT HTTP\r\n\r\n",
        b"GET /echo/a HTTP/2\r\n\r\n",
        b"GET /echo/a HTTP/1.1\r\n bad: folded\r\n\r\n",
        b"POST /echo/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_a_malformed_request_gets_400_json_and_the_connection_closes(
    srv: Running, data: bytes
) -> None:
    s, buf = connect(srv), bytearray()
    s.sendall(data)
    status, headers, body = read_answer(s, buf)
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["errorType"] == "BadRequest"
    assert closed(s)


def test_unknown_path_and_method_get_404_and_405_and_keep_the_connection(srv: Running) -> None:
    s, buf = connect(srv), bytearray()
    s.sendall(b"GET /nowhere HTTP/1.1\r\n\r\nGET /echo/x HTTP/1.1\r\n\r\n")
    assert read_answer(s, buf)[0] == 404
    assert read_answer(s, buf)[0] == 405


def test_a_body_cut_short_by_a_half_close_is_answered(srv: Running) -> None:
    s, buf = connect(srv), bytearray()
    s.sendall(b"POST /echo/a HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
    s.shutdown(socket.SHUT_WR)
    status, _, body = read_answer(s, buf)
    assert status == 400 and json.loads(body)["errorType"] == "TruncatedHTTPRequest"


def test_a_parked_request_is_answered_later_and_pipelined_ones_wait(srv: Running) -> None:
    s, buf = connect(srv), bytearray()
    s.sendall(b"GET /park HTTP/1.1\r\n\r\nPOST /echo/a HTTP/1.1\r\nContent-Length: 1\r\n\r\n1")
    assert srv.parked.changed.wait(10)
    conn = srv.parked.waiting[0]
    # an answer that cannot be rendered leaves the request parked, to be answered properly
    with pytest.raises(UnicodeEncodeError):
        srv.soon(lambda: conn.send(200, b"", headers="X: \u20ac\r\n"))
    srv.soon(lambda: conn.send(200, b"later"))
    assert read_answer(s, buf)[2] == b"later"
    assert read_answer(s, buf)[0] == 200  # then the request queued behind it


def test_a_client_that_hangs_up_while_parked_is_let_go(srv: Running) -> None:
    s = connect(srv)
    s.sendall(b"GET /park HTTP/1.1\r\n\r\n")
    assert srv.parked.changed.wait(10)
    srv.parked.changed.clear()
    s.close()
    assert srv.parked.changed.wait(10) and srv.parked.gone == 1


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: \xc2\xb2",  # UTF-8 of the superscript two, a "digit" to str.isdigit
        b"Content-Length: \xb2",  # the same in Latin-1
        b"Content-Length: +5",
        b"Content-Length: -1",
        b"Content-Length: 5, 5",
        b"Content-Length: 5\r\nContent-Length: 6",
        b"Content-Length: 0x5",
        b"Content-Length: 5\r\nTransfer-Encoding: chunked",
        b"Transfer-Encoding: chunked\r\nContent-Length: 0",
        b"Transfer-Encoding: gzip, chunked",
    ],
)
def test_bad_body_framing_gets_400_json_and_the_connection_closes(
    srv: Running, framing: bytes
) -> None:
    s, buf = connect(srv), bytearray()
    s.sendall(b"POST /echo/a HTTP/1.1\r\n" + framing + b"\r\n\r\nhello")
    status, headers, body = read_answer(s, buf)
    assert status == 400 and headers["connection"] == "close"
    assert json.loads(body)["errorType"] == "BadRequest"
    assert closed(s)


@pytest.fixture
def quick() -> Iterator[Running]:
    """A server with tiny time limits."""
    r = Running(head_timeout_s=0.3, keepalive_timeout_s=0.3)
    try:
        yield r
    finally:
        r.close()


def wait_sweeps(srv: Running, n: int) -> None:
    start = srv.server.sweeps
    for _ in range(2000):
        if srv.server.sweeps >= start + n:
            return
        threading.Event().wait(0.005)
    raise AssertionError("the server stopped sweeping")


def test_a_head_trickled_byte_by_byte_gets_408_once_its_time_is_up(quick: Running) -> None:
    s, buf = connect(quick), bytearray()
    started = time.monotonic()
    for byte in b"GET /park HTTP/1.1\r\nX-Slow: " + b"a" * 2000:
        try:
            s.sendall(bytes([byte]))
        except OSError:
            break
        if select.select([s], [], [], 0.02)[0]:
            break  # answered
    status, headers, body = read_answer(s, buf)
    assert status == 408 and headers["connection"] == "close"
    assert json.loads(body)["errorType"] == "RequestTimeout"
    assert time.monotonic() - started >= 0.3
    assert closed(s)


def test_a_connection_that_never_speaks_is_closed(quick: Running) -> None:
    s = connect(quick)
    assert closed(s)  # blocks until the server closes it (or the socket's 10 s timeout)


def test_an_idle_keep_alive_connection_is_closed_quietly(quick: Running) -> None:
    s, buf = connect(quick), bytearray()
    s.sendall(b"POST /echo/a HTTP/1.1\r\nContent-Length: 1\r\n\r\n1")
    assert read_answer(s, buf)[0] == 200
    started = time.monotonic()
    assert s.recv(1) == b""  # closed, with no answer to nothing
    assert time.monotonic() - started >= 0.3 - 0.05


def test_a_parked_request_is_never_cut(quick: Running) -> None:
    s, buf = connect(quick), bytearray()
    s.sendall(b"GET /park HTTP/1.1\r\n\r\n")
    assert quick.parked.changed.wait(10)
    wait_sweeps(quick, int(3 * 0.3 / quick.server.tick) + 2)  # well past both limits
    conn = quick.parked.waiting[0]
    quick.soon(lambda: conn.send(200, b"at last"))
    assert read_answer(s, buf)[2] == b"at last"


def test_a_body_arriving_slowly_is_not_cut(quick: Running) -> None:
    s, buf = connect(quick), bytearray()
    s.sendall(b"POST /echo/a HTTP/1.1\r\nContent-Length: 2\r\n\r\n1")
    wait_sweeps(quick, int(3 * 0.3 / quick.server.tick) + 2)
    s.sendall(b"2")
    assert read_answer(s, buf)[0] == 200


class SmallSink:
    limit = 10

    def __init__(self) -> None:
        self.data = b""

    def add(self, data: bytes) -> None:
        self.data += data

    def cut_short(self) -> None:
        pass


class Sunk(Echo):
    """Passes the body to a sink whose limit is below the request's own."""

    def check(self, conn: Connection, req: Request) -> RieError | None:
        req.limit = 1000
        req.sink = SmallSink()
        return None


@pytest.mark.parametrize(
    ("path", "length", "status"),
    [
        ("/echo/a", 500, 413),  # over the route's limit
        ("/sunk", 500, 413),  # under the request's limit, over its sink's
        ("/echo/a", 5, 100),
        ("/sunk", 5, 100),
        ("/nowhere", 5, 404),
    ],
)
def test_expect_100_continue_gets_the_final_status_when_it_is_already_known(
    srv: Running, path: str, length: int, status: int
) -> None:
    srv.server.router.add("/sunk", Sunk())
    s, buf = connect(srv), bytearray()
    s.sendall(
        f"POST {path} HTTP/1.1\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n".encode()
    )
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    assert int(buf.split(b" ")[1]) == status, bytes(buf)


def test_a_refused_body_past_the_discard_limit_closes_the_connection_cleanly(
    srv: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http11, "DISCARD_LIMIT", 300)
    errors: list[object] = []
    srv.loop.call_soon_threadsafe(
        srv.loop.set_exception_handler, lambda _l, ctx: errors.append(ctx)
    )
    s, buf = connect(srv), bytearray()
    s.sendall(b"POST /echo/big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n" + b"y" * 101)
    assert read_answer(s, buf)[0] == 413  # refused; the rest is read and dropped, up to a point
    with contextlib.suppress(OSError):  # the server may have closed already
        s.sendall(b"\r\n12c\r\n" + b"z" * 300 + b"\r\n0\r\n\r\n")
    assert closed(s)
    srv.soon(lambda: None)  # the server's loop has run past it
    assert not errors, errors


def _uncached(head: bytes, dialect: http11.Dialect) -> Request | str:
    try:
        return http11._parse_head(head, dialect)
    except http11.BadRequest as exc:
        return f"{exc.status} {exc}"


def _cached(head: bytes, dialect: http11.Dialect) -> Request | str:
    try:
        return http11.parse_head(head, dialect)
    except http11.BadRequest as exc:
        return f"{exc.status} {exc}"


FIELDS = b"\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4"


@pytest.mark.parametrize(
    "line",
    [
        b"POST /2018-06-01/runtime/invocation/0f3c-2/response HTTP/1.1",
        b"POST /2018-06-01/runtime/invocation/9a1d-7/error?x=1 HTTP/1.1",
        b"GET /a HTTP/1.0",
        b"GET /a\nb HTTP/1.1",  # a bare line feed in the line
        b"GET  /a HTTP/1.1",  # malformed
        b"GET /a HTTP/2.0",  # unsupported version
        b"G@T /a HTTP/1.1",  # not a token
        b"GET /" + b"a" * 300 + b" HTTP/1.1",  # over a strict dialect's line limit
    ],
)
@pytest.mark.parametrize("strict", [False, True])
def test_a_head_whose_fields_were_parsed_before_parses_as_a_fresh_one(
    line: bytes, strict: bool
) -> None:
    def dialect() -> http11.Dialect:
        return http11.Dialect(line_limit=200, need_host=True) if strict else http11.Dialect()

    warm = dialect()
    assert isinstance(_cached(b"POST /first HTTP/1.1" + FIELDS, warm), Request)
    assert FIELDS in warm.fields  # the next head with these fields parses its line alone
    for d in (warm, dialect()):
        got, want = _cached(line + FIELDS, d), _uncached(line + FIELDS, dialect())
        assert got == want
    # the cached fields are copies: trailers added to one request reach no other
    first = _cached(b"POST /a HTTP/1.1" + FIELDS, warm)
    assert isinstance(first, Request)
    first.headers["x-trailer"] = "1"
    second = _cached(b"POST /b HTTP/1.1" + FIELDS, warm)
    assert isinstance(second, Request) and "x-trailer" not in second.headers


def test_cached_fields_without_host_still_fail_an_http11_line_that_needs_one() -> None:
    d = http11.Dialect(need_host=True)
    assert isinstance(_cached(b"GET /a HTTP/1.0\r\nAccept: */*", d), Request)
    assert _cached(b"GET /b HTTP/1.1\r\nAccept: */*", d) == "400 no Host header"
    keep = _cached(b"GET /c HTTP/1.0\r\nConnection: keep-alive", d)
    assert isinstance(keep, Request) and keep.keep_alive
    again = _cached(b"GET /d HTTP/1.1\r\nConnection: keep-alive", http11.Dialect())
    assert isinstance(again, Request) and again.keep_alive


def test_the_fields_cache_is_bounded() -> None:
    d = http11.Dialect()
    for i in range(3 * http11.HEAD_CACHE_SIZE):
        http11.parse_head(f"GET /{i} HTTP/1.1\r\nX-N: {i}".encode(), d)
    assert len(d.fields) <= http11.HEAD_CACHE_SIZE
    assert len(d.heads) <= http11.HEAD_CACHE_SIZE


@pytest.mark.parametrize("status", [200, 202, 204, 418, 299, 999])
def test_a_status_line_names_its_reason(status: int) -> None:
    assert http11.status_line(status) == f"HTTP/1.1 {status} {http11.reason(status)}\r\n"
    assert http11.status_line(status) == http11.status_line(status)
