"""A seeded fuzz of the Invoke API's HTTP parsing, bounded in time: random and mutated requests
over raw sockets. Each is answered with a valid answer or a JSON AWS error (never plain text),
or the connection is closed; nothing hangs past a guard; the server never fails; and after each
batch a good invoke succeeds."""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from tests.helpers import INVOKE_PATH, RieProcess
from tests.rie.conftest import good_invoke, scripted

SEED = 20261126
BUDGET_S = 4.0  # the fuzz stops here, whatever it reached
MAX_CASES = 400
BATCH = 25
GUARD_S = 10.0  # a half-closed request must be answered (or its connection closed) within this
OPEN_WAIT_S = 0.3  # a request left open may rightly wait for more bytes: look this long only
PATH = INVOKE_PATH.format(name="function")


@pytest.fixture(scope="module")
def fz() -> Iterator[RieProcess]:
    with scripted("--timeout", "5", "--request-head-timeout", "2") as r:
        yield r


def valid(rng: random.Random) -> tuple[list[bytes], bytes]:
    body = json.dumps({"fuzz": rng.randrange(10**6), "pad": "x" * rng.randrange(40)}).encode()
    headers = [
        b"Host: 127.0.0.1",
        b"Content-Type: application/json",
        b"Content-Length: %d" % len(body),
        b"X-Amz-Log-Type: " + rng.choice([b"None", b"Tail"]),
        b"X-Amz-Invocation-Type: " + rng.choice([b"RequestResponse", b"RequestResponse", b"Event"]),
        b"X-Amzn-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
    ]
    return headers, body


def assemble(line: bytes, headers: list[bytes], body: bytes) -> bytes:
    return line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


def flip(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def mutate(rng: random.Random) -> bytes:
    headers, body = valid(rng)
    line = b"POST " + PATH.encode() + b" HTTP/1.1"
    kind = rng.randrange(11)
    if kind == 0:  # a valid request
        pass
    elif kind == 1:  # flipped bytes anywhere
        return flip(rng, assemble(line, headers, body))
    elif kind == 2:  # a header dropped or duplicated
        i = rng.randrange(len(headers))
        if rng.random() < 0.5:
            del headers[i]
        else:
            headers.insert(i, headers[i])
    elif kind == 3:  # an odd Content-Length
        odd = rng.choice(
            [
                *(b"-1", b"+5", b"1e3", b"5, 5", b"0x10", b"  5", b"99999999999999999999", b""),
                *(b"\xb2", b"%d" % (len(body) + rng.randint(-5, 5))),
            ]
        )
        headers[2] = b"Content-Length: " + odd
    elif kind == 4:  # chunked, with oddities
        del headers[2]
        headers.append(b"Transfer-Encoding: chunked")
        if rng.random() < 0.3:
            headers.append(b"Content-Length: %d" % len(body))
        size = rng.choice([b"%x" % len(body), b"zz", b"%x;ext=1" % len(body), b"fffffffffff", b""])
        tail = rng.choice([b"\r\n0\r\n\r\n", b"\r\n0\r\nX-Trailer: t\r\n\r\n", b"\r\n", b"XY"])
        body = size + b"\r\n" + body + tail
    elif kind == 5:  # truncated anywhere
        return assemble(line, headers, body)[: rng.randrange(1, len(body) + 200)]
    elif kind == 6:  # a huge header
        headers.insert(1, b"X-Huge: " + b"h" * rng.choice([100, 8000, 9000, 70000]))
    elif kind == 7:  # many headers
        headers[1:1] = [b"X-Many-%d: v" % i for i in range(rng.choice([50, 130, 300]))]
    elif kind == 8:  # a strange request line
        line = rng.choice(
            [
                b"POST " + PATH.encode() + b" HTTP/1.0",
                b"POST " + PATH.encode() + b" HTTP/2.0",
                b"POST " + PATH.encode(),
                b"post " + PATH.encode() + b" HTTP/1.1",
                b"POST  " + PATH.encode() + b"  HTTP/1.1",
                b"POST /2015-03-31/functions/%ff%00/invocations HTTP/1.1",
                b"PUT " + PATH.encode() + b" HTTP/1.1",
                b"CONNECT 127.0.0.1:1 HTTP/1.1",
            ]
        )
    elif kind == 9:  # header values with bytes the runtime cannot be given
        headers[1] = b"Content-Type: application/json; x=" + bytes([rng.randrange(128, 256)])
    else:  # random garbage
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    return assemble(line, headers, body)


def responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The whole answers in `data`, in order (interim `100 Continue`s left out)."""
    found = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"an incomplete answer head: {data[:300]!r}"
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1."), data[:300]
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status == 100:
            data = rest
            continue
        length = int(headers["content-length"])
        assert len(rest) >= length, f"an answer cut short: {data[:300]!r}"
        found.append((status, headers, rest[:length]))
        data = rest[length:]
    return found


def whole(data: bytes) -> bool:
    try:
        responses(data)
    except (AssertionError, KeyError, ValueError, IndexError):
        return False
    return True


def check(answer: bytes, sent: bytes) -> None:
    for status, headers, body in responses(answer):
        if status < 400:
            continue
        what = f"answered {status} to {sent[:200]!r}: {headers} {body[:300]!r}"
        assert headers.get("content-type") == "application/json", what
        assert headers.get("x-amzn-errortype", "").endswith("Exception"), what
        doc = json.loads(body)
        assert doc["Type"] == "User" and doc["message"], what


def send(r: RieProcess, data: bytes, half_close: bool) -> bytes:
    s = socket.create_connection((r.host, r.port), timeout=GUARD_S)
    out = b""
    try:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused early and closed: what it answered is still read below
        if not half_close:
            s.settimeout(OPEN_WAIT_S)
        deadline = time.monotonic() + GUARD_S
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                # left open and not (yet) answered: the request may be waiting for its rest.
                # An answer already begun is read to its end.
                if whole(out):
                    return out
                continue
            except ConnectionResetError:
                return out
            if not chunk:
                return out
            out += chunk
        raise AssertionError(f"no end to the answer to {data[:200]!r} within {GUARD_S} s")
    finally:
        s.close()


def run_fuzz(r: RieProcess, generate: Callable[[random.Random], bytes], seed: int) -> int:
    rng = random.Random(seed)
    started = time.monotonic()
    cases = 0
    while cases < MAX_CASES and time.monotonic() - started < BUDGET_S:
        data = generate(rng)
        answer = send(r, data, half_close=rng.random() < 0.8)
        check(answer, data)
        cases += 1
        if cases % BATCH == 0:
            assert r.proc is not None and r.proc.poll() is None, r.output()
            good_invoke(r)
    good_invoke(r)
    return cases


def test_mutated_invoke_requests(fz: RieProcess) -> None:
    cases = run_fuzz(fz, mutate, SEED)
    assert cases >= 10
    out = fz.output()
    assert "Traceback" not in out and "unexpected failure" not in out, out[-3000:]


def test_random_bytes(fz: RieProcess) -> None:
    def garbage(rng: random.Random) -> bytes:
        prefix = rng.choice([b"", b"POST ", b"POST " + PATH.encode() + b" HTTP/1.1\r\n"])
        return prefix + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))

    cases = run_fuzz(fz, garbage, SEED + 1)
    assert cases >= 10
    out = fz.output()
    assert "Traceback" not in out and "unexpected failure" not in out, out[-3000:]
