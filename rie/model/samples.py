"""Ready events, in the shapes AWS documents for each service that invokes Lambda.

Pure: every builder returns a fresh dict (new ids, the current time) and takes no I/O. `override`
applies `--set dotted.path=value` edits. Shapes follow the example events in the Lambda
developer guide for each integration (API Gateway REST / HTTP API, Function URLs, S3, SQS, SNS,
DynamoDB Streams, Kinesis, EventBridge, CloudWatch Logs, ALB).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"
SOURCE_IP = "198.51.100.1"
USER_AGENT = "rie-sample/1.0"

Event = dict[str, Any]


def _hex(n: int) -> str:
    return os.urandom(n).hex()


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


def _iso_seconds(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _clf(epoch: float) -> str:
    """API Gateway's requestContext time: `12/Mar/2020:19:03:58 +0000`."""
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch))


def _trace(epoch: float) -> str:
    return f"Root=1-{int(epoch):08x}-{_hex(12)}"


def apigateway_rest() -> Event:
    """API Gateway REST API, Lambda proxy integration (payload format 1.0)."""
    now = time.time()
    body = '{"hello": "world"}'
    headers = {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "Host": f"abcdef1234.execute-api.{REGION}.amazonaws.com",
        "User-Agent": USER_AGENT,
        "X-Amzn-Trace-Id": _trace(now),
        "X-Forwarded-For": SOURCE_IP,
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    return {
        "resource": "/items/{id}",
        "path": "/items/42",
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {"verbose": "true"},
        "multiValueQueryStringParameters": {"verbose": ["true"]},
        "pathParameters": {"id": "42"},
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "abcdef1234",
            "domainName": f"abcdef1234.execute-api.{REGION}.amazonaws.com",
            "domainPrefix": "abcdef1234",
            "extendedRequestId": _hex(8),
            "httpMethod": "POST",
            "identity": {
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": SOURCE_IP,
                "user": None,
                "userAgent": USER_AGENT,
                "userArn": None,
            },
            "path": "/prod/items/42",
            "protocol": "HTTP/1.1",
            "requestId": str(uuid.uuid4()),
            "requestTime": _clf(now),
            "requestTimeEpoch": int(now * 1000),
            "resourceId": _hex(3),
            "resourcePath": "/items/{id}",
            "stage": "prod",
        },
        "body": body,
        "isBase64Encoded": False,
    }


def _http_v2(route_key: str, path: str, domain: str, function_url: bool) -> Event:
    now = time.time()
    api_id = domain.split(".", 1)[0]
    event: Event = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "verbose=true",
        "cookies": ["session=abc123"],
        "headers": {
            "accept": "application/json",
            "content-type": "application/json",
            "host": domain,
            "user-agent": USER_AGENT,
            "x-amzn-trace-id": _trace(now),
            "x-forwarded-for": SOURCE_IP,
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "queryStringParameters": {"verbose": "true"},
        "requestContext": {
            "accountId": "anonymous" if function_url else ACCOUNT,
            "apiId": api_id,
            "domainName": domain,
            "domainPrefix": api_id,
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": SOURCE_IP,
                "userAgent": USER_AGENT,
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": _clf(now),
            "timeEpoch": int(now * 1000),
        },
        "body": '{"hello": "world"}',
        "isBase64Encoded": False,
    }
    if not function_url:
        event["pathParameters"] = {"id": "42"}
    return event


def apigateway_http() -> Event:
    """API Gateway HTTP API (payload format 2.0), route `POST /items/{id}`."""
    return _http_v2(
        "POST /items/{id}", "/items/42", f"abcdef1234.execute-api.{REGION}.amazonaws.com", False
    )


def function_url() -> Event:
    """A Function URL request (payload format 2.0, auth type NONE)."""
    url_id = _hex(16)
    return _http_v2("$default", "/items/42", f"{url_id}.lambda-url.{REGION}.on.aws", True)


