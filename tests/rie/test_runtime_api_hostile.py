"""The Runtime API end to end under input that must not wedge an environment, make a runtime spin
or take the endpoint down: real rie, real runtimes, real sockets."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.helpers import RieProcess
from tests.rie.conftest import BASE, good_invoke, scripted


def assert_refused_or_failed(r: RieProcess, headers: dict[str, str]) -> None:
    """Refused by the Invoke API (400), or ended with a function error: at once, never stuck."""
    reply = r.invoke({"x": 1}, headers=headers, timeout=10)
    if reply.status == 400:
        assert reply.header("X-Amzn-ErrorType") == "InvalidRequestContentException", reply.body
        return
    assert reply.status == 200, (reply.status, reply.body)
    assert reply.header("X-Amz-Function-Error") == "Unhandled", reply.body
    assert json.loads(reply.body)["errorType"] == "Runtime.InternalError", reply.body


def test_a_header_the_runtime_cannot_be_given_never_wedges_the_environment() -> None:
    # the caller's timeout (10 s) is well inside the function's (30 s): an invocation left to time
    # out, or a runtime spinning on `next`, fails the test
    with scripted("--timeout", "30", "--max-concurrency", "1") as r:
        bad = {"Content-Type": "application/json; x=\xe9"}  # sent as the raw byte 0xe9
        assert_refused_or_failed(r, bad)  # cold: the runtime's first `next`
        good_invoke(r, timeout=10)
        assert_refused_or_failed(r, bad)  # warm: the runtime already waits in `next`
        good_invoke(r, timeout=10)
        assert r.output().count("Runtime.InternalError") <= 2  # no loop of failures


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[RieProcess, tuple[str, int]]]:
    """A scripted-runtime rie and the address of its Runtime API."""
    with scripted("--timeout", "10", "--max-concurrency", "1") as r:
        env = r.invoke({"do": [{"post": "response", "env": True}]}).json()
        assert isinstance(env, dict)
        host, _, port = env["AWS_LAMBDA_RUNTIME_API"].rpartition(":")
        yield r, (host.strip("[]"), int(port))


def answer_then_close(address: tuple[str, int], data: bytes) -> tuple[int, bytes, bytes]:
    """Send `data` without half-closing; the server must answer and close by itself."""
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), out[:200]
    return int(head.split(b" ")[1]), head, body


@pytest.mark.parametrize(
    "framing",
    [
        "Content-Length: \u00b2",
        "Content-Length: +5",
        "Content-Length: -1",
        "Content-Length: 5, 5",
        "Content-Length: 5\r\nContent-Length: 7",
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
    ],
)
def test_bad_content_length_or_two_framings_get_400_and_a_closed_connection(
    api: tuple[RieProcess, tuple[str, int]], framing: str
) -> None:
    r, address = api
    request = f"POST {BASE}/init/error HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\nhello"
    status, head, body = answer_then_close(address, request.encode("latin-1"))
    assert status == 400 and b"Connection: close" in head, head
    assert json.loads(body)["errorType"] == "BadRequest"
    good_invoke(r, timeout=10)
    assert "Fatal error" not in r.output() and "Traceback" not in r.output()
