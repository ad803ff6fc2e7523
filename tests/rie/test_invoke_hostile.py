"""The Invoke API under hostile and awkward input, over raw sockets (issue 11): header values the
runtime cannot be given, the HTTP parser's own rejections, `Expect: 100-continue`, half-closing
clients, slow and idle connections, payloads that are not JSON. Every answer is an AWS error that
botocore models, and a good invoke works after each."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import botocore.parsers
import botocore.session
import pytest

from tests.helpers import INVOKE_PATH, RieProcess, boto_client
from tests.rie.conftest import do, good_invoke, scripted

PATH = INVOKE_PATH.format(name="function")
GUARD_S = 20.0


@pytest.fixture(scope="module")
def r() -> Iterator[RieProcess]:
    with scripted("--timeout", "5") as proc:
        yield proc


def exchange(
    r: RieProcess, data: bytes, *, half_close: bool = False, guard: float = GUARD_S
) -> bytes:
    """Send `data`, then read one whole answer (or up to the server's close)."""
    s = socket.create_connection((r.host, r.port), timeout=guard)
    try:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        return read_answer(s)
    finally:
        s.close()


def read_answer(s: socket.socket) -> bytes:
    out = b""
    while True:
        head, sep, body = out.partition(b"\r\n\r\n")
        if sep and not head.startswith(b"HTTP/1.1 100 "):
            length = [
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ]
            if length and len(body) >= length[0]:
                return out
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def read_to_close(s: socket.socket, guard: float = GUARD_S) -> bytes:
    out = b""
    deadline = time.monotonic() + guard
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            return out
        out += chunk
    raise AssertionError(f"the server did not close the connection; got {out[:300]!r}")


def split(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, sep, body = answer.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1."), answer[:300]
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(body)))
    return int(lines[0].split(" ")[1]), headers, body[:length]


_LAMBDA = botocore.session.get_session().create_client(
    "lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
)


def aws_error(answer: bytes, status: int, code: str) -> str:
    """Check that botocore reads `answer` as the AWS error `code`; its message."""
    got_status, headers, body = split(answer)
    assert got_status == status, answer[:500]
    assert headers.get("content-type") == "application/json", answer[:500]
    model = _LAMBDA.meta.service_model
    parser = botocore.parsers.create_parser(model.metadata["protocol"])
    parsed = parser.parse(
        {"status_code": got_status, "headers": headers, "body": body},
        model.operation_model("Invoke").output_shape,
    )
    error = parsed["Error"]
    assert error["Code"] == code, (error, answer[:500])
    assert json.loads(body)["Type"] == "User"
    return str(error["Message"])


def request(headers: bytes = b"", body: bytes = b"{}", path: str = PATH) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n".encode()
        + headers
        + b"\r\n"
        + body
    )


# --- defect 1: header values the runtime cannot be given -------------------------------------


BAD_VALUES = [b"application/json; x=\xe9", "application/json; x=é".encode(), b"text/\xff\xfe"]


@pytest.mark.parametrize("value", BAD_VALUES, ids=["latin1", "utf8", "not-utf8"])
@pytest.mark.parametrize(
    "header", ["Content-Type", "X-Amzn-Trace-Id", "X-Amz-Tenant-Id", "X-Amz-Cognito-Identity"]
)
def test_header_values_the_runtime_cannot_be_given_are_refused(
    r: RieProcess, header: str, value: bytes
) -> None:
    answer = exchange(r, request(header.encode() + b": " + value + b"\r\n"), half_close=True)
    message = aws_error(answer, 400, "InvalidRequestContentException")
    assert header in message
    good_invoke(r)


def test_client_context_with_raw_bytes_is_refused(r: RieProcess) -> None:
    answer = exchange(r, request(b"X-Amz-Client-Context: e30=\xe9\r\n"), half_close=True)
    aws_error(answer, 400, "InvalidRequestContentException")
    good_invoke(r)


def test_a_bad_header_on_a_cold_environment_neither_waits_nor_wedges_it() -> None:
    # before: the runtime spun on `next` until the function timeout, then every caller got 429
    with scripted("--timeout", "30", "--max-concurrency", "1") as cold:
        started = time.monotonic()
        for _ in range(2):
            answer = exchange(cold, request(b"Content-Type: application/json; x=\xe9\r\n"))
            aws_error(answer, 400, "InvalidRequestContentException")
        good = cold.invoke({"still": "works"}, timeout=20)
        assert good.status == 200 and good.json() == {"still": "works"}, good.body
        assert time.monotonic() - started < 20
        rid = good.header("X-Amzn-RequestId")
        cold.wait_for(f"REPORT RequestId: {rid}")
        assert cold.output().count("START RequestId") == 1  # only the good invoke ran


