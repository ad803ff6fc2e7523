"""A small response takes the next `next` with it (HTTP/1.1 pipelining), and the runtime keeps
every promise of the one-request-at-a-time exchange: a rejected response is still reported, a
connection the server closes after its 202 is replaced, SIGTERM while waiting still ends it
cleanly (real runtime process, a raw-socket Runtime API that controls when each answer goes)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.runtime.fake_api import start, stop

BASE = "/2018-06-01/runtime/invocation"
ACK = b'HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"status":"OK"}\n'
ACK_CLOSE = ACK.replace(b"Content-Length", b"Connection: close\r\nContent-Length")
TIMEOUT = 15.0


class RawApi:
    """One listening socket; the test reads requests and writes answers by hand."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.conn: socket.socket | None = None
        self.buf = b""

    def accept(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(TIMEOUT)
        self.buf = b""

    def request(self) -> tuple[str, str, bytes]:
        """The next complete request on the connection: method, path, body."""
        assert self.conn is not None
        while b"\r\n\r\n" not in self.buf:
            chunk = self.conn.recv(65536)
            assert chunk, "the runtime closed the connection"
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        while len(rest) < length:
            chunk = self.conn.recv(65536)
            assert chunk, "the runtime closed the connection"
            rest += chunk
        self.buf = rest[length:]
        return method, path, rest[:length]

    def send_event(self, request_id: str, payload: object) -> None:
        assert self.conn is not None
        body = json.dumps(payload).encode()
        self.conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Lambda-Runtime-Aws-Request-Id: {request_id}\r\n".encode()
            + b"Lambda-Runtime-Deadline-Ms: 9999999999999\r\n"
            + b"Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:012345678912:function:f\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@pytest.fixture
def api() -> Iterator[RawApi]:
    raw = RawApi()
    try:
        yield raw
    finally:
        raw.close()


def serve_one(api: RawApi, request_id: str) -> bytes:
    """Hand out one event; the response and the next `next` both arrive before any answer."""
    api.send_event(request_id, {"n": request_id})
    method, path, body = api.request()
    assert (method, path) == ("POST", f"{BASE}/{request_id}/response")
    # the 202 has not been sent, and `next` is already here: it went out with the response
    assert api.request()[:2] == ("GET", f"{BASE}/next")
    return body


def started(api: RawApi) -> subprocess.Popen[bytes]:
    proc = start("ours", "results.echo", api)  # type: ignore[arg-type]
    api.accept()
    assert api.request()[:2] == ("GET", f"{BASE}/next")
    return proc


def test_the_next_next_goes_out_with_the_response(api: RawApi) -> None:
    proc = started(api)
    try:
        for i in range(4):  # the first ones and those after the 202's length is known
            body = serve_one(api, f"id-{i}")
            assert json.loads(body)["event"] == {"n": f"id-{i}"}
            assert api.conn is not None
            api.conn.sendall(ACK)
    finally:
        stop(proc)


def test_a_rejected_response_is_still_reported(api: RawApi) -> None:
    proc = started(api)
    try:
        for i in range(3):
            serve_one(api, f"id-{i}")
            assert api.conn is not None
            api.conn.sendall(ACK)
        serve_one(api, "id-3")
        body = b'{"errorMessage":"boom","errorType":"ServiceException"}'
        api.conn.sendall(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        code = proc.wait(TIMEOUT)  # a 500 is a container error: the runtime leaves
    finally:
        out = stop(proc)
    assert code == 1, out
    assert "refused the response: 500" in out, out


def test_a_connection_closed_after_the_202_is_replaced_and_next_asked_again(
    api: RawApi,
) -> None:
    proc = started(api)
    try:
        serve_one(api, "id-0")
        assert api.conn is not None
        api.conn.sendall(ACK_CLOSE)
        api.accept()  # the pipelined `next` died with the old connection: it comes again
        assert api.request()[:2] == ("GET", f"{BASE}/next")
        body = serve_one(api, "id-1")
        assert json.loads(body)["event"] == {"n": "id-1"}
    finally:
        stop(proc)


def test_sigterm_while_waiting_behind_a_response_exits_cleanly(api: RawApi) -> None:
    proc = started(api)
    try:
        for i in range(3):  # by now the wait lasts until the next event starts arriving
            serve_one(api, f"id-{i}")
            assert api.conn is not None
            api.conn.sendall(ACK)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(TIMEOUT)
    finally:
        out = stop(proc)
    assert code == 0, out


def _unread_by_runtime(api: RawApi) -> int | None:
    """Bytes waiting in the runtime's receive queue (from /proc/net/tcp), None if not found."""
    assert api.conn is not None
    port = api.conn.getpeername()[1]
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                return int(fields[4].split(":")[1], 16)
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/tcp")
def test_an_event_that_arrives_in_pieces_is_read_whole(api: RawApi) -> None:
    proc = started(api)
    try:
        for i in range(3):  # by now the runtime waits with its receive low-water mark set
            serve_one(api, f"id-{i}")
            assert api.conn is not None
            api.conn.sendall(ACK)
        api.send_event("id-3", {"n": "id-3", "pad": "x" * 400})
        method, path, _ = api.request()
        assert (method, path) == ("POST", f"{BASE}/id-3/response")
        assert api.request()[:2] == ("GET", f"{BASE}/next")
        event = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Lambda-Runtime-Aws-Request-Id: id-4\r\n"
            b"Lambda-Runtime-Deadline-Ms: 9999999999999\r\nContent-Length: 12\r\n\r\n"
            b'{"n": "id-4"}'
        )
        event = event.replace(b"Content-Length: 12", b"Content-Length: 13")
        # the 202 and all of the event but its last 3 bytes; those come once the runtime has
        # taken the rest (fewer bytes than the low-water mark: it must not wait for more)
        api.conn.sendall(ACK + event[:-3])
        deadline = time.monotonic() + TIMEOUT
        while _unread_by_runtime(api) != 0:
            assert time.monotonic() < deadline, "the runtime never read the first piece"
            time.sleep(0.005)
        api.conn.sendall(event[-3:])
        method, path, body = api.request()
        assert (method, path) == ("POST", f"{BASE}/id-4/response")
        assert json.loads(body)["event"] == {"n": "id-4"}
    finally:
        stop(proc)
