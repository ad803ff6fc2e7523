"""GET /hello/{name}: a greeting, as an API Gateway HTTP API (payload 2.0) response."""

import json
import os


def handler(event, context):
    name = (event.get("pathParameters") or {}).get("name", "world")
    body = {
        "message": f"{os.environ.get('GREETING', 'Hello')}, {name}!",
        "stage": os.environ["STAGE"],
    }
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }
