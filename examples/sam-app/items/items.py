"""GET /items lists the items, POST /items adds one (kept in memory: one environment's state),
and SQS messages add items too."""

import json

ITEMS: list[dict] = []


def handler(event, context):
    if "Records" in event:  # an SQS batch
        for record in event["Records"]:
            ITEMS.append(json.loads(record["body"]))
        return {"batchItemFailures": []}
    method = event.get("requestContext", {}).get("http", {}).get("method", "GET")
    if method == "POST":
        ITEMS.append(json.loads(event.get("body") or "{}"))
        return {"statusCode": 201, "body": json.dumps({"count": len(ITEMS)})}
    return {"statusCode": 200, "body": json.dumps({"items": ITEMS})}