def test_tabs_in_a_content_type_are_passed_on(r: RieProcess) -> None:
    reply = do(r, headers={"Content-Type": "application/json;\tcharset=utf-8"})
    assert reply.status == 200, reply.body
    headers = reply.json()["next"]["headers"]  # type: ignore[index]
    assert headers["content-type"] == "application/json;\tcharset=utf-8"


# --- defect 6: the HTTP parser's own rejections are AWS errors --------------------------------


MALFORMED = {
    "bad-method": b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-request-line": b"HELLO\r\n\r\n",
    "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "duplicate-length": request(b"Content-Length: 2\r\n"),
    "negative-length": f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: -2\r\n\r\n{{}}".encode(),
    "plus-length": f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{{}}".encode(),
    "length-and-chunked": request(b"Transfer-Encoding: chunked\r\n", b"2\r\n{}\r\n0\r\n\r\n"),
    "header-over-8kb": request(b"X-Big: " + b"a" * 9000 + b"\r\n"),
    "client-context-20kb": request(b"X-Amz-Client-Context: " + b"e" * 20000 + b"\r\n"),
    "too-many-headers": request(b"".join(b"X-%d: v\r\n" % i for i in range(200))),
    "bad-header-line": request(b"no colon here\r\n"),
    "no-host": f"POST {PATH} HTTP/1.1\r\nContent-Length: 2\r\n\r\n{{}}".encode(),
    "bad-chunk-size": f"POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".encode(),
    "long-url": f"POST /{'x' * 9000} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}".encode(),
    "bad-version": f"POST {PATH} HTTP/9.9\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}".encode(),
}


@pytest.mark.parametrize("name", list(MALFORMED))
@pytest.mark.parametrize("half_close", [False, True], ids=["open", "half-closed"])
def test_parser_rejections_are_json_aws_errors(r: RieProcess, name: str, half_close: bool) -> None:
    answer = exchange(r, MALFORMED[name], half_close=half_close)
    status, _, _ = split(answer)
    assert 400 <= status < 500, answer[:300]
    code = "RequestEntityTooLargeException" if status == 413 else "InvalidRequestContentException"
    message = aws_error(answer, status, code)
    assert "\n" not in message and "b'" not in message, message
    good_invoke(r)


def test_botocore_raises_the_modelled_exception_for_a_parser_rejection(r: RieProcess) -> None:
    answer = exchange(r, MALFORMED["duplicate-length"])
    aws_error(answer, 400, "InvalidRequestContentException")
    modelled = _LAMBDA.exceptions.from_code("InvalidRequestContentException")
    assert modelled is _LAMBDA.exceptions.InvalidRequestContentException


def test_a_bad_chunk_after_the_head_is_a_json_error(r: RieProcess) -> None:
    s = socket.create_connection((r.host, r.port), timeout=GUARD_S)
    try:
        s.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        s.sendall(b"2\r\n{}\r\nzz\r\n")
        answer = read_to_close(s)
    finally:
        s.close()
    aws_error(answer, 400, "InvalidRequestContentException")
    good_invoke(r)


# --- defect 11: Expect: 100-continue, and clients that half-close -----------------------------


def expect_head(length: int, path: str = PATH, extra: bytes = b"") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
        "Expect: 100-continue\r\n".encode()
        + extra
        + b"\r\n"
    )


@pytest.mark.parametrize(
    ("head", "status", "code"),
    [
        (expect_head(7 * 1024 * 1024), 413, "RequestEntityTooLargeException"),
        (
            expect_head(1024 * 1024 + 1, extra=b"X-Amz-Invocation-Type: Event\r\n"),
            413,
            "RequestEntityTooLargeException",
        ),
        (expect_head(2, INVOKE_PATH.format(name="nobody")), 404, "ResourceNotFoundException"),
        (expect_head(2, extra=b"X-Amz-Log-Type: All\r\n"), 400, "InvalidRequestContentException"),
    ],
    ids=["7mb", "event-over-1mb", "unknown-function", "bad-log-type"],
)
def test_expect_continue_gets_the_final_answer_without_continue_when_refused(
    r: RieProcess, head: bytes, status: int, code: str
) -> None:
    # the body is never sent: the answer must come, and the connection close, without it
    answer = exchange(r, head)
    assert not answer.startswith(b"HTTP/1.1 100"), answer[:200]
    aws_error(answer, status, code)
    good_invoke(r)


