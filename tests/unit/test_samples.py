"""Sample events: each parses, has the documented top-level shape, fresh ids; `--set` edits."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from rie.model import samples

# the top-level keys (and for batches, the keys of a record) AWS documents for each event
SHAPES = {
    "apigateway-rest": {
        "resource", "path", "httpMethod", "headers", "multiValueHeaders",
        "queryStringParameters", "multiValueQueryStringParameters", "pathParameters",
        "stageVariables", "requestContext", "body", "isBase64Encoded",
    },
    "apigateway-http": {
        "version", "routeKey", "rawPath", "rawQueryString", "cookies", "headers",
        "queryStringParameters", "pathParameters", "requestContext", "body", "isBase64Encoded",
    },
    "function-url": {
        "version", "routeKey", "rawPath", "rawQueryString", "cookies", "headers",
        "queryStringParameters", "requestContext", "body", "isBase64Encoded",
    },
    "eventbridge-scheduled": {
        "version", "id", "detail-type", "source", "account", "time", "region", "resources",
        "detail",
    },
    "cloudwatch-logs": {"awslogs"},
    "alb": {
        "requestContext", "httpMethod", "path", "queryStringParameters", "headers", "body",
        "isBase64Encoded",
    },
}  # fmt: skip
RECORDS = {
    "s3-put": ("eventSource", "aws:s3", {"eventVersion", "eventTime", "eventName", "s3"}),
    "s3-delete": ("eventSource", "aws:s3", {"eventVersion", "eventTime", "eventName", "s3"}),
    "sqs": ("eventSource", "aws:sqs", {"messageId", "receiptHandle", "body", "attributes"}),
    "sns": ("EventSource", "aws:sns", {"EventVersion", "EventSubscriptionArn", "Sns"}),
    "dynamodb-stream": ("eventSource", "aws:dynamodb", {"eventID", "eventName", "dynamodb"}),
    "kinesis": ("eventSource", "aws:kinesis", {"eventID", "eventName", "kinesis"}),
}


def test_the_required_samples_exist() -> None:
    assert set(samples.SAMPLES) >= set(SHAPES) | set(RECORDS)
    assert all(what for _, what in samples.describe())


@pytest.mark.parametrize("name", sorted(samples.SAMPLES))
def test_each_sample_is_json_with_the_documented_shape(name: str) -> None:
    event = json.loads(json.dumps(samples.build(name)))  # survives a JSON round trip
    if name in SHAPES:
        assert set(event) == SHAPES[name]
    else:
        key, source, fields = RECORDS[name]
        assert set(event) == {"Records"} and event["Records"]
        for record in event["Records"]:
            assert record[key] == source and fields <= set(record)


def test_http_samples_match_their_payload_formats() -> None:
    rest = samples.build("apigateway-rest")
    assert rest["requestContext"]["resourcePath"] == rest["resource"]
    http = samples.build("apigateway-http")
    assert http["requestContext"]["routeKey"] == http["routeKey"] == "POST /items/{id}"
    url = samples.build("function-url")
    assert url["routeKey"] == "$default" and url["requestContext"]["accountId"] == "anonymous"
    assert url["requestContext"]["domainName"].endswith(".lambda-url.us-east-1.on.aws")
    s3 = samples.build("s3-put")["Records"][0]
    assert s3["eventName"] == "ObjectCreated:Put" and s3["s3"]["object"]["size"] > 0
    assert samples.build("s3-delete")["Records"][0]["eventName"].startswith("ObjectRemoved:")
    data = base64.b64decode(samples.build("kinesis")["Records"][0]["kinesis"]["data"])
    assert json.loads(data) == {"hello": "world"}


def test_cloudwatch_logs_data_is_real_gzip_and_base64() -> None:
    event = samples.build("cloudwatch-logs")
    doc = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    assert doc["messageType"] == "DATA_MESSAGE"
    assert set(doc) == {
        "messageType", "owner", "logGroup", "logStream", "subscriptionFilters", "logEvents",
    }  # fmt: skip
    assert all(set(e) == {"id", "timestamp", "message"} for e in doc["logEvents"])


def test_ids_are_fresh() -> None:
    first, second = samples.build("sqs"), samples.build("sqs")
    assert first["Records"][0]["messageId"] != second["Records"][0]["messageId"]
    a, b = samples.build("apigateway-http"), samples.build("apigateway-http")
    assert a["requestContext"]["requestId"] != b["requestContext"]["requestId"]


def test_set_edits_keep_types_and_refuse_bad_paths() -> None:
    event = samples.build("s3-put")
    samples.override(event, "Records.0.s3.bucket.name=my-bucket")
    samples.override(event, "Records.0.s3.object.size=2048")
    samples.override(event, "Records.0.s3.object.key=123")  # a string stays a string
    samples.override(event, 'extra.nested={"a": [1]}')
    obj = event["Records"][0]["s3"]["object"]
    assert event["Records"][0]["s3"]["bucket"]["name"] == "my-bucket"
    assert obj["size"] == 2048 and obj["key"] == "123" and event["extra"]["nested"] == {"a": [1]}
    rest = samples.build("apigateway-rest")
    samples.override(rest, "stageVariables.stage=dev")  # into a null
    assert rest["stageVariables"] == {"stage": "dev"}
    for bad in ("noequals", "Records.5.x=1", "Records.0.s3.object.size=big", "Records.x=1"):
        with pytest.raises(ValueError):
            samples.override(samples.build("s3-put"), bad)
