"""Response streaming for Python handlers (awslambdaric cannot stream).

A handler streams by returning a generator or an async generator of `bytes` or `str`: the runtime
sends each item to the Runtime API as it is produced (`Lambda-Runtime-Function-Response-Mode:
streaming`, chunked), and an exception after the first item is reported in the error trailers.
To stream an HTTP answer through a Function URL (InvokeMode RESPONSE_STREAM), return
`http_response(...)`: it puts the JSON prelude (status, headers, cookies) and its eight NUL bytes in
front of the body, with the content type Function URLs read it by.

    from runtime.streaming import http_response

    def handler(event, context):
        def body():
            for i in range(3):
                yield f"line {i}\\n"
        return http_response(200, {"content-type": "text/plain"}, ["seen=1"], body())

This module is only imported by functions that use it; the invocation loop recognises its
`StreamingResponse` without importing it, so a runtime that never streams pays nothing for it.
"""

from __future__ import annotations

TYPE_CHECKING = False  # `typing` costs milliseconds at start-up; annotations are never evaluated

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
    from typing import Any

    Body = Iterable[bytes | str] | AsyncIterable[bytes | str] | bytes | str

HTTP_INTEGRATION_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_SEPARATOR = b"\0" * 8


class StreamingResponse:
    """A body to stream (an iterable or async iterable of bytes/str) and its content type."""

    __slots__ = ("body", "content_type")

    def __init__(self, body: Body, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        if isinstance(body, bytes | str):
            body = (body,)
        self.body = body
        self.content_type = content_type


def stream(body: Body, content_type: str = DEFAULT_CONTENT_TYPE) -> StreamingResponse:
    """Stream `body` with a content type of your choosing (a bare generator streams as
    application/octet-stream)."""
    return StreamingResponse(body, content_type)


def http_response(
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    cookies: Sequence[str] | None = None,
    body: Body = (),
) -> StreamingResponse:
    """An HTTP answer for a Function URL in RESPONSE_STREAM mode: the prelude, then `body` as it
    is produced."""
    import json

    prelude: dict[str, Any] = {"statusCode": status_code, "headers": dict(headers or {})}
    if cookies:
        prelude["cookies"] = list(cookies)
    head = json.dumps(prelude, separators=(",", ":")).encode() + _SEPARATOR
    if isinstance(body, bytes | str):
        body = (body,)
    if hasattr(body, "__aiter__"):
        return StreamingResponse(_async_with_head(head, body), HTTP_INTEGRATION_CONTENT_TYPE)  # type: ignore[arg-type]
    return StreamingResponse(_with_head(head, body), HTTP_INTEGRATION_CONTENT_TYPE)


def _with_head(head: bytes, body: Iterable[bytes | str]) -> Iterable[bytes | str]:
    yield head
    yield from body


async def _async_with_head(
    head: bytes, body: AsyncIterable[bytes | str]
) -> AsyncIterable[bytes | str]:
    yield head
    async for chunk in body:
        yield chunk
