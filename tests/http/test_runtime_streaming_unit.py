"""runtime.streaming's helpers and the loop's recognition of streamed results, without processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest

from runtime.loop import _as_bytes, _stream_of
from runtime.streaming import HTTP_INTEGRATION_CONTENT_TYPE, http_response, stream


def _gen() -> Iterator[str]:
    yield "a"
    yield "b"


async def _agen() -> AsyncIterator[bytes]:
    yield b"a"
    yield b"b"


def test_results_that_stream() -> None:
    body, content_type = _stream_of(_gen()) or (None, None)
    assert content_type == "application/octet-stream" and list(body) == ["a", "b"]
    assert _stream_of(_agen()) is not None
    assert _stream_of(stream(["x"], "text/csv")) is not None
    assert _stream_of(stream(["x"], "text/csv"))[1] == "text/csv"  # type: ignore[index]
    for plain in ({"statusCode": 200}, [1, 2], "text", b"bytes", None, iter([1])):
        assert _stream_of(plain) is None  # an iterator that is not a generator is a result


def test_http_response_puts_the_prelude_first() -> None:
    r = http_response(201, {"content-type": "text/plain"}, ["a=1"], _gen())
    assert r.content_type == HTTP_INTEGRATION_CONTENT_TYPE
    items = list(r.body)  # type: ignore[arg-type]
    head = items[0]
    assert isinstance(head, bytes) and head.endswith(b"\0" * 8)
    assert json.loads(head[:-8]) == {
        "statusCode": 201,
        "headers": {"content-type": "text/plain"},
        "cookies": ["a=1"],
    }
    assert items[1:] == ["a", "b"]
    assert list(http_response(body="whole").body)[1:] == ["whole"]  # type: ignore[arg-type]


def test_http_response_with_an_async_body() -> None:
    r = http_response(200, None, None, _agen())

    async def collect() -> list[bytes | str]:
        return [item async for item in r.body]  # type: ignore[union-attr]

    items = asyncio.run(collect())
    assert json.loads(items[0][:-8]) == {"statusCode": 200, "headers": {}}
    assert items[1:] == [b"a", b"b"]


def test_items_must_be_bytes_or_text() -> None:
    assert _as_bytes("é") == "é".encode()
    assert _as_bytes(bytearray(b"x")) == b"x"
    with pytest.raises(TypeError, match="bytes or str"):
        _as_bytes({"not": "bytes"})