def test_curl_waiting_for_continue_gets_413_at_once_or_100_then_its_answer(
    r: RieProcess, tmp_path: Path
) -> None:
    # curl sends `Expect: 100-continue` for bodies over 1 MB and waits for the answer to it
    url = r.endpoint + PATH
    big, fits = tmp_path / "big.json", tmp_path / "fits.json"
    big.write_bytes(b"1" * (7 * 1024 * 1024))
    fits.write_bytes(b'"' + b"a" * (2 * 1024 * 1024) + b'"')
    refused = subprocess.run(
        ["curl", "-sv", "--data-binary", f"@{big}", url], capture_output=True, timeout=GUARD_S
    )
    trace = refused.stderr.decode()
    assert "> Expect: 100-continue" in trace and "< HTTP/1.1 100" not in trace, trace
    assert "< HTTP/1.1 413" in trace, trace
    assert json.loads(refused.stdout)["message"].startswith("Request must be smaller than")
    accepted = subprocess.run(
        ["curl", "-sv", "--data-binary", f"@{fits}", url], capture_output=True, timeout=GUARD_S
    )
    trace = accepted.stderr.decode()
    assert "< HTTP/1.1 100 Continue" in trace and "< HTTP/1.1 200" in trace, trace
    assert accepted.stdout == fits.read_bytes()


def test_an_unknown_expectation_is_refused_with_417(r: RieProcess) -> None:
    answer = exchange(r, request(b"Expect: 200-ok\r\n"), half_close=True)
    aws_error(answer, 417, "InvalidRequestContentException")
    good_invoke(r)


def test_expect_continue_is_answered_with_100_when_acceptable(r: RieProcess) -> None:
    body = json.dumps({"expect": "ok"}).encode()
    s = socket.create_connection((r.host, r.port), timeout=GUARD_S)
    try:
        s.sendall(expect_head(len(body)))
        first = s.recv(65536)
        assert first == b"HTTP/1.1 100 Continue\r\n\r\n", first
        s.sendall(body)
        s.shutdown(socket.SHUT_WR)
        answer = read_to_close(s)
    finally:
        s.close()
    status, _, reply = split(answer)
    assert status == 200 and json.loads(reply) == {"expect": "ok"}, answer[:300]


def test_a_client_that_half_closes_after_its_request_gets_its_answer(r: RieProcess) -> None:
    # the runtime takes a moment, so the end of input arrives well before the answer
    event = json.dumps({"do": [{"sleep": 0.3}]}).encode()
    answer = exchange(r, request(body=event), half_close=True)
    status, headers, body = split(answer)
    assert status == 200, answer[:300]
    assert "x-amz-function-error" not in headers
    assert json.loads(body)["results"], body


def test_pipelined_requests_then_half_close_are_all_answered(r: RieProcess) -> None:
    data = request(body=b'{"n": 1}') + request(body=b'{"n": 2}') + request(body=b'{"n": 3}')
    s = socket.create_connection((r.host, r.port), timeout=GUARD_S)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        answer = read_to_close(s)
    finally:
        s.close()
    assert answer.count(b"HTTP/1.1 200 OK") == 3, answer[:600]
    assert answer.index(b'{"n": 1}') < answer.index(b'{"n": 2}') < answer.index(b'{"n": 3}')


# --- defect 12: payloads that are not JSON; the empty payload ---------------------------------

NOT_JSON = "Could not parse request body into json: Could not parse payload into json: "


def settled_starts(r: RieProcess) -> int:
    """START lines once every invocation so far has been logged: one more invoke is made, and
    its REPORT waited for (the output is read by a thread, and in order)."""
    reply = r.invoke({"settle": 1})
    assert reply.status == 200, reply.body
    r.wait_for(f"REPORT RequestId: {reply.header('X-Amzn-RequestId')}")
    return r.output().count("START RequestId")


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (b"hello", "Unrecognized token 'hello': was expecting (JSON String, Number, Array,"),
        (b'{"a": 1,}', ""),
        (b"{} trailing", ""),
        (b"NaN", ""),
        (b"\xff\xfe", "Invalid UTF-8"),
        (b"   ", ""),
    ],
    ids=["word", "trailing-comma", "trailing-data", "nan", "not-utf8", "blank"],
)
def test_a_payload_that_is_not_json_is_refused(r: RieProcess, payload: bytes, detail: str) -> None:
    before = settled_starts(r)
    for content_type in ("application/json", "text/plain"):
        reply = r.invoke(raw=payload, headers={"Content-Type": content_type})
        assert reply.status == 400, reply.body
        assert reply.header("X-Amzn-ErrorType") == "InvalidRequestContentException"
        message = reply.json()["message"]  # type: ignore[index]
        assert message.startswith(NOT_JSON + detail), message
        assert "\n at [Source: (byte[])" in message and "line: 1, column: " in message, message
    assert settled_starts(r) == before + 1  # only its own invoke ran: the refused ones did not


