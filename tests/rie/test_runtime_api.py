"""REFERENCE §1: the Runtime API as a scripted runtime sees it."""

from __future__ import annotations

import base64
import json
import re
import socket
import time
import uuid

from tests.rie.conftest import (
    BASE,
    TRACE,
    UUID4,
    do,
    good_invoke,
    scripted,
    wait_until,
)

H_ERR = "Lambda-Runtime-Function-Error-Type"


def results_of(reply) -> list:  # type: ignore[no-untyped-def]
    assert reply.status == 200, (reply.status, reply.body)
    assert reply.header("X-Amz-Function-Error") is None, reply.body
    return reply.json()["results"]  # type: ignore[index]


def previous_results(r) -> list:  # type: ignore[no-untyped-def]
    """The results of the previous invocation's actions, via a fresh good invoke."""
    reply = do(r)
    assert reply.status == 200, reply.body
    return reply.json()["previous"]  # type: ignore[index]


TRANSITION_MESSAGE = re.compile(
    r"^State transition from \w+ to \w+ failed for runtime\. Error: State transition is not allowed$"
)


def error_json(result: dict) -> dict:
    body = json.loads(result["body"])
    assert set(body) >= {"errorMessage", "errorType"}, body
    if body["errorType"] == "InvalidStateTransition":
        assert TRANSITION_MESSAGE.match(body["errorMessage"]), body
    expected = MESSAGES.get(body["errorType"])
    if expected is not None:
        assert body["errorMessage"] == expected, body
    return body


MESSAGES = {
    "InvalidRequestID": "Invalid request ID",
    "RequestEntityTooLarge": "Exceeded maximum allowed payload size (6291556 bytes).",
    "TruncatedHTTPRequest": "HTTP request detected as truncated",
    "InvalidFunctionResponseMode": "Invalid function response mode",
}


# --- GET next ---------------------------------------------------------------------------------


def test_next_headers_carry_the_callers_request(sr) -> None:
    cc = {"custom": {"k": "v"}, "env": {"e": "1"}, "client": {"installation_id": "i"}}
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    before = int(time.time() * 1000)
    reply = do(
        sr,
        headers={
            "X-Amzn-Trace-Id": trace,
            "X-Amz-Client-Context": base64.b64encode(json.dumps(cc).encode()).decode(),
            "X-Amz-Tenant-Id": "tenant-42",
            "Content-Type": "application/vnd.test+json",
        },
    )
    assert reply.status == 200, reply.body
    nxt = reply.json()["next"]  # type: ignore[index]
    h = nxt["headers"]
    assert nxt["status"] == 200
    assert h["lambda-runtime-aws-request-id"] == reply.header("X-Amzn-RequestId")
    assert UUID4.match(h["lambda-runtime-aws-request-id"])
    deadline = int(h["lambda-runtime-deadline-ms"])
    # epoch ms = start + 5 s timeout
    assert before + 5000 - 2000 <= deadline <= nxt["received_ms"] + 5000 + 1000, (before, deadline)
    assert h["lambda-runtime-invoked-function-arn"] == (
        "arn:aws:lambda:us-east-1:012345678912:function:test_function"
    )
    assert h["lambda-runtime-trace-id"] == trace
    assert json.loads(h["lambda-runtime-client-context"]) == cc
    assert h["lambda-runtime-aws-tenant-id"] == "tenant-42"
    assert h["content-type"] == "application/vnd.test+json"
    assert json.loads(nxt["body"]) == {"do": []}


def test_next_without_optional_headers(sr) -> None:
    reply = do(sr)  # http.client sends no Content-Type, no trace id
    h = reply.json()["next"]["headers"]  # type: ignore[index]
    assert TRACE.match(h["lambda-runtime-trace-id"]), h
    epoch = int(h["lambda-runtime-trace-id"][7:15], 16)
    assert abs(epoch - time.time()) < 600
    assert h["content-type"] == "application/json"
    assert "lambda-runtime-client-context" not in h
    assert "lambda-runtime-aws-tenant-id" not in h


def test_curl_default_form_type_is_treated_as_json(sr) -> None:
    reply = do(sr, headers={"Content-Type": "application/x-www-form-urlencoded"})
    h = reply.json()["next"]["headers"]  # type: ignore[index]
    assert h["content-type"] == "application/json"


