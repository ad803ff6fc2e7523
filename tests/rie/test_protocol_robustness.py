"""The Runtime API's own HTTP/1.1 parser under awkward and hostile input: every legal way of
sending a request works, and no malformed input takes the endpoint down or loses an invocation."""

from __future__ import annotations

import random
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import RieProcess, rie

FRAGMENTS = Path(__file__).parent / "fixtures" / "fragment_runtime.py"
SCRIPTED = Path(__file__).parent / "fixtures" / "scripted.py"


@pytest.fixture(scope="module")
def fr() -> Iterator[RieProcess]:
    with rie(
        "--timeout", "10", "--max-concurrency", "1", "--", sys.executable, str(FRAGMENTS)
    ) as r:
        yield r


@pytest.mark.parametrize("style", ["bytewise", "chunked", "expect", "pipelined", "plain"])
def test_legal_but_awkward_requests_are_understood(fr: RieProcess, style: str) -> None:
    for n in range(3):
        reply = fr.invoke({"style": style, "n": n})
        assert reply.status == 200, reply.body
        assert reply.json() == {"echo": {"style": style, "n": n}}


def exchange(address: tuple[str, int], data: bytes, half_close: bool = True) -> bytes:
    # a request left open may never be answered (its body is still expected): do not wait long
    s = socket.create_connection(address, timeout=5 if half_close else 0.2)
    try:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


MALFORMED = [
    b"\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"GET /x HTTP/2.0\r\n\r\n",
    b"GET  /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n",
    b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY",
    b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\nBad Header Line\r\n\r\n",
    b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
    b"\x00\xff\xfe" * 100,
    b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: "
    + b"t" * 70000,
]


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[RieProcess, tuple[str, int]]]:
    with rie("--timeout", "10", "--", sys.executable, str(SCRIPTED)) as r:
        # the scripted runtime answers with its own environment, which names its Runtime API
        env = r.invoke({"do": [{"post": "response", "env": True}]}).json()
        assert isinstance(env, dict)
        host, _, port = env["AWS_LAMBDA_RUNTIME_API"].rpartition(":")
        yield r, (host, int(port))


def test_api_fixture_reports_its_address(api: tuple[RieProcess, tuple[str, int]]) -> None:
    _, address = api
    assert address[0] == "127.0.0.1" and address[1] > 0


@pytest.mark.parametrize("data", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_requests_get_an_error_and_the_endpoint_stays_up(
    api: tuple[RieProcess, tuple[str, int]], data: bytes
) -> None:
    r, address = api
    answer = exchange(address, data)
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 404, 405, 413, 431), answer[:200]
    assert r.invoke({"do": []}).status == 200


def test_random_garbage_never_takes_the_endpoint_down(
    api: tuple[RieProcess, tuple[str, int]],
) -> None:
    r, address = api
    rng = random.Random(1234)
    valid = (
        b"POST /2018-06-01/runtime/invocation/x/response HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    )
    for _ in range(60):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data))
            data[i] = rng.randrange(256)
        cut = rng.randint(1, len(data))
        exchange(address, bytes(data[:cut]), half_close=rng.random() < 0.7)
    assert r.invoke({"do": []}).status == 200


def test_a_next_whose_runtime_hung_up_gets_no_invocation() -> None:
    # two invocations per environment: a second `next` is a request for another invocation, so
    # nothing but the hang-up check keeps the invocation from the stranger
    flags = ("--timeout", "3", "--max-concurrency", "1", "--per-environment-concurrency", "2")
    with rie(*flags, "--", sys.executable, str(SCRIPTED)) as r:
        env = r.invoke({"do": [{"post": "response", "env": True}]}).json()
        assert isinstance(env, dict)
        host, _, port = env["AWS_LAMBDA_RUNTIME_API"].rpartition(":")
        # the runtime answers, then waits a second before its own `next`: a stranger's `next`
        # gets in first, and hangs up
        first = r.invoke({"do": [{"post": "response", "body": "{}"}, {"sleep": 1.0}]})
        assert first.status == 200
        stranger = socket.create_connection((host, int(port)))
        stranger.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
        stranger.close()
        reply = r.invoke({"do": []}, timeout=10)
        assert reply.status == 200 and not reply.header("X-Amz-Function-Error"), reply.body


def test_endless_trailers_are_refused_without_waiting_for_the_end(
    api: tuple[RieProcess, tuple[str, int]],
) -> None:
    r, address = api
    s = socket.create_connection(address, timeout=5)
    try:
        s.sendall(
            b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: "
        )
        s.sendall(b"t" * 70000)  # the connection stays open: no end of input to lean on
        answer = s.recv(65536)
    finally:
        s.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert r.invoke({"do": []}).status == 200
