"""The HTTP front against results and requests that broke it (issue 16, items 2, 3, 4, 12), end to
end: a real rie, a custom runtime that returns the request's body as the function's result byte
for byte, raw sockets that see every byte of every answer.

Every answer must be well formed, in the front's shape, and leave nothing behind on a keep-alive
connection: after each bad result the same connection serves a good request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import pytest

from tests.helpers import rie
from tests.http.conftest import FIX, PY, Front, front
from tests.http.rawhttp import Answer, Conn, request

FORMATS = ("function-url", "http-api", "rest-api")
GOOD = json.dumps({"statusCode": 200, "body": "good"}).encode()


@pytest.fixture(scope="module", params=FORMATS)
def raw_front(request: pytest.FixtureRequest) -> Iterator[Front]:
    """rie whose function answers each request with that request's body as its result."""
    fmt = request.param
    with rie(
        "--http", "127.0.0.1:0", "--http-format", fmt, "--", PY, str(FIX / "raw_result.py")
    ) as r:
        yield Front(r)


def bad_gateway(fmt: str, ans: Answer) -> None:
    """The format's own answer to a result it cannot send."""
    assert ans.status == 502, (ans.status, ans.body)
    if fmt == "function-url":
        assert ans.body == b"Internal Server Error"
    else:
        assert json.loads(ans.body) == {"message": "Internal server error"}
    assert ans.header("x-amzn-errortype") is None


def result(conn: Conn, doc: object | bytes) -> Answer:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    conn.send(request("POST", "/r", body, {"Content-Type": "application/json"}))
    return conn.read()


def still_in_step(conn: Conn) -> None:
    """The connection's next answer is the next request's own."""
    ans = result(conn, GOOD)
    assert (ans.status, ans.body) == (200, b"good")


# --- item 2: the function's result says nothing about framing -----------------------------------


def test_framing_headers_from_the_result_are_not_sent(raw_front: Front) -> None:
    fmt = raw_front.format
    with Conn(raw_front.url) as conn:
        ans = result(
            conn, {"statusCode": 200, "headers": {"content-length": "5"}, "body": "hello world"}
        )
        assert (ans.status, ans.body) == (200, b"hello world")
        assert ans.header("content-length") == "11"
        if fmt == "rest-api":
            assert ans.header("x-amzn-remapped-content-length") == "5"
        still_in_step(conn)
        ans = result(
            conn,
            {
                "statusCode": 201,
                "headers": {"Transfer-Encoding": "chunked", "Connection": "close"},
                "body": "plain",
            },
        )
        assert (ans.status, ans.body) == (201, b"plain")
        assert ans.header("transfer-encoding") is None
        still_in_step(conn)


def test_an_answer_says_its_date_unless_the_function_does(raw_front: Front) -> None:
    with Conn(raw_front.url) as conn:
        ans = result(conn, GOOD)
        date = ans.header("date")
        assert date is not None and parsedate_to_datetime(date).tzinfo is not None, ans.headers
        ans = result(conn, {"statusCode": 200, "headers": {"Date": "then"}, "body": "x"})
        assert [v for k, v in ans.headers if k.lower() == "date"] == ["then"]


@pytest.mark.parametrize(
    "bad",
    [
        {"headers": {"bad name": "x"}},
        {"headers": {"": "x"}},
        {"headers": {"n\u00e9": "x"}},
        {"headers": {"x-a": "1\r\nX-Injected: yes"}},
        {"headers": {"x-a": "1\nX-Injected: yes"}},
        {"headers": {"x-a": "nul\u0000"}},
        {"cookies": ["a=1\r\nX-Injected: yes"]},
        {"statusCode": 100},
        {"statusCode": 101},
        {"statusCode": "101"},
    ],
)
def test_a_result_that_cannot_be_sent_is_502(raw_front: Front, bad: dict[str, object]) -> None:
    with Conn(raw_front.url) as conn:
        ans = result(conn, {"statusCode": 200, "body": "x", **bad})
        bad_gateway(raw_front.format, ans)
        assert b"X-Injected" not in ans.raw_head
        still_in_step(conn)


# --- item 3: bad results are each format's 502, never the Invoke API's 500 ----------------------


@pytest.mark.parametrize(
    "payload",
    [
        b'{"statusCode": "\xc2\xb2", "body": "x"}',  # a digit to str.isdigit, not to int
        b'{"statusCode": ' + b"9" * 5000 + b', "body": "x"}',
        b'{"statusCode": "' + b"9" * 5000 + b'", "body": "x"}',
        b'{"statusCode": 200, "body": "x", "headers": {"a": '
        + b"[" * 50_000
        + b"]" * 50_000
        + b"}}",
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["superscript-two", "5000-digits", "5000-digit-string", "deep-headers", "deep-result"],
)
def test_a_bad_result_is_the_formats_502(raw_front: Front, payload: bytes) -> None:
    with Conn(raw_front.url) as conn:
        ans = result(conn, payload)
        bad_gateway(raw_front.format, ans)
        still_in_step(conn)


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /x HTTP/1.1\r\nHost: a\r\nbad header line\r\n\r\n",
        b"GET /x HTTP/9.9\r\nHost: a\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
    ],
    ids=["bad-header", "bad-version", "options-star", "connect", "two-lengths"],
)
def test_the_fronts_own_refusals_are_in_its_shape(raw_front: Front, raw: bytes) -> None:
    with Conn(raw_front.url) as conn:
        conn.send(raw)
        ans = conn.read()
    assert ans.status == 400, ans
    key = "Message" if raw_front.format == "function-url" else "message"
    assert json.loads(ans.body) == {key: "Bad Request"}
    assert ans.header("x-amzn-errortype") is None


