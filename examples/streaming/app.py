"""A Python handler that streams its HTTP answer through a Function URL (InvokeMode RESPONSE_STREAM).

It needs this project's runtime client (`runtime/`): awslambdaric cannot stream. Each line reaches
the client as soon as it is yielded; an exception after the first line cuts the answer short.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from runtime.streaming import http_response


def handler(event: dict[str, Any], context: Any) -> Any:
    query = event.get("queryStringParameters") or {}
    count = min(int(query.get("count", "5")), 100)

    def lines() -> Iterator[str]:
        for i in range(count):
            yield f"line {i + 1} of {count}, {context.get_remaining_time_in_millis()} ms left\n"
            time.sleep(0.2)  # stands for work: a model's tokens, rows of a query, ...

    headers = {"content-type": "text/plain; charset=utf-8", "cache-control": "no-store"}
    return http_response(200, headers, ["visited=1; Path=/"], lines())