def _s3(event_name: str, with_object_size: bool) -> Event:
    now = time.time()
    obj: dict[str, Any] = {"key": "uploads/photo.jpg", "sequencer": f"{int(now * 1e6):X}"}
    if with_object_size:
        obj = {
            "key": "uploads/photo.jpg",
            "size": 1024,
            "eTag": _hex(16),
            "sequencer": obj["sequencer"],
        }
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": _iso(now),
                "eventName": event_name,
                "userIdentity": {"principalId": "EXAMPLE"},
                "requestParameters": {"sourceIPAddress": SOURCE_IP},
                "responseElements": {
                    "x-amz-request-id": _hex(8).upper(),
                    "x-amz-id-2": base64.b64encode(os.urandom(48)).decode(),
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "rie-sample",
                    "bucket": {
                        "name": "example-bucket",
                        "ownerIdentity": {"principalId": "EXAMPLE"},
                        "arn": "arn:aws:s3:::example-bucket",
                    },
                    "object": obj,
                },
            }
        ]
    }


def s3_put() -> Event:
    """S3 event notification: an object created by PUT."""
    return _s3("ObjectCreated:Put", True)


def s3_delete() -> Event:
    """S3 event notification: an object deleted."""
    return _s3("ObjectRemoved:Delete", False)


def sqs() -> Event:
    """An SQS batch of one message."""
    now_ms = int(time.time() * 1000)
    body = '{"hello": "world"}'
    import hashlib

    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": base64.b64encode(os.urandom(96)).decode(),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": str(now_ms),
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": str(now_ms + 1),
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:example-queue",
                "awsRegion": REGION,
            }
        ]
    }


def sns() -> Event:
    """An SNS notification."""
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:example-topic"
    return {
        "Records": [
            {
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{topic}:{uuid.uuid4()}",
                "EventSource": "aws:sns",
                "Sns": {
                    "SignatureVersion": "1",
                    "Timestamp": _iso(time.time()),
                    "Signature": base64.b64encode(os.urandom(64)).decode(),
                    "SigningCertUrl": f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-example.pem",
                    "MessageId": str(uuid.uuid4()),
                    "Message": '{"hello": "world"}',
                    "MessageAttributes": {},
                    "Type": "Notification",
                    "UnsubscribeUrl": f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe",
                    "TopicArn": topic,
                    "Subject": "example",
                },
            }
        ]
    }


def dynamodb_stream() -> Event:
    """A DynamoDB Streams batch: one INSERT and one MODIFY (NEW_AND_OLD_IMAGES)."""
    now = int(time.time())
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/example-table"
    stream = f"{table}/stream/{time.strftime('%Y-%m-%dT%H:%M:%S.000', time.gmtime(now))}"

    def record(name: str, seq: int, new: dict[str, Any], old: dict[str, Any] | None) -> Event:
        data: dict[str, Any] = {
            "ApproximateCreationDateTime": now,
            "Keys": {"Id": {"N": "101"}},
            "NewImage": new,
            "SequenceNumber": str(seq),
            "SizeBytes": 26 if old is None else 59,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if old is not None:
            data["OldImage"] = old
        return {
            "eventID": _hex(16),
            "eventName": name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": REGION,
            "dynamodb": data,
            "eventSourceARN": stream,
        }

    first = {"Message": {"S": "New item!"}, "Id": {"N": "101"}}
    second = {"Message": {"S": "This item has changed"}, "Id": {"N": "101"}}
    base = int.from_bytes(os.urandom(6), "big") * 1000
    return {
        "Records": [
            record("INSERT", base, first, None),
            record("MODIFY", base + 1, second, first),
        ]
    }


def kinesis() -> Event:
    """A Kinesis Data Streams batch of one record (data base64-encoded)."""
    now = time.time()
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "1",
                    "sequenceNumber": str(int.from_bytes(os.urandom(20), "big")),
                    "data": base64.b64encode(b'{"hello": "world"}').decode(),
                    "approximateArrivalTimestamp": round(now, 3),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"shardId-000000000000:{int.from_bytes(os.urandom(20), 'big')}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/lambda-role",
                "awsRegion": REGION,
                "eventSourceARN": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/example-stream",
            }
        ]
    }