@pytest.mark.parametrize(
    "payload", [b'"a string"', b"42", b"null", b"[1, 2]", b"true", b"1e400", b' {"a": 1}\n']
)
def test_any_json_value_is_passed_on_as_sent(r: RieProcess, payload: bytes) -> None:
    reply = r.invoke(raw=payload)
    assert reply.status == 200, reply.body
    assert reply.body == payload  # the scripted runtime echoes what is not a script


def test_an_empty_payload_reaches_the_function_as_an_empty_object(r: RieProcess) -> None:
    reply = r.invoke(raw=b"")
    assert reply.status == 200, reply.body
    assert reply.json() == {}


def test_botocore_sees_the_same(r: RieProcess) -> None:
    client = boto_client(r)
    with pytest.raises(client.exceptions.InvalidRequestContentException) as info:
        client.invoke(FunctionName="function", Payload=b"hello")
    assert info.value.response["Error"]["Message"].startswith(NOT_JSON)
    resp = client.invoke(FunctionName="function")  # no payload at all, as `aws lambda invoke`
    assert resp["StatusCode"] == 200 and json.loads(resp["Payload"].read()) == {}


# --- defect 8: time limits on request heads and idle connections -------------------------------

HEAD_S, IDLE_S = 1.0, 2.5


@pytest.fixture(scope="module")
def timed() -> Iterator[RieProcess]:
    flags = ("--request-head-timeout", str(HEAD_S), "--keepalive-timeout", str(IDLE_S))
    with scripted("--timeout", "5", *flags) as proc:
        yield proc


def test_a_head_trickled_byte_by_byte_is_cut_off(timed: RieProcess) -> None:
    s = socket.create_connection((timed.host, timed.port), timeout=GUARD_S)
    started = time.monotonic()
    answer = b""
    try:
        s.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\n".encode())
        while time.monotonic() - started < GUARD_S:
            try:
                s.sendall(b"X")  # one byte of an endless header name, paced by the wait below
            except (BrokenPipeError, ConnectionResetError):
                break
            readable, _, _ = select.select([s], [], [], 0.05)
            if readable:
                answer = read_to_close(s)
                break
        else:
            raise AssertionError("a trickled head was held past the guard")
    finally:
        s.close()
    assert time.monotonic() - started >= HEAD_S * 0.9
    aws_error(answer, 408, "RequestTimeoutException")
    good_invoke(timed)


def test_a_connection_that_sends_nothing_is_closed(timed: RieProcess) -> None:
    s = socket.create_connection((timed.host, timed.port), timeout=GUARD_S)
    try:
        answer = read_to_close(s)
    finally:
        s.close()
    aws_error(answer, 408, "RequestTimeoutException")


def test_an_idle_keepalive_connection_is_closed_after_the_idle_time(timed: RieProcess) -> None:
    s = socket.create_connection((timed.host, timed.port), timeout=GUARD_S)
    try:
        s.sendall(request(body=b'{"k": 1}'))
        answer = b""
        while b'{"k": 1}' not in answer:
            chunk = s.recv(65536)
            assert chunk, answer
            answer += chunk
        answered = time.monotonic()
        assert split(answer)[0] == 200
        # the idle time, not the (shorter) head time, applies between requests; then a plain close
        rest = read_to_close(s)
        assert rest == b""
        # (a lower bound with room for a slow reader: the server's idle clock starts before ours)
        assert time.monotonic() - answered >= HEAD_S + (IDLE_S - HEAD_S) / 2
    finally:
        s.close()


def test_a_keepalive_connection_carries_several_requests(timed: RieProcess) -> None:
    s = socket.create_connection((timed.host, timed.port), timeout=GUARD_S)
    try:
        for n in range(3):
            s.sendall(request(body=b'{"n": %d}' % n))
            answer = b""
            while b'{"n": %d}' % n not in answer:
                chunk = s.recv(65536)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]
    finally:
        s.close()
