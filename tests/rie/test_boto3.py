"""boto3 as the caller, against awslambdaric under rie."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from tests.helpers import RieProcess, boto_client
from tests.rie.conftest import ric


@pytest.fixture(scope="module")
def lam() -> Iterator[tuple[RieProcess, object]]:
    with ric("app.main", "--timeout", "10") as r:
        yield r, boto_client(r)


def test_success(lam) -> None:
    _, client = lam
    resp = client.invoke(FunctionName="function", Payload=json.dumps({"k": "v"}))
    assert resp["StatusCode"] == 200
    assert resp["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in resp
    body = json.loads(resp["Payload"].read())
    assert body["event"] == {"k": "v"}
    assert body["requestId"] == resp["ResponseMetadata"]["RequestId"]


def test_function_error(lam) -> None:
    _, client = lam
    resp = client.invoke(FunctionName="test_function", Payload=json.dumps({"fail": True}))
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    body = json.loads(resp["Payload"].read())
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "handler failed on purpose"
    assert isinstance(body["stackTrace"], list) and body["stackTrace"]


def test_log_result(lam) -> None:
    _, client = lam
    resp = client.invoke(
        FunctionName="function", Payload=json.dumps({"print": ["boto-tail-line"]}), LogType="Tail"
    )
    rid = resp["ResponseMetadata"]["RequestId"]
    log = base64.b64decode(resp["LogResult"]).decode()
    assert f"START RequestId: {rid}" in log
    assert "boto-tail-line" in log
    assert f"END RequestId: {rid}" in log
    assert f"REPORT RequestId: {rid}" in log


def test_event(lam) -> None:
    r, client = lam
    resp = client.invoke(
        FunctionName="function", InvocationType="Event", Payload=json.dumps({"print": ["ev-run"]})
    )
    assert resp["StatusCode"] == 202
    assert resp["Payload"].read() == b""
    rid = resp["ResponseMetadata"]["RequestId"]
    r.wait_for(f"START RequestId: {rid}")
    r.wait_for("ev-run")


def test_dry_run(lam) -> None:
    r, client = lam
    resp = client.invoke(FunctionName="function", InvocationType="DryRun", Payload=b"{}")
    assert resp["StatusCode"] == 204
    rid = resp["ResponseMetadata"]["RequestId"]
    client.invoke(FunctionName="function", Payload=b"{}")  # to be sure nothing was queued
    assert f"START RequestId: {rid}" not in r.output()


def test_oversized_payload(lam) -> None:
    _, client = lam
    # Lambda's error code; botocore models no exception class for it, so it is a ClientError
    with pytest.raises(ClientError) as info:
        client.invoke(FunctionName="function", Payload=b"1" * (6291456 + 1))
    error = info.value.response["Error"]
    assert error["Code"] == "RequestEntityTooLargeException"
    assert "6291456" in error["Message"]
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert client.invoke(FunctionName="function", Payload=b"{}")["StatusCode"] == 200


def test_unknown_function(lam) -> None:
    _, client = lam
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="nobody", Payload=b"{}")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="function", Qualifier="7", Payload=b"{}")
    assert client.invoke(FunctionName="function", Payload=b"{}")["StatusCode"] == 200


def test_qualifier_latest_and_arn(lam) -> None:
    _, client = lam
    arn = "arn:aws:lambda:us-east-1:012345678912:function:test_function"
    assert client.invoke(FunctionName=arn, Payload=b"{}")["StatusCode"] == 200
    resp = client.invoke(FunctionName="test_function", Qualifier="$LATEST", Payload=b"{}")
    assert resp["StatusCode"] == 200


def test_bad_client_context(lam) -> None:
    _, client = lam
    with pytest.raises(client.exceptions.InvalidRequestContentException):
        client.invoke(FunctionName="function", ClientContext="***", Payload=b"{}")
    assert client.invoke(FunctionName="function", Payload=b"{}")["StatusCode"] == 200


def test_invoke_with_response_stream(lam) -> None:
    _, client = lam
    resp = client.invoke_with_response_stream(
        FunctionName="function", Payload=json.dumps({"s": 1}), LogType="Tail"
    )
    assert resp["StatusCode"] == 200
    assert resp["ExecutedVersion"] == "$LATEST"
    chunks, complete = [], None
    for event in resp["EventStream"]:
        if "PayloadChunk" in event:
            chunks.append(event["PayloadChunk"]["Payload"])
        elif "InvokeComplete" in event:
            complete = event["InvokeComplete"]
    assert json.loads(b"".join(chunks))["event"] == {"s": 1}
    assert complete is not None and not complete.get("ErrorCode")
    assert "REPORT RequestId" in base64.b64decode(complete["LogResult"]).decode()
