"""The pure adapters of the HTTP front: events built from AWS's documented example request, results
mapped back per format, every failure answer, routes, CORS and the streaming prelude."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from rie.fronts.http_events import (
    Api,
    Cors,
    EventInfo,
    Failure,
    Format,
    HttpRequest,
    MalformedResult,
    build_event,
    failure_answer,
    map_result,
    prelude_head,
    split_prelude,
    with_cors,
)
from rie.settings.routes import match_route, parse_route

GOLDEN = Path(__file__).parent / "golden"
TRACE = "Root=1-5e5ffb6e-0a1b2c3d4e5f60718293a4b5;Parent=0a1b2c3d4e5f6071;Sampled=0"
REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"

# the request behind AWS's documented examples: repeated header and query keys, two cookies
DOC_REQUEST = HttpRequest(
    "POST",
    "/my/path",
    "parameter1=value1&parameter1=value2&parameter2=value",
    (
        ("Host", "example.test"),
        ("User-Agent", "agent"),
        ("header1", "value1"),
        ("header2", "value1"),
        ("header2", "value2"),
        ("Cookie", "cookie1; cookie2"),
        ("Content-Type", "text/plain"),
    ),
    b"Hello from client!",
    "123.123.123.123",
    "HTTP/1.1",
    443,
)


def event_for(fmt: Format, route: str | None = None, req: HttpRequest = DOC_REQUEST) -> dict:
    api = Api.for_function(fmt, "my-function", "us-west-2", "123456789012")
    r = parse_route(route) if route else None
    params = (r.match(req.method, req.path) or {}) if r else {}
    return build_event(api, req, EventInfo(REQUEST_ID, TRACE, 1583348638390, r, params))


@pytest.mark.parametrize(
    ("fmt", "route"),
    [
        (Format.FUNCTION_URL, None),
        (Format.HTTP_API, "POST /my/{item}"),
        (Format.REST_API, "POST /my/{item}"),
    ],
)
def test_event_matches_the_golden_file(fmt: Format, route: str | None) -> None:
    golden = json.loads((GOLDEN / f"{fmt.value.replace('-', '_')}.json").read_text())
    assert event_for(fmt, route) == golden


def test_payload_2_facts() -> None:
    e = event_for(Format.FUNCTION_URL)
    assert e["headers"]["header2"] == "value1,value2"  # repeated headers joined with commas
    assert "cookie" not in e["headers"] and e["cookies"] == ["cookie1", "cookie2"]
    assert e["queryStringParameters"] == {"parameter1": "value1,value2", "parameter2": "value"}
    assert "pathParameters" not in e  # Function URLs have no routes
    ctx = e["requestContext"]
    assert ctx["accountId"] == "anonymous" and ctx["stage"] == "$default"
    assert ctx["domainName"].endswith(".lambda-url.us-west-2.on.aws") and len(ctx["apiId"]) == 32
    assert ctx["time"] == "04/Mar/2020:19:03:58 +0000"
    h = event_for(Format.HTTP_API, "POST /my/{item}")
    assert h["routeKey"] == h["requestContext"]["routeKey"] == "POST /my/{item}"
    assert h["pathParameters"] == {"item": "path"}
    assert h["requestContext"]["domainName"].endswith(".execute-api.us-west-2.amazonaws.com")


def test_payload_2_leaves_out_what_is_not_there() -> None:
    bare = HttpRequest("GET", "/", "", (("Host", "h"),))
    e = event_for(Format.FUNCTION_URL, req=bare)
    for key in ("cookies", "queryStringParameters", "body", "pathParameters"):
        assert key not in e
    assert e["isBase64Encoded"] is False and e["rawQueryString"] == ""


def test_payload_1_facts() -> None:
    e = event_for(Format.REST_API, "POST /my/{item}")
    assert e["headers"]["header2"] == "value2"  # the last value
    assert e["multiValueHeaders"]["header2"] == ["value1", "value2"]
    assert e["headers"]["Cookie"] == "cookie1; cookie2"  # 1.0 keeps cookies in the headers
    assert e["queryStringParameters"]["parameter1"] == "value2"
    assert e["multiValueQueryStringParameters"]["parameter1"] == ["value1", "value2"]
    assert e["resource"] == e["requestContext"]["resourcePath"] == "/my/{item}"
    bare = event_for(Format.REST_API, req=HttpRequest("GET", "/a/b", "", (("Host", "h"),)))
    assert bare["queryStringParameters"] is None and bare["body"] is None
    assert bare["resource"] == "/{proxy+}" and bare["pathParameters"] == {"proxy": "a/b"}


@pytest.mark.parametrize(
    ("content_type", "b64"),
    [
        ("text/html; charset=utf-8", False),
        ("application/json", False),
        ("application/vnd.api+json", False),
        ("application/soap+xml", False),
        ("application/x-www-form-urlencoded", False),
        ("application/octet-stream", True),
        ("image/png", True),
    ],
)
def test_binary_bodies_travel_as_base64(content_type: str, b64: bool) -> None:
    body = b"\x00\x01\xffdata" if b64 else b"text"
    req = HttpRequest("POST", "/", "", (("Content-Type", content_type),), body)
    for fmt in Format:
        e = event_for(fmt, req=req)
        assert e["isBase64Encoded"] is b64
        got = base64.b64decode(e["body"]) if b64 else e["body"].encode()
        assert got == body


# --- results ----------------------------------------------------------------------------------


def test_v2_inference_rule() -> None:
    a = map_result(Format.FUNCTION_URL, b'{"hello": "world"}')
    assert (a.status, a.body) == (200, b'{"hello": "world"}')
    assert ("Content-Type", "application/json") in a.headers
    # the Function URL guide's example: the client sees the string with its quotes
    a = map_result(Format.FUNCTION_URL, b'"Hello, world!"')
    assert (a.status, a.body, len(a.body)) == (200, b'"Hello, world!"', 15)
    assert ("Content-Type", "application/json") in a.headers
    a = map_result(Format.HTTP_API, b'{ "message": "Hello from Lambda!" }')
    assert a.body == b'{ "message": "Hello from Lambda!" }'
    assert map_result(Format.HTTP_API, b"[1,2]").status == 200
    with pytest.raises(MalformedResult):
        map_result(Format.FUNCTION_URL, b"not json")


def test_v2_response_with_cookies_and_base64() -> None:
    doc = {
        "statusCode": 201,
        "headers": {"x-n": 1, "content-type": "image/png"},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": base64.b64encode(b"\x89PNG\x00").decode(),
        "isBase64Encoded": True,
    }
    a = map_result(Format.FUNCTION_URL, json.dumps(doc).encode())
    assert a.status == 201 and a.body == b"\x89PNG\x00"
    assert ("Set-Cookie", "a=1; Path=/") in a.headers and ("Set-Cookie", "b=2") in a.headers
    assert ("x-n", "1") in a.headers


def test_v1_merges_multi_value_headers() -> None:
    doc = {
        "statusCode": 200,
        "headers": {"X-One": "a", "X-Both": "single"},
        "multiValueHeaders": {"X-Both": ["m1", "m2"], "Set-Cookie": ["a=1", "b=2"]},
        "body": "ok",
    }
    a = map_result(Format.REST_API, json.dumps(doc).encode())
    assert ("X-One", "a") in a.headers
    assert [v for k, v in a.headers if k == "X-Both"] == ["m1", "m2"]
    assert [v for k, v in a.headers if k == "Set-Cookie"] == ["a=1", "b=2"]


@pytest.mark.parametrize(
    "payload",
    [
        b'{"hello": "world"}',  # 1.0 has no inference: extra fields are malformed
        b'"text"',
        b'{"statusCode": 200, "body": {"not": "a string"}}',
        b'{"statusCode": "abc"}',
        b'{"body": "no status"}',
        b'{"statusCode": 200, "body": "!!", "isBase64Encoded": true}',
        b'{"statusCode": 200, "multiValueHeaders": {"a": "not a list"}}',
    ],
)
def test_v1_malformed_results(payload: bytes) -> None:
    with pytest.raises(MalformedResult):
        map_result(Format.REST_API, payload)


def test_failure_answers() -> None:
    def show(fmt: Format, f: Failure) -> tuple[int, bytes]:
        a = failure_answer(fmt, f)
        return a.status, a.body

    url, http, rest = Format.FUNCTION_URL, Format.HTTP_API, Format.REST_API
    assert show(url, Failure.FUNCTION_ERROR) == (502, b"Internal Server Error")
    assert show(url, Failure.MALFORMED) == (502, b"Internal Server Error")
    assert show(url, Failure.THROTTLED)[0] == 429
    assert show(url, Failure.TOO_LARGE)[0] == 413
    for fmt in (http, rest):
        assert show(fmt, Failure.FUNCTION_ERROR) == (502, b'{"message": "Internal server error"}')
        assert show(fmt, Failure.MALFORMED)[0] == 502
        assert show(fmt, Failure.THROTTLED) == (500, b'{"message": "Internal server error"}')
        assert show(fmt, Failure.NOT_FOUND) == (404, b'{"message": "Not Found"}')
    assert show(rest, Failure.INTEGRATION_TIMEOUT) == (
        504,
        b'{"message": "Endpoint request timed out"}',
    )
    assert show(http, Failure.INTEGRATION_TIMEOUT) == (503, b'{"message": "Service Unavailable"}')


# --- routes -----------------------------------------------------------------------------------


def test_routes() -> None:
    routes = [
        parse_route(r)
        for r in ("GET /items/{id}", "GET /items/special", "ANY /files/{path+}", "POST /items")
    ]
    found = match_route(routes, "GET", "/items/42")
    assert found is not None and found[0].key == "GET /items/{id}" and found[1] == {"id": "42"}
    found = match_route(routes, "GET", "/items/special")
    assert found is not None and found[0].key == "GET /items/special" and found[1] == {}
    found = match_route(routes, "DELETE", "/files/a/b/c.txt")
    assert found is not None and found[1] == {"path": "a/b/c.txt"}
    assert match_route(routes, "DELETE", "/items/42") is None
    assert match_route(routes, "GET", "/files") is None  # a greedy parameter takes a segment
    assert match_route(routes, "GET", "/items/42/more") is None
    default = [*routes, parse_route("$default")]
    found = match_route(default, "PATCH", "/anything")
    assert found is not None and found[0].key == "$default"


@pytest.mark.parametrize(
    "bad", ["FETCH /x", "GET x", "GET /a/{b+}/c", "GET /a/{}", "GET /a{b}", "GET /{a}/{a}"]
)
def test_bad_routes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_route(bad)


# --- CORS and the prelude ---------------------------------------------------------------------


def test_cors_preflight_and_answers() -> None:
    cors = Cors(
        ("https://app.example",),
        ("GET", "POST"),
        ("content-type",),
        ("x-total",),
        300,
        True,
    )
    pre = dict(cors.preflight("https://app.example", "POST", "content-type").headers)
    assert pre["Access-Control-Allow-Origin"] == "https://app.example"
    assert pre["Access-Control-Allow-Methods"] == "GET,POST"
    assert pre["Access-Control-Allow-Headers"] == "content-type"
    assert pre["Access-Control-Max-Age"] == "300"
    assert pre["Access-Control-Allow-Credentials"] == "true"
    other = dict(cors.preflight("https://evil.example", "POST", None).headers)
    assert "Access-Control-Allow-Origin" not in other
    answer = map_result(
        Format.FUNCTION_URL,
        b'{"statusCode": 200, "headers": {"access-control-allow-origin": "*", '
        b'"access-control-max-age": "9"}}',
    )
    got = with_cors(answer, cors, "https://app.example").headers
    assert [v for k, v in got if k.lower() == "access-control-allow-origin"] == [
        "https://app.example"
    ]
    assert ("Access-Control-Expose-Headers", "x-total") in got
    assert ("access-control-max-age", "9") in got  # no conflict: the function's own stays
    star = Cors(("*",))
    assert (
        dict(star.preflight("https://x", "GET", None).headers)["Access-Control-Allow-Origin"] == "*"
    )


def test_prelude() -> None:
    prelude = {"statusCode": 201, "headers": {"x": "y"}, "cookies": ["c=1"]}
    data = json.dumps(prelude).encode() + b"\0" * 8 + b"body"
    assert split_prelude(data[:10]) is None
    got = split_prelude(data)
    assert got is not None and got[1] == b"body"
    status, headers = prelude_head(got[0])
    assert status == 201 and ("x", "y") in headers and ("Set-Cookie", "c=1") in headers
    with pytest.raises(MalformedResult):
        split_prelude(b"nope" + b"\0" * 8)


# --- against AWS's documented examples --------------------------------------------------------

AWS = GOLDEN / "aws"


def _same_shape(ours: object, theirs: object, where: str) -> None:
    """The same keys at every level of an object, and the same JSON type for every value."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        if where.endswith(("headers", "Headers", "Parameters", "pathParameters")):
            return  # maps whose keys come from the request
        assert set(ours) == set(theirs), f"{where}: {set(ours) ^ set(theirs)}"
        for key, value in theirs.items():
            _same_shape(ours[key], value, f"{where}.{key}")
    elif where.endswith(".resourceId"):
        # null in the example, a short id in events of real REST APIs (and here)
        assert isinstance(ours, str)
    else:
        assert type(ours) is type(theirs), f"{where}: {ours!r} vs {theirs!r}"