def eventbridge_scheduled() -> Event:
    """An EventBridge (CloudWatch Events) scheduled event."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": _iso_seconds(time.time()),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/example-schedule"],
        "detail": {},
    }


def cloudwatch_logs_data(messages: list[str] | None = None) -> dict[str, Any]:
    """The decoded content of `awslogs.data`: a subscription filter's DATA_MESSAGE."""
    now_ms = int(time.time() * 1000)
    messages = messages or ["[INFO] first log line", "[ERROR] second log line"]
    first_id = int.from_bytes(os.urandom(23), "big")
    return {
        "messageType": "DATA_MESSAGE",
        "owner": ACCOUNT,
        "logGroup": "/aws/lambda/example-function",
        "logStream": time.strftime("%Y/%m/%d/", time.gmtime()) + f"[$LATEST]{_hex(16)}",
        "subscriptionFilters": ["example-filter"],
        "logEvents": [
            {"id": str(first_id + i), "timestamp": now_ms + i, "message": message}
            for i, message in enumerate(messages)
        ],
    }


def cloudwatch_logs() -> Event:
    """CloudWatch Logs subscription: `awslogs.data` is base64 of the gzipped JSON."""
    raw = json.dumps(cloudwatch_logs_data(), separators=(",", ":")).encode()
    return {"awslogs": {"data": base64.b64encode(gzip.compress(raw)).decode()}}


def alb() -> Event:
    """An Application Load Balancer request to a Lambda target group."""
    now = time.time()
    return {
        "requestContext": {
            "elb": {
                "targetGroupArn": f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:"
                f"targetgroup/example-targets/{_hex(8)}"
            }
        },
        "httpMethod": "GET",
        "path": "/items/42",
        "queryStringParameters": {"verbose": "true"},
        "headers": {
            "accept": "application/json",
            "host": f"example-alb-1234567890.{REGION}.elb.amazonaws.com",
            "user-agent": USER_AGENT,
            "x-amzn-trace-id": _trace(now),
            "x-forwarded-for": SOURCE_IP,
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "body": "",
        "isBase64Encoded": False,
    }


SAMPLES: dict[str, Callable[[], Event]] = {
    "apigateway-rest": apigateway_rest,
    "apigateway-http": apigateway_http,
    "function-url": function_url,
    "s3-put": s3_put,
    "s3-delete": s3_delete,
    "sqs": sqs,
    "sns": sns,
    "dynamodb-stream": dynamodb_stream,
    "kinesis": kinesis,
    "eventbridge-scheduled": eventbridge_scheduled,
    "cloudwatch-logs": cloudwatch_logs,
    "alb": alb,
}


def describe() -> list[tuple[str, str]]:
    """(name, one-line description) of every sample."""
    return [
        (name, (build.__doc__ or "").strip().splitlines()[0]) for name, build in SAMPLES.items()
    ]


def build(name: str) -> Event:
    try:
        return SAMPLES[name]()
    except KeyError:
        raise KeyError(f"no sample event {name!r}; `rie event list` shows them") from None


def override(event: Any, assignment: str) -> None:
    """Apply `dotted.path=value` to `event` in place. List items are numbered from 0
    (`Records.0.body=hi`). The value keeps the type of what it replaces: text for a string, JSON
    for anything else (`Records.0.s3.object.size=2048`, `detail={"a":1}`); a new key takes JSON if
    the value parses as JSON, else text."""
    path, sep, text = assignment.partition("=")
    if not sep or not path:
        raise ValueError(f"--set {assignment!r}: expected dotted.path=value")
    keys = path.split(".")
    node = event
    for depth, key in enumerate(keys[:-1]):
        node = _step(node, key, ".".join(keys[: depth + 1]))
    last = keys[-1]
    current: Any = None
    if isinstance(node, dict):
        current = node.get(last)
    elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
        current = node[int(last)]
    value: Any
    if isinstance(current, str):
        value = text
    else:
        try:
            value = json.loads(text)
        except ValueError:
            if current is not None:
                raise ValueError(
                    f"--set {path}: expected JSON for a {type(current).__name__}"
                ) from None
            value = text
    if isinstance(node, list):
        node[_index(node, last, path)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ValueError(f"--set {path}: {'.'.join(keys[:-1])} is not an object or a list")


def _index(node: list[Any], key: str, path: str) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise ValueError(f"--set {path}: no item {key} in a list of {len(node)}")
    return int(key)


def _step(node: Any, key: str, path: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, key, path)]
    if isinstance(node, dict):
        if key not in node or node[key] is None:
            node[key] = {}
        return node[key]
    raise ValueError(f"--set {path}: cannot go into a {type(node).__name__}")
