"""Testing the example function with pyrie's pytest plugin: `pip install pyrie`, then `pytest`.

The `lambda_function` fixture starts the function under a real rie (its own process, free ports)
and stops it when the test ends.
"""

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def test_greets_by_name(lambda_function):
    fn = lambda_function(handler="app.handler", task_root=HERE, timeout=3)
    result = fn.invoke({"name": "you"})
    assert result.function_error is None
    assert result.payload["message"] == "Hello, you!"
    assert result.payload["requestId"] == result.request_id
    assert "greeting you" in result.log  # the handler's print, from the invocation's log tail
    assert f"REPORT RequestId: {result.request_id}" in result.log


def test_through_boto3(lambda_function):
    boto3 = pytest.importorskip("boto3")
    fn = lambda_function(handler="app.handler", task_root=HERE)
    client = boto3.client(
        "lambda",
        endpoint_url=fn.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    reply = client.invoke(FunctionName="function", Payload=b'{"name": "boto3"}')
    assert b"Hello, boto3!" in reply["Payload"].read()