def test_trace_ids_are_fresh_per_invocation(sr) -> None:
    a = do(sr).json()["next"]["headers"]["lambda-runtime-trace-id"]  # type: ignore[index]
    b = do(sr).json()["next"]["headers"]["lambda-runtime-trace-id"]  # type: ignore[index]
    assert TRACE.match(a) and TRACE.match(b)
    assert a != b


def test_request_ids_are_uuid4_and_distinct(sr) -> None:
    ids = []
    for _ in range(5):
        reply = do(sr)
        rid = reply.json()["next"]["headers"]["lambda-runtime-aws-request-id"]  # type: ignore[index]
        assert rid == reply.header("X-Amzn-RequestId")
        assert UUID4.match(rid) and uuid.UUID(rid).version == 4
        ids.append(rid)
    assert len(set(ids)) == 5


def test_second_next_during_an_invocation_returns_the_same_event(sr) -> None:
    reply = do(sr, {"get": "next"})
    first = reply.json()["next"]  # type: ignore[index]
    again = results_of(reply)[0]
    assert again["status"] == 200
    assert (
        again["headers"]["lambda-runtime-aws-request-id"]
        == (first["headers"]["lambda-runtime-aws-request-id"])
    )
    assert again["body"] == first["body"]
    good_invoke(sr)


# --- response and error -----------------------------------------------------------------------


def test_response_is_accepted_with_202(sr) -> None:
    reply = do(sr, {"post": "response", "body": '{"answer": 42}'})
    assert reply.status == 200
    assert reply.json() == {"answer": 42}
    result = previous_results(sr)[0]
    assert result["status"] == 202
    assert json.loads(result["body"]) == {"status": "OK"}


def test_error_is_accepted_with_202_and_answered_as_function_error(sr) -> None:
    body = '{"errorMessage": "boom", "errorType": "ValueError", "stackTrace": []}'
    reply = do(sr, {"post": "error", "body": body, "headers": {H_ERR: "Function.ValueError"}})
    assert reply.status == 200
    assert reply.header("X-Amz-Function-Error") == "Unhandled"
    assert reply.json() == json.loads(body)
    result = previous_results(sr)[0]
    assert result["status"] == 202
    assert json.loads(result["body"]) == {"status": "OK"}


def test_second_response_is_403_invalid_state_transition(sr) -> None:
    reply = do(
        sr, {"post": "response", "body": '"first"'}, {"post": "response", "body": '"second"'}
    )
    assert reply.json() == "first"
    second = previous_results(sr)[1]
    assert second["status"] == 403
    assert error_json(second)["errorType"] == "InvalidStateTransition"
    good_invoke(sr)


def test_error_after_response_is_403(sr) -> None:
    reply = do(sr, {"post": "response", "body": '"done"'}, {"post": "error", "body": "{}"})
    assert reply.json() == "done"
    assert reply.header("X-Amz-Function-Error") is None
    late = previous_results(sr)[1]
    assert late["status"] == 403
    assert error_json(late)["errorType"] == "InvalidStateTransition"
    good_invoke(sr)


def test_init_error_after_init_is_403(sr) -> None:
    reply = do(sr, {"post": "init/error", "body": "{}", "headers": {H_ERR: "Runtime.Late"}})
    res = results_of(reply)[0]
    assert res["status"] == 403
    assert error_json(res)["errorType"] == "InvalidStateTransition"
    good_invoke(sr)


def test_unknown_request_id_is_400_invalid_request_id(sr) -> None:
    bogus = str(uuid.uuid4())
    reply = do(
        sr,
        {"post": "response", "id": bogus, "body": "{}"},
        {"post": "error", "id": bogus, "body": "{}"},
        {"post": "response", "id": "not-an-id", "body": "{}"},
    )
    for res in results_of(reply):
        assert res["status"] == 400, res
        assert error_json(res)["errorType"] == "InvalidRequestID"
    good_invoke(sr)


def test_oversized_response_is_413_and_the_caller_gets_response_size_too_large(sr) -> None:
    reply = do(sr, {"post": "response", "size": 6291556 + 1})
    assert reply.status == 200
    assert reply.header("X-Amz-Function-Error") == "Unhandled"
    assert reply.json()["errorType"] == "Function.ResponseSizeTooLarge"  # type: ignore[index]
    res = previous_results(sr)[0]
    assert res["status"] == 413
    assert error_json(res)["errorType"] == "RequestEntityTooLarge"
    good_invoke(sr)


