"""Response streaming: a runtime streaming chunked responses (with error trailers) and callers reading
them through InvokeWithResponseStream, chunk by chunk, or through the buffered Invoke API."""

from __future__ import annotations

import http.client
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rie.http.eventstream import decode
from tests.helpers import RieProcess, rie

RUNTIME = Path(__file__).parent / "fixtures" / "streaming_runtime.py"
STREAM_PATH = "/2021-11-15/functions/function/response-streaming-invocations"


@pytest.fixture(scope="module")
def sr() -> Iterator[RieProcess]:
    with rie("--timeout", "5", "--", sys.executable, str(RUNTIME)) as r:
        yield r


def stream(
    r: RieProcess, event: object
) -> tuple[http.client.HTTPResponse, list[tuple[float, dict[str, str], bytes]]]:
    """Invoke with a streamed answer; each decoded message with the time it arrived."""
    conn = http.client.HTTPConnection(r.host, r.port, timeout=30)
    conn.request("POST", STREAM_PATH, body=json.dumps(event), headers={"X-Amz-Log-Type": "Tail"})
    resp = conn.getresponse()
    messages = []
    buf = b""
    while True:
        data = resp.read1(65536)  # type: ignore[attr-defined]
        if not data:
            break
        buf += data
        while len(buf) >= 4:
            total = int.from_bytes(buf[:4], "big")
            if len(buf) < total:
                break
            for headers, payload in decode(buf[:total]):
                messages.append((time.monotonic(), headers, payload))
            buf = buf[total:]
    conn.close()
    return resp, messages


def test_chunks_reach_the_caller_as_the_runtime_streams_them(sr: RieProcess) -> None:
    resp, messages = stream(sr, {"chunks": ["one ", "two ", "three"], "gap": 0.4})
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "application/vnd.amazon.eventstream"
    assert resp.getheader("X-Amz-Executed-Version") == "$LATEST"
    kinds = [h[":event-type"] for _, h, _ in messages]
    assert kinds == ["PayloadChunk"] * 3 + ["InvokeComplete"]
    assert (
        b"".join(p for _, h, p in messages if h[":event-type"] == "PayloadChunk")
        == b"one two three"
    )
    # streamed, not buffered: the first chunk arrived well before the last
    assert messages[2][0] - messages[0][0] > 0.5
    complete = json.loads(messages[-1][2])
    assert "ErrorCode" not in complete
    assert "REPORT RequestId" in __import__("base64").b64decode(complete["LogResult"]).decode()


def test_error_trailers_end_the_stream_with_an_error(sr: RieProcess) -> None:
    resp, messages = stream(sr, {"error_after": ["partial"]})
    assert resp.status == 200
    assert messages[0][1][":event-type"] == "PayloadChunk" and messages[0][2] == b"partial"
    complete = json.loads(messages[-1][2])
    assert complete["ErrorCode"] == "Function.StreamError"
    assert json.loads(complete["ErrorDetails"]) == {
        "errorMessage": "late failure",
        "errorType": "StreamError",
    }
    assert sr.invoke({"n": 1}).json() == {"buffered": {"n": 1}}


def test_a_stream_cut_short_is_an_error_and_the_environment_goes_on(sr: RieProcess) -> None:
    _, messages = stream(sr, {"cut": ["half"]})
    complete = json.loads(messages[-1][2])
    assert complete["ErrorCode"] == "Runtime.TruncatedResponse"
    assert sr.invoke({"n": 2}).json() == {"buffered": {"n": 2}}


def test_buffered_response_through_the_streaming_api(sr: RieProcess) -> None:
    _, messages = stream(sr, {"n": 3})
    assert [h[":event-type"] for _, h, _ in messages] == ["PayloadChunk", "InvokeComplete"]
    assert json.loads(messages[0][2]) == {"buffered": {"n": 3}}


def test_streamed_response_through_the_buffered_api(sr: RieProcess) -> None:
    reply = sr.invoke({"chunks": ["a", "b", "c"]})
    assert reply.status == 200 and reply.body == b"abc"
    failed = sr.invoke({"error_after": ["a"]})
    assert failed.header("X-Amz-Function-Error") == "Unhandled"
    assert json.loads(failed.body)["errorType"] == "StreamError"


def test_event_invocation_type_is_refused_on_the_streaming_api(sr: RieProcess) -> None:
    reply = sr.request("POST", STREAM_PATH, b"{}", {"X-Amz-Invocation-Type": "Event"})
    assert (
        reply.status == 400 and reply.header("X-Amzn-ErrorType") == "InvalidRequestContentException"
    )
    assert sr.invoke({"n": 4}).status == 200


def test_a_caller_that_hangs_up_mid_stream_leaves_the_invocation_to_finish(sr: RieProcess) -> None:
    finished_before = sr.output().count("stream answered 202")
    conn = http.client.HTTPConnection(sr.host, sr.port, timeout=30)
    conn.request("POST", STREAM_PATH, body=json.dumps({"chunks": ["x" * 1000] * 6, "gap": 0.2}))
    resp = conn.getresponse()
    assert resp.status == 200
    resp.read1(100)  # type: ignore[attr-defined]
    conn.sock.close()  # type: ignore[union-attr]
    conn.close()
    # the runtime finishes its stream and is answered 202 ("stream answered 202"), then serves on
    deadline = time.monotonic() + 10
    while (
        sr.output().count("stream answered 202") == finished_before and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert sr.output().count("stream answered 202") == finished_before + 1
    assert sr.invoke({"n": 5}).json() == {"buffered": {"n": 5}}
    assert "Traceback" not in sr.output() and "Error handling request" not in sr.output()
