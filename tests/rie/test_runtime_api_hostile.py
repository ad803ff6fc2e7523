"""The Runtime API end to end under input that must not wedge an environment, make a runtime spin
or take the endpoint down: real rie, real runtimes, real sockets."""

from __future__ import annotations

import json
import random
import re
import socket
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import RieProcess, rie
from tests.rie.conftest import BASE, FIX, HANDLERS, curl_sh, good_invoke, ric, scripted, wait_until
from tests.unit import test_runtime_api_fuzz as fuzz


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


LIMITS = ("--keepalive-timeout", "0.3", "--request-head-timeout", "0.5", "--log-level", "debug")


def runtime_with_tiny_limits(kind: str, files: Path | None = None) -> RieProcess:
    # `files`: where the handler finds the flags the events name, named in its environment too
    # so that the sandbox keeps it reachable (docs/resources.md)
    env = {"TEST_FILES": str(files)} if files is not None else None
    if kind == "ours":
        flags = ("--task-root", str(HANDLERS), "--handler", "probes.until_file", *LIMITS)
        return rie(*flags, env=env)
    if kind == "awslambdaric":
        return ric("probes.until_file", *LIMITS, env=env)
    return curl_sh(*LIMITS, env=env)


def idle_closes(r: RieProcess) -> int:
    return len(re.findall("closing a keep-alive connection idle", r.output()))


@pytest.mark.parametrize("kind", ["ours", "awslambdaric", "sh+curl"])
def test_runtimes_recover_when_their_idle_connection_is_closed(kind: str, tmp_path: Path) -> None:
    with runtime_with_tiny_limits(kind, tmp_path) as r:
        if kind == "sh+curl":
            # curl opens a connection per call and closes it itself: nothing is ever idle, and
            # short limits must not get in its way
            for n in range(3):
                reply = r.invoke({"n": n}, timeout=10)
                assert reply.status == 200 and reply.json() == {"n": n}, reply.body
            return
        for n in range(2):
            flag = tmp_path / f"flag{n}"
            seen = idle_closes(r)
            with ThreadPoolExecutor(1) as pool:
                # the handler runs until the flag exists: meanwhile the runtime's connection
                # has nothing in flight and is closed as idle
                pending = pool.submit(r.invoke, {"path": str(flag)}, timeout=30)
                wait_until(lambda s=seen: idle_closes(r) > s, what="an idle close")
                flag.touch()
                reply = pending.result()
            assert reply.status == 200, reply.body
            assert reply.header("X-Amz-Function-Error") is None, reply.body
            assert reply.json() == {"seen": True}


def test_a_slow_request_head_gets_408_and_the_runtime_is_unharmed() -> None:
    with scripted(*LIMITS) as r:
        env = r.invoke({"do": [{"post": "response", "env": True}]}).json()
        assert isinstance(env, dict)
        host, _, port = env["AWS_LAMBDA_RUNTIME_API"].rpartition(":")
        with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as s:
            s.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nX-Slow: ")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        assert out.startswith(b"HTTP/1.1 408 "), out[:200]
        good_invoke(r, timeout=10)


@pytest.mark.parametrize("kind", ["ours", "awslambdaric", "sh+curl"])
@pytest.mark.parametrize(("flag", "host"), [("127.0.0.2:0", "127.0.0.2"), ("[::1]:0", "[::1]")])
def test_any_loopback_runtime_api_address_reaches_the_runtime(
    kind: str, flag: str, host: str
) -> None:
    flags = ("--runtime-api-address", flag)
    if kind == "ours":
        r = rie("--task-root", str(HANDLERS), "--handler", "probes.runtime_api", *flags)
    elif kind == "awslambdaric":
        r = ric("probes.runtime_api", *flags)
    else:
        r = curl_sh(*flags)
    with r:
        reply = r.invoke({"mode": "env"} if kind == "sh+curl" else {}, timeout=15)
        assert reply.status == 200 and reply.header("X-Amz-Function-Error") is None, reply.body
        if kind == "sh+curl":
            lines = str(reply.json()).splitlines()
            api = next(
                v
                for k, _, v in (ln.partition("=") for ln in lines)
                if k == "AWS_LAMBDA_RUNTIME_API"
            )
        else:
            api = reply.json()["api"]  # type: ignore[index]
        told_host, _, port = api.rpartition(":")
        assert told_host == host and int(port) > 0, api
        again = r.invoke({"mode": "env"} if kind == "sh+curl" else {}, timeout=15)
        assert again.status == 200 and again.header("X-Amz-Function-Error") is None, again.body


def test_expect_100_continue_gets_the_final_status_when_it_is_already_known() -> None:
    with rie("--timeout", "10", "--", sys.executable, str(FIX / "expect_runtime.py")) as r:
        reply = r.invoke({}, timeout=20)
        assert reply.json()["errorType"] == "Function.ResponseSizeTooLarge", reply.body  # type: ignore[index]
        r.wait_for(r"^expect finished: ")
        seen = dict(re.findall(r"^expect ([\w-]+): (.*)$", r.output(), re.M))
        assert seen == {
            "unknown-id": "HTTP/1.1 400 Bad Request",
            "small": "HTTP/1.1 100 Continue",
            "stream-too-large": "HTTP/1.1 413 Request Entity Too Large",
            "finished": "HTTP/1.1 403 Forbidden",
        }, seen


def test_fuzzed_requests_never_take_a_real_endpoint_down(
    api: tuple[RieProcess, tuple[str, int]],
) -> None:
    # the in-process fuzz (tests/unit/test_runtime_api_fuzz.py) goes deeper; this one runs the
    # same mutations against a real rie with a real runtime waiting in `next`
    r, address = api
    rng = random.Random(fuzz.SEED)
    for _batch in range(3):
        for _ in range(20):
            data = fuzz.mutate(rng, rng.choice(fuzz.templates("not-live")), "not-live")
            with socket.create_connection(address, timeout=10) as s:
                try:
                    s.sendall(data)
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                out = b""
                try:
                    while chunk := s.recv(65536):
                        out += chunk
                except ConnectionResetError:
                    pass
            fuzz.check_answers(out, data)
        good_invoke(r, timeout=10)
    assert "Traceback" not in r.output() and "Fatal error" not in r.output()