def test_response_of_exactly_the_limit_is_accepted(sr) -> None:
    reply = do(sr, {"post": "response", "size": 6291556})
    assert reply.status == 200
    assert reply.header("X-Amz-Function-Error") is None
    assert len(reply.body) == 6291556


def test_truncated_response_body_is_400_truncated_http_request(sr) -> None:
    reply = do(sr, {"truncated": "response", "declared": 100, "sent": 10})
    res = results_of(reply)[0]
    assert res["status"] == 400, res
    assert error_json(res)["errorType"] == "TruncatedHTTPRequest"
    good_invoke(sr)


def test_truncated_error_body_is_400_truncated_http_request(sr) -> None:
    reply = do(sr, {"truncated": "error", "declared": 1000, "sent": 1})
    res = results_of(reply)[0]
    assert res["status"] == 400, res
    assert error_json(res)["errorType"] == "TruncatedHTTPRequest"
    good_invoke(sr)


def test_bogus_response_mode_is_400_invalid_function_response_mode(sr) -> None:
    reply = do(
        sr,
        {
            "post": "response",
            "body": '"x"',
            "headers": {"Lambda-Runtime-Function-Response-Mode": "bogus"},
        },
    )
    res = results_of(reply)[0]  # not answered: the runtime's automatic response got through
    assert res["status"] == 400
    assert error_json(res)["errorType"] == "InvalidFunctionResponseMode"
    good_invoke(sr)


def test_unknown_path_is_404_and_wrong_method_is_405(sr) -> None:
    reply = do(
        sr,
        {"get": f"{BASE}/bogus"},
        {"post": "/2018-06-01/nothing/here", "body": "{}"},
        {"method": "GET", "path": "response"},
        {"method": "DELETE", "path": "next"},
        {"method": "PUT", "path": "init/error", "body": "{}"},
    )
    statuses = [res["status"] for res in results_of(reply)]
    assert statuses == [404, 404, 405, 405, 405]
    good_invoke(sr)


def test_ping_answers_pong(sr) -> None:
    res = results_of(do(sr, {"get": "/ping"}))[0]
    assert res["status"] == 200
    assert res["body"] == "pong"


# --- error bodies and error types -------------------------------------------------------------


def test_bad_error_type_header_is_sanitised_and_the_body_passes_as_posted(sr) -> None:
    body = '{"errorMessage": "m", "errorType": "Whatever"}'
    reply = do(sr, {"post": "error", "body": body, "headers": {H_ERR: "Runtime.Bad-Type"}})
    assert reply.status == 200
    assert reply.header("X-Amz-Function-Error") == "Unhandled"
    assert reply.body == body.encode()
    assert previous_results(sr)[0]["status"] == 202
    good_invoke(sr)


def test_bad_error_type_without_body_is_recorded_as_runtime_unknown(sr) -> None:
    reply = do(sr, {"post": "error", "body": "", "headers": {H_ERR: "Runtime.Bad-Type"}})
    assert reply.header("X-Amz-Function-Error") == "Unhandled"
    assert reply.json()["errorType"] == "Runtime.Unknown"  # type: ignore[index]
    reply = do(sr, {"post": "error", "body": "", "headers": {H_ERR: "Function.lower"}})
    assert reply.json()["errorType"] == "Function.Unknown"  # type: ignore[index]
    reply = do(sr, {"post": "error", "body": "", "headers": {H_ERR: "Function.GoodName"}})
    assert reply.json()["errorType"] == "Function.GoodName"  # type: ignore[index]
    good_invoke(sr)


def test_error_cause_body_keeps_only_message_type_and_stack(sr) -> None:
    cause = {
        "errorMessage": "m",
        "errorType": "E",
        "stackTrace": ["a", "b"],
        "requestId": "x",
        "extra": {"deep": 1},
    }
    reply = do(
        sr,
        {
            "post": "error",
            "body": json.dumps(cause),
            "headers": {
                "Content-Type": "application/vnd.aws.lambda.error.cause+json",
                H_ERR: "Function.E",
            },
        },
    )
    assert reply.header("X-Amz-Function-Error") == "Unhandled"
    assert reply.json() == {"errorMessage": "m", "errorType": "E", "stackTrace": ["a", "b"]}