@pytest.mark.parametrize(
    ("fmt", "route"),
    [
        (Format.FUNCTION_URL, None),
        (Format.HTTP_API, "POST /my/{parameter1}"),
        (Format.REST_API, "POST /my/{item}"),
    ],
)
def test_events_have_the_shape_and_values_of_aws_examples(fmt: Format, route: str | None) -> None:
    theirs = json.loads((AWS / f"{fmt.value.replace('-', '_')}.json").read_text())
    if fmt is Format.HTTP_API:
        theirs.pop("stageVariables")  # rie has no stage variables
    if fmt is Format.REST_API:
        theirs["pathParameters"] = {"item": "path"}  # the example has no route parameter
    ours = event_for(fmt, route)
    _same_shape(ours, theirs, "event")
    # the values that follow from the request are the example's
    if fmt is Format.REST_API:
        for key in ("headers", "multiValueHeaders"):
            assert {k: ours[key][k] for k in ("header1", "header2")} == theirs[key]
        for key in ("path", "queryStringParameters", "multiValueQueryStringParameters"):
            assert ours[key] == theirs[key]
        assert ours["requestContext"]["protocol"] == theirs["requestContext"]["protocol"]
        return
    for key in ("rawPath", "rawQueryString", "cookies", "queryStringParameters"):
        assert ours[key] == theirs[key], key
    assert {k: ours["headers"][k] for k in ("header1", "header2")} == theirs["headers"]
    ctx, their_ctx = ours["requestContext"], theirs["requestContext"]
    for key in ("method", "path", "protocol"):
        assert ctx["http"][key] == their_ctx["http"][key]
    assert ctx["stage"] == their_ctx["stage"]
    if fmt is Format.FUNCTION_URL:
        assert ours["body"] == theirs["body"]
        assert ctx["routeKey"] == their_ctx["routeKey"]
        assert ctx["accountId"] == their_ctx["accountId"]
        assert ctx["http"] == their_ctx["http"]  # same request, same source IP and agent