# --- item 4: the query string is decoded once ---------------------------------------------------


@pytest.fixture(scope="module", params=FORMATS)
def dump_front(request: pytest.FixtureRequest) -> Iterator[Front]:
    with front("--http-format", request.param, handler="apps.dump") as r:
        yield Front(r)


def dumped(f: Front, raw: bytes) -> dict[str, object]:
    with Conn(f.url) as conn:
        conn.send(raw)
        ans = conn.read()
    assert ans.status == 200, ans
    event: dict[str, object] = json.loads(ans.body)["event"]
    return event


def test_the_query_is_decoded_once(dump_front: Front) -> None:
    query = "x=%2541&c=x%20y&e=%C3%B6&p=a%2Bb"
    event = dumped(dump_front, request("GET", f"/q?{query}"))
    params = event["queryStringParameters"]
    assert params == {"x": "%41", "c": "x y", "e": "\u00f6", "p": "a+b"}
    if dump_front.format == "rest-api":
        assert event["multiValueQueryStringParameters"] == {k: [v] for k, v in params.items()}
    else:
        assert event["rawQueryString"] == query


# --- item 12: Expect: 100-continue over the limit; an absolute-form target ----------------------


def test_expect_continue_over_the_limit_is_refused_at_once(dump_front: Front) -> None:
    limit = 6 * 1024 * 1024 if dump_front.format == "function-url" else 10 * 1024 * 1024
    with Conn(dump_front.url) as conn:
        conn.send(
            b"POST /big HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
            + f"Content-Length: {limit + 1}\r\n\r\n".encode()
        )
        ans = conn.read()  # the first answer, with no body sent: 413, not 100 Continue
        assert ans.status == 413, ans
    with Conn(dump_front.url) as conn:  # within the limit: 100, then the answer
        conn.send(
            b"POST /ok HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
        )
        assert conn.read().status == 100
        conn.send(b"hi")
        assert conn.read().status == 200


def test_an_absolute_form_target_gives_its_path(dump_front: Front) -> None:
    event = dumped(dump_front, request("GET", "http://evil.example/m/echo?a=%2541"))
    if dump_front.format == "rest-api":
        assert event["path"] == "/m/echo"
        assert event["queryStringParameters"] == {"a": "%41"}
    else:
        assert (event["rawPath"], event["rawQueryString"]) == ("/m/echo", "a=%2541")


def test_a_head_never_completed_is_408_in_the_fronts_shape() -> None:
    with front("--http-format", "http-api", "--request-head-timeout", "1") as r:
        f = Front(r)
        with Conn(f.url) as conn:
            conn.send(b"GET / HTTP/1.1\r\nHo")
            ans = conn.read()
    assert (ans.status, json.loads(ans.body)) == (408, {"message": "Request Timeout"})
    assert ans.header("x-amzn-errortype") is None


# --- item 2, streamed: the prelude says nothing about framing either ----------------------------


@pytest.fixture(scope="module")
def stream_front() -> Iterator[Front]:
    with rie(
        "--http", "127.0.0.1:0", "--http-invoke-mode", "RESPONSE_STREAM",
        "--", PY, str(FIX / "raw_stream.py"),
    ) as r:  # fmt: skip
        yield Front(r)


def streamed(conn: Conn, prelude: dict[str, object], body: bytes) -> Answer:
    sent = json.dumps(prelude).encode() + b"\0" * 8 + body
    conn.send(request("POST", "/s", sent, {"Content-Type": "application/octet-stream"}))
    return conn.read()


def test_a_streamed_prelude_cannot_set_framing(stream_front: Front) -> None:
    with Conn(stream_front.url) as conn:
        headers = {"content-length": "2", "transfer-encoding": "identity", "x-ok": "1"}
        ans = streamed(conn, {"statusCode": 201, "headers": headers}, b"hello world")
        assert (ans.status, ans.body) == (201, b"hello world")
        assert ans.header("transfer-encoding") == "chunked"  # the front's own framing
        assert (ans.header("content-length"), ans.header("x-ok")) == (None, "1")
        ans = streamed(conn, {"statusCode": 200}, b"next")
        assert (ans.status, ans.body) == (200, b"next")


@pytest.mark.parametrize(
    "prelude",
    [
        {"statusCode": 101},
        {"statusCode": 200, "headers": {"bad name": "x"}},
        {"statusCode": 200, "headers": {"x-a": "1\r\nX-Injected: yes"}},
        {"statusCode": 200, "cookies": ["a=1\nX-Injected: yes"]},
    ],
)
def test_a_streamed_prelude_that_cannot_be_sent_is_502(
    stream_front: Front, prelude: dict[str, object]
) -> None:
    with Conn(stream_front.url) as conn:
        ans = streamed(conn, prelude, b"body")
        bad_gateway("function-url", ans)
        assert b"X-Injected" not in ans.raw_head