def test_non_json_error_body_passes_as_is(sr) -> None:
    reply = do(sr, {"post": "error", "body": "not json at all", "headers": {H_ERR: "Runtime.X"}})
    assert reply.header("X-Amz-Function-Error") == "Unhandled"
    assert reply.body == b"not json at all"
    good_invoke(sr)


def test_xray_error_cause_header_is_accepted(sr) -> None:
    xray = json.dumps({"working_directory": "/", "exceptions": [], "paths": []})
    reply = do(
        sr,
        {
            "post": "error",
            "body": '{"errorMessage": "m", "errorType": "E"}',
            "headers": {H_ERR: "Function.E", "Lambda-Runtime-Function-XRay-Error-Cause": xray},
        },
    )
    assert reply.header("X-Amz-Function-Error") == "Unhandled"
    assert reply.json() == {"errorMessage": "m", "errorType": "E"}
    assert previous_results(sr)[0]["status"] == 202


# --- init/error and the listening address -----------------------------------------------------


def test_init_error_before_first_next_is_202_and_answers_the_invoke(tmp_path) -> None:
    record = tmp_path / "record.jsonl"
    body = {"errorMessage": "cannot start", "errorType": "Runtime.Custom", "stackTrace": []}
    init_do = [
        {"post": "init/error", "body": json.dumps(body), "headers": {H_ERR: "Runtime.Custom"}},
        {"exit": 1},
    ]
    env = {"INIT_DO": json.dumps(init_do), "RECORD": str(record)}
    with scripted("--timeout", "5", env=env) as r:
        reply = r.invoke({})
        assert reply.status == 200
        assert reply.header("X-Amz-Function-Error") == "Unhandled"
        assert reply.json() == body
        steps = [json.loads(x) for x in record.read_text().splitlines()]
        init_steps = [s["init_step"] for s in steps if "init_step" in s]
        assert init_steps[0]["status"] == 202
        assert json.loads(init_steps[0]["body"]) == {"status": "OK"}
        # the next invoke inits again (and fails the same way)
        reply = r.invoke({})
        assert reply.json() == body
        starts = wait_until(
            lambda: (
                [x for x in record.read_text().splitlines() if '"started"' in x]
                if record.read_text().count('"started"') >= 2
                else None
            )
        )
        assert len(starts) == 2


def _non_loopback_ip() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


def test_runtime_api_listens_on_loopback_only(sr) -> None:
    reply = do(sr, {"post": "response", "env": True})
    api = reply.json()["AWS_LAMBDA_RUNTIME_API"]  # type: ignore[index]
    host, _, port = api.rpartition(":")
    assert host == "127.0.0.1"
    ip = _non_loopback_ip()
    if ip is not None:
        s = socket.socket()
        s.settimeout(5)
        try:
            refused = s.connect_ex((ip, int(port))) != 0
        finally:
            s.close()
        assert refused, f"the Runtime API answers on {ip}:{port}"


def test_init_error_without_exiting_still_answers_the_invoke(tmp_path) -> None:
    # the runtime posts init/error, then carries on to `next` instead of exiting
    body = {"errorMessage": "half-started", "errorType": "Runtime.Stuck"}
    init_do = [
        {"post": "init/error", "body": json.dumps(body), "headers": {H_ERR: "Runtime.Stuck"}}
    ]
    with scripted("--timeout", "5", env={"INIT_DO": json.dumps(init_do)}) as r:
        reply = r.invoke({}, timeout=20)
        assert reply.status == 200
        assert reply.header("X-Amz-Function-Error") == "Unhandled"
        assert reply.json() == body


def test_init_error_type_is_sanitised(tmp_path) -> None:
    init_do = [{"post": "init/error", "body": "", "headers": {H_ERR: "not a type"}}, {"exit": 1}]
    with scripted("--timeout", "5", env={"INIT_DO": json.dumps(init_do)}) as r:
        reply = r.invoke({})
        assert reply.header("X-Amz-Function-Error") == "Unhandled"
        assert reply.json()["errorType"] == "Runtime.Unknown"  # type: ignore[index]


def test_stderr_reaches_the_log_too(sr) -> None:
    reply = do(sr, {"eprint": "to stderr"}, headers={"X-Amz-Log-Type": "Tail"})
    assert reply.status == 200
    sr.wait_for("^to stderr$")
    log = base64.b64decode(reply.header("X-Amz-Log-Result") or "").decode()
    assert "to stderr\n" in log
