"""REFERENCE §2: the Invoke API, around a POSIX sh + curl runtime and the scripted runtime."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from tests.helpers import INVOKE_PATH, RieProcess, pids_in_session
from tests.rie.conftest import UUID4, curl_sh, do, good_invoke, raw_request, scripted

SYNC_LIMIT = 6291456
ASYNC_LIMIT = 1048576


@pytest.fixture(scope="module")
def shr() -> Iterator[RieProcess]:
    with curl_sh("--timeout", "5") as r:
        yield r


def assert_aws_error(reply, status: int, error_type: str) -> dict:  # type: ignore[no-untyped-def]
    assert reply.status == status, (reply.status, reply.body)
    assert reply.header("X-Amzn-ErrorType") == error_type, reply.headers
    body = reply.json()
    assert body["Type"] == "User", body
    assert isinstance(body["message"], str) and body["message"], body
    return body


# --- success, headers, function error ---------------------------------------------------------


def test_sync_invoke_answers_the_function_result_with_headers(shr) -> None:
    reply = shr.invoke({"hello": "sh"})
    assert reply.status == 200
    assert reply.json() == {"hello": "sh"}
    assert reply.header("X-Amz-Executed-Version") == "$LATEST"
    rid = reply.header("X-Amzn-RequestId")
    assert rid and UUID4.match(rid)
    assert reply.header("X-Amz-Function-Error") is None
    # the id is the one the runtime saw
    shr.wait_for(f"sh handled {rid}")


def test_request_id_header_is_the_one_the_runtime_saw(sr) -> None:
    reply = do(sr)
    seen = reply.json()["next"]["headers"]["lambda-runtime-aws-request-id"]  # type: ignore[index]
    assert reply.header("X-Amzn-RequestId") == seen


def test_function_error_is_200_with_unhandled(shr) -> None:
    reply = shr.invoke({"mode": "fail"})
    assert reply.status == 200
    assert reply.header("X-Amz-Function-Error") == "Unhandled"
    assert reply.json() == {"errorMessage": "sh failed", "errorType": "ShError"}
    assert reply.header("X-Amz-Executed-Version") == "$LATEST"
    good_invoke(shr)


# --- invocation types -------------------------------------------------------------------------


def test_event_invoke_is_202_empty_then_the_function_runs(shr) -> None:
    reply = shr.invoke({"event": 1}, headers={"X-Amz-Invocation-Type": "Event"})
    assert reply.status == 202
    assert reply.body == b""
    rid = reply.header("X-Amzn-RequestId")
    assert rid and UUID4.match(rid)
    shr.wait_for(f"START RequestId: {rid} Version: \\$LATEST")
    shr.wait_for(f"sh handled {rid}")
    shr.wait_for(f"REPORT RequestId: {rid}\t")


def test_dry_run_is_204_and_the_function_does_not_run() -> None:
    with curl_sh() as r:
        reply = r.invoke({}, headers={"X-Amz-Invocation-Type": "DryRun"})
        assert reply.status == 204
        assert reply.body == b""
        assert pids_in_session(r.proc.pid) == [r.proc.pid], "a runtime was started for DryRun"
        assert "START" not in r.output()
        good_invoke(r)
        r.wait_for(r"^REPORT RequestId")  # the log can reach stdout after the answer
        assert r.output().count("START RequestId") == 1


def test_tail_log_result_holds_this_invocations_log(shr) -> None:
    reply = shr.invoke({"tail": 1}, headers={"X-Amz-Log-Type": "Tail"})
    assert reply.status == 200
    rid = reply.header("X-Amzn-RequestId")
    log = base64.b64decode(reply.header("X-Amz-Log-Result") or "").decode()
    lines = log.splitlines()
    start = lines.index(f"START RequestId: {rid} Version: $LATEST")
    own = lines.index(f"sh handled {rid}")
    end = lines.index(f"END RequestId: {rid}")
    rep = [i for i, line in enumerate(lines) if line.startswith(f"REPORT RequestId: {rid}\t")]
    assert rep and start < own < end < rep[0], log
    # no Tail asked: no header
    assert shr.invoke({}).header("X-Amz-Log-Result") is None


def test_tail_is_at_most_4096_bytes_of_the_end_of_a_long_log(sr) -> None:
    lines = [{"print": f"chatty line {i:04d} " + "x" * 60} for i in range(200)]
    reply = do(sr, *lines, headers={"X-Amz-Log-Type": "Tail"})
    rid = reply.header("X-Amzn-RequestId")
    log = base64.b64decode(reply.header("X-Amz-Log-Result") or "")
    assert 0 < len(log) <= 4096
    assert len(log) >= 3000  # the last 4 KB, not a few lines
    text = log.decode("utf-8", "replace")
    assert "chatty line 0199" in text
    assert "chatty line 0000" not in text
    assert text.rstrip("\n").splitlines()[-1].startswith(f"REPORT RequestId: {rid}\t")


# --- payload limits ---------------------------------------------------------------------------


def test_sync_payload_over_6mb_is_413(shr) -> None:
    reply = shr.invoke(raw=b"1" * (SYNC_LIMIT + 1))
    body = assert_aws_error(reply, 413, "RequestEntityTooLargeException")
    assert body["message"] == (
        "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
    )
    good_invoke(shr)


def test_sync_payload_of_exactly_6mb_is_accepted(shr) -> None:
    payload = b'"' + b"a" * (SYNC_LIMIT - 2) + b'"'
    reply = shr.invoke(raw=payload)
    assert reply.status == 200, reply.body[:300]
    assert reply.body == payload


def test_event_payload_over_1mb_is_413(shr) -> None:
    headers = {"X-Amz-Invocation-Type": "Event"}
    reply = shr.invoke(raw=b"1" * (ASYNC_LIMIT + 1), headers=headers)
    assert_aws_error(reply, 413, "RequestEntityTooLargeException")
    reply = shr.invoke(raw=b'"' + b"a" * (ASYNC_LIMIT - 2) + b'"', headers=headers)
    assert reply.status == 202
    good_invoke(shr)


# --- function names ---------------------------------------------------------------------------


def invoke_named(r: RieProcess, name: str, payload: object):  # type: ignore[no-untyped-def]
    """Invoke `name`, which may end in `?Qualifier=...` (moved after the path)."""
    name, sep, query = name.partition("?")
    path = INVOKE_PATH.format(name=name) + sep + query
    return r.request("POST", path, json.dumps(payload).encode())


ARN = "arn:aws:lambda:us-east-1:012345678912:function:test_function"


@pytest.mark.parametrize(
    "name",
    [
        "function",
        "test_function",
        ARN,
        "function:$LATEST",
        "test_function:$LATEST",
        ARN + ":$LATEST",
        "test_function?Qualifier=$LATEST",
        "012345678912:function:test_function",
    ],
)
def test_name_forms_are_accepted(shr, name: str) -> None:
    reply = invoke_named(shr, name, {"name": name})
    assert reply.status == 200, (name, reply.body)
    assert reply.json() == {"name": name}


@pytest.mark.parametrize(
    "name",
    [
        "other_function",
        "function:1",
        "test_function:prod",
        "test_function?Qualifier=2",
        "arn:aws:lambda:us-east-1:012345678912:function:someone_else",
    ],
)
def test_unknown_function_or_qualifier_is_404(shr, name: str) -> None:
    reply = invoke_named(shr, name, {})
    assert_aws_error(reply, 404, "ResourceNotFoundException")
    good_invoke(shr)


# --- malformed requests, each followed by a good invoke ---------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_bad_method_is_refused(shr, method: str) -> None:
    reply = shr.request(method, INVOKE_PATH.format(name="function"), b"{}")
    assert reply.status == 405, (reply.status, reply.body)
    good_invoke(shr)


@pytest.mark.parametrize(
    "path", ["/", "/2015-03-31/functions/function", "/2015-03-31/functions/function/bogus"]
)
def test_unknown_path_is_404(shr, path: str) -> None:
    reply = shr.request("POST", path, b"{}")
    assert reply.status == 404, (reply.status, reply.body)
    good_invoke(shr)


def test_truncated_body_is_400_invalid_request_content(shr) -> None:
    path = INVOKE_PATH.format(name="function")
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n".encode()
    status, headers, body = raw_request(shr.host, shr.port, head + b'{"a": 1')
    assert status == 400, (status, body)
    assert "x-amzn-errortype: invalidrequestcontentexception" in headers.lower()
    good_invoke(shr)


def test_bad_base64_client_context_is_400(shr) -> None:
    reply = shr.invoke({}, headers={"X-Amz-Client-Context": "%%% not base64 %%%"})
    assert_aws_error(reply, 400, "InvalidRequestContentException")
    good_invoke(shr)


def test_client_context_that_is_not_json_is_400(shr) -> None:
    value = base64.b64encode(b"not json").decode()
    reply = shr.invoke({}, headers={"X-Amz-Client-Context": value})
    assert_aws_error(reply, 400, "InvalidRequestContentException")
    good_invoke(shr)


def test_client_context_over_3583_bytes_is_400(shr) -> None:
    value = base64.b64encode(json.dumps({"custom": {"k": "v" * 3000}}).encode()).decode()
    assert len(value) > 3583
    reply = shr.invoke({}, headers={"X-Amz-Client-Context": value})
    assert_aws_error(reply, 400, "InvalidRequestContentException")
    good_invoke(shr)


def test_bad_invocation_type_is_400(shr) -> None:
    reply = shr.invoke({}, headers={"X-Amz-Invocation-Type": "Sometimes"})
    assert_aws_error(reply, 400, "InvalidRequestContentException")
    good_invoke(shr)


def test_bad_log_type_is_400(shr) -> None:
    reply = shr.invoke({}, headers={"X-Amz-Log-Type": "Everything"})
    assert_aws_error(reply, 400, "InvalidRequestContentException")
    good_invoke(shr)


def test_function_name_option_names_the_function() -> None:
    with scripted("--function-name", "my-fn") as r:
        for name in ("function", "my-fn", "arn:aws:lambda:us-east-1:012345678912:function:my-fn"):
            reply = do(r, name=name)
            assert reply.status == 200, (name, reply.body)
        h = reply.json()["next"]["headers"]  # type: ignore[index]
        assert h["lambda-runtime-invoked-function-arn"].endswith(":function:my-fn")
        assert r.invoke({}, name="test_function").status == 404
        good_invoke(r)
