"""Seeded fuzzes of the HTTP front, bounded in time (issue 16): mutated requests over raw sockets,
and random function results mapped to answers.

Requests: every answer is a well-formed HTTP answer in the front's shape (never the Invoke API's
`X-Amzn-ErrorType` errors), the server survives, and a good request works after every batch.
Results: every answer is well formed, its status is the result's own or the format's 502 (never
500), and the keep-alive connection stays in step: a good request on it after each result gets
its own answer. PYRIE_FUZZ_SEED picks the seed (printed on failure).
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import time
from collections.abc import Iterator

import pytest

from tests.helpers import rie
from tests.http.conftest import FIX, PY, Front, front
from tests.http.rawhttp import Answer, Conn, Malformed, request
from tests.rie.test_invoke_fuzz import assemble, flip  # the same wire-level mutations

SEED = int(os.environ.get("PYRIE_FUZZ_SEED", "20261207"))
BUDGET_S = 4.0  # each fuzz stops here, whatever it reached
MAX_CASES = 300
BATCH = 20
GUARD_S = 10.0  # an answer (or the connection's end) must come within this
OPEN_WAIT_S = 0.3  # a request left open may rightly wait for more bytes: look this long only


def _seeded(fn_name: str, exc: BaseException) -> AssertionError:
    return AssertionError(f"PYRIE_FUZZ_SEED={SEED} ({fn_name}): {exc}")


# --- requests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["function-url", "http-api"])
def req_front(request: pytest.FixtureRequest) -> Iterator[Front]:
    with front("--http-format", request.param, "--request-head-timeout", "2") as r:
        yield Front(r)


def _valid(rng: random.Random) -> tuple[bytes, list[bytes], bytes]:
    body = json.dumps({"fuzz": rng.randrange(10**6)}).encode()
    query = rng.choice([b"", b"?a=1&b=%2541", b"?x=%ZZ&=&&", b"?q=" + b"%C3%B6" * 3])
    line = rng.choice([b"POST", b"PUT", b"GET", b"DELETE", b"OPTIONS"]) + b" /p/x" + query
    headers = [
        b"Host: 127.0.0.1",
        b"Content-Type: " + rng.choice([b"application/json", b"text/plain", b"image/png"]),
        b"Content-Length: %d" % len(body),
        b"Cookie: a=1; b=2",
    ]
    return line + b" HTTP/1.1", headers, body


def mutate(rng: random.Random) -> bytes:
    line, headers, body = _valid(rng)
    kind = rng.randrange(12)
    if kind == 0:
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
        odd = [b"-1", b"+5", b"1e3", b"5, 5", b"0x10", b"99999999999999999999", b"", b"\xb2"]
        headers[2] = b"Content-Length: " + rng.choice(odd)
    elif kind == 4:  # chunked, with oddities
        del headers[2]
        headers.append(b"Transfer-Encoding: " + rng.choice([b"chunked", b"gzip, chunked", b"x"]))
        size = rng.choice([b"%x" % len(body), b"zz", b"fffffffffff", b""])
        body = size + b"\r\n" + body + rng.choice([b"\r\n0\r\n\r\n", b"\r\n", b"XY"])
    elif kind == 5:  # truncated anywhere
        return assemble(line, headers, body)[: rng.randrange(1, len(body) + 120)]
    elif kind == 6:  # a huge or strange header
        headers.insert(
            1,
            rng.choice(
                [
                    b"X-Huge: " + b"h" * rng.choice([100, 9000, 70000]),
                    b"X-Bin: \xff\xfe",
                    b"bad name: v",
                    b": empty",
                    b"Expect: " + rng.choice([b"100-continue", b"nonsense"]),
                ]
            ),
        )
    elif kind == 7:  # many headers
        headers[1:1] = [b"X-Many-%d: v" % i for i in range(rng.choice([50, 130, 300]))]
    elif kind == 8:  # a strange request line or target
        line = rng.choice(
            [
                b"OPTIONS * HTTP/1.1",
                b"CONNECT evil:443 HTTP/1.1",
                b"GET http://evil/m/echo?x=%2541 HTTP/1.1",
                b"GET https://evil HTTP/1.1",
                b"GET //double//slash HTTP/1.1",
                b"GET /%ff%00%2e%2e/x HTTP/1.1",
                b"GET /p HTTP/2.0",
                b"GET /p",
                b"get /p HTTP/1.1",
                b"GET /p?" + bytes(rng.randrange(33, 127) for _ in range(40)) + b" HTTP/1.1",
                b"G\xc3\x89T /p HTTP/1.1",
            ]
        )
    elif kind == 9:  # a body far over what its Content-Length says
        body += b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    elif kind == 10:  # a body over the front's limits (declared only)
        headers[2] = b"Content-Length: %d" % rng.choice([6 * 1024 * 1024 + 1, 11 * 1024 * 1024])
    else:  # random garbage
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    return assemble(line, headers, body)


def _answers(data: bytes) -> list[Answer]:
    """Every answer in `data` (interim 1xx left out); Malformed if any is not well formed."""
    conn = Conn.__new__(Conn)
    conn.buf = data
    conn.sock = _NoSocket()  # type: ignore[assignment]
    found = []
    while conn.buf:
        ans = conn.read()
        if ans.status >= 200:
            found.append(ans)
    return found


class _NoSocket:
    def recv(self, n: int) -> bytes:
        return b""


def _check_front_shape(f: Front, ans: Answer, sent: bytes) -> None:
    what = f"answered {ans.status} to {sent[:200]!r}: {ans.headers} {ans.body[:300]!r}"
    assert ans.header("x-amzn-errortype") is None, what
    if ans.status < 400:
        return
    if f.format == "function-url" and ans.status == 502:
        assert ans.body == b"Internal Server Error", what
        return
    assert ans.header("content-type") == "application/json", what
    doc = json.loads(ans.body)
    key = "Message" if f.format == "function-url" and ans.status != 404 else "message"
    assert isinstance(doc, dict) and list(doc) in (["message"], ["Message"]), what
    assert doc.get(key) or doc.get("message"), what


def _send(f: Front, data: bytes, half_close: bool) -> bytes:
    host, port = f.url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=GUARD_S)
    out = b""
    try:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early and closed: what was answered is still read below
        if not half_close:
            s.settimeout(OPEN_WAIT_S)
        deadline = time.monotonic() + GUARD_S
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                try:
                    _answers(out)
                except Malformed:
                    continue  # an answer begun is read to its end
                return out
            except ConnectionResetError:
                return out
            if not chunk:
                return out
            out += chunk
        raise AssertionError(f"no end to the answer to {data[:200]!r} within {GUARD_S} s")
    finally:
        s.close()


def _good(f: Front) -> None:
    with Conn(f.url) as conn:
        conn.send(request("GET", "/ok"))
        assert conn.read().status == 200


def test_fuzzed_requests(req_front: Front) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    cases = 0
    try:
        while cases < MAX_CASES and time.monotonic() - started < BUDGET_S:
            data = mutate(rng)
            out = _send(req_front, data, half_close=rng.random() < 0.8)
            try:
                answers = _answers(out)
            except Malformed as exc:
                raise AssertionError(f"to {data[:200]!r}: {exc}") from None
            for ans in answers:
                _check_front_shape(req_front, ans, data)
            cases += 1
            if cases % BATCH == 0:
                proc = req_front.proc.proc
                assert proc is not None and proc.poll() is None, req_front.proc.output()
                _good(req_front)
    except AssertionError as exc:
        raise _seeded("requests", exc) from None
    _good(req_front)
    assert "Traceback" not in req_front.proc.output()


# --- results ----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["function-url", "http-api", "rest-api"])
def result_front(request: pytest.FixtureRequest) -> Iterator[Front]:
    fmt = request.param
    with rie(
        "--http", "127.0.0.1:0", "--http-format", fmt, "--", PY, str(FIX / "raw_result.py")
    ) as r:
        yield Front(r)


_NAMES = [
    "content-type", "Content-Length", "transfer-encoding", "Connection", "x-ok", "X-Multi",
    "set-cookie", "bad name", "", "n\u00e9", "x:colon", "upgrade", "trailer", "te", "keep-alive",
    "location", "x-\u0000",
]  # fmt: skip
_VALUES: list[object] = [
    "v", "", "5", "chunked", "close", "a\r\nInjected: 1", "nl\n", "tab\tok", "\u00e9t\u00e9",
    "nul\u0000", 7, 1.5, True, None, ["l"], {"o": 1}, "x" * 300,
]  # fmt: skip
_STATUSES: list[object] = [
    200, 201, 204, 301, 304, 404, 418, 500, 503, 599, 100, 101, 199, 600, 0, -1, 99,
    "200", "404", "\u00b2", "2OO", "", " 200", 200.0, 2.5, True, None, [200], "9" * 40,
]  # fmt: skip


def _random_result(rng: random.Random) -> object:
    kind = rng.randrange(10)
    if kind == 0:  # not a response object at all
        return rng.choice(["text", 5, [1, 2], {"no": "status"}, None, True, {"body": "b"}])
    doc: dict[str, object] = {}
    if rng.random() < 0.9:
        doc["statusCode"] = rng.choice(_STATUSES)
    if rng.random() < 0.7:
        doc["headers"] = {
            rng.choice(_NAMES): rng.choice(_VALUES) for _ in range(rng.randrange(0, 4))
        }
        if rng.random() < 0.05:
            doc["headers"] = rng.choice([[], "h", 5])
    if rng.random() < 0.3:
        doc["multiValueHeaders"] = {
            rng.choice(_NAMES): rng.choice([[rng.choice(_VALUES)], rng.choice(_VALUES)])
            for _ in range(rng.randrange(0, 3))
        }
    if rng.random() < 0.3:
        doc["cookies"] = rng.choice([["a=1"], ["a=1", "b=2; Path=/"], "c", [5], ["x\r\ny"]])
    if rng.random() < 0.8:
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 50)))
        if rng.random() < 0.4:
            doc["isBase64Encoded"] = True
            doc["body"] = rng.choice([base64.b64encode(raw).decode(), "not base64!", ""])
        else:
            doc["body"] = rng.choice(["plain", "", "\u00e9", "x" * 2000, 5, None, ["b"]])
            if rng.random() < 0.1:
                doc["isBase64Encoded"] = rng.choice([False, "yes", 1])
    if rng.random() < 0.05:
        doc["extra"] = 1
    return doc


def _expected_status(fmt: str, doc: object) -> int | None:
    """The status the front may answer other than 502 (None: only 502 is right)."""
    if not isinstance(doc, dict) or "statusCode" not in doc:
        return 200 if fmt != "rest-api" else None
    status = doc["statusCode"]
    if isinstance(status, str) and status.isascii() and status.isdigit():
        status = int(status)
    if isinstance(status, int) and not isinstance(status, bool) and 200 <= status <= 599:
        return status
    return None


def test_fuzzed_results(result_front: Front) -> None:
    fmt = result_front.format
    rng = random.Random(SEED)
    started = time.monotonic()
    cases = 0
    good = json.dumps({"statusCode": 200, "body": "good"}).encode()
    try:
        with Conn(result_front.url) as conn:
            while cases < MAX_CASES and time.monotonic() - started < BUDGET_S:
                doc = _random_result(rng)
                sent = json.dumps(doc).encode()
                method = "HEAD" if rng.random() < 0.05 else "POST"
                conn.send(request(method, "/r", sent, {"Content-Type": "application/json"}))
                ans = conn.read(head_request=method == "HEAD")
                what = f"{sent[:300]!r} answered {ans.status} {ans.headers} {ans.body[:200]!r}"
                assert ans.header("x-amzn-errortype") is None, what
                if ans.status == _expected_status(fmt, doc):
                    # the function's own answer: framing is the front's alone
                    for name, _ in ans.headers:
                        assert name.lower() not in ("transfer-encoding", "connection"), what
                else:
                    # anything else is the format's own 502 (never a 500 of the front's)
                    assert ans.status == 502, what
                    if method != "HEAD":
                        _check_front_shape(result_front, ans, sent)
                # the connection is in step: a good result's answer is the next one read
                conn.send(request("POST", "/r", good, {"Content-Type": "application/json"}))
                next_answer = conn.read()
                assert (next_answer.status, next_answer.body) == (200, b"good"), what
                cases += 1
    except (AssertionError, Malformed) as exc:
        raise _seeded("results", exc) from None
    assert cases >= 10
    print(f"{fmt}: {cases} results")
