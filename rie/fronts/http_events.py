"""What a plain HTTP request becomes in front of a function, and what its result becomes again.

Pure functions, no I/O: Function URLs and API Gateway HTTP APIs send payload format 2.0, REST APIs
(Lambda proxy integration) send 1.0; each maps the function's result back to an HTTP answer its own
way, and answers its failures with its own status and body. Routes (`GET /items/{id}`,
`ANY /files/{path+}`, `$default`) are matched here too.

Invariants: an event holds only what the request carried (fields with no value are left out in 2.0
and `null` in 1.0, as AWS sends them); every result maps to exactly one `HttpAnswer`, a malformed
one included (`MalformedResult`, which the front answers as that integration does).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

import orjson

from rie.settings.routes import Route

INTEGRATION_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
PRELUDE_SEPARATOR = b"\0" * 8

# request bodies of these types travel as text; anything else is base64 (isBase64Encoded: true)
_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/javascript",
        "application/xml",
        "application/x-www-form-urlencoded",
    }
)


class Format(enum.Enum):
    FUNCTION_URL = "function-url"
    HTTP_API = "http-api"
    REST_API = "rest-api"


class MalformedResult(ValueError):
    """The function's result is not a response this integration accepts."""


class Failure(enum.Enum):
    """Why the front could not give the function's own answer."""

    FUNCTION_ERROR = "function_error"  # the function raised, crashed or timed out
    MALFORMED = "malformed"  # the result is not a valid response for the format
    THROTTLED = "throttled"  # Lambda refused the invoke: concurrency limit
    REJECTED = "rejected"  # Lambda refused the invoke otherwise (shutting down, event too large)
    INTEGRATION_TIMEOUT = "integration_timeout"  # API Gateway stopped waiting (29 s / 30 s)
    TOO_LARGE = "too_large"  # the request is over the front's limit
    NOT_FOUND = "not_found"  # no route matches
    BAD_REQUEST = "bad_request"  # the request itself is broken (a body cut short)


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    headers: tuple[tuple[str, str], ...] = ()  # in order; Set-Cookie may repeat
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """An HTTP request as the front received it."""

    method: str
    raw_path: str  # as sent: percent-encoded, without the query
    raw_query: str  # as sent, without the '?'
    headers: tuple[tuple[str, str], ...]  # in order, names as sent
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"
    port: int = 0

    @property
    def path(self) -> str:
        return unquote(self.raw_path)

    def header(self, name: str) -> str | None:
        lower = name.lower()
        values = [v for k, v in self.headers if k.lower() == lower]
        return ",".join(values) if values else None


@dataclass(frozen=True, slots=True)
class Api:
    """The identity of the front as the event describes it (one per function and format)."""

    format: Format
    api_id: str
    region: str = "us-east-1"
    account_id: str = "012345678912"
    stage: str = "$default"

    @property
    def domain_name(self) -> str:
        if self.format is Format.FUNCTION_URL:
            return f"{self.api_id}.lambda-url.{self.region}.on.aws"
        return f"{self.api_id}.execute-api.{self.region}.amazonaws.com"

    @classmethod
    def for_function(cls, fmt: Format, function_name: str, region: str, account_id: str) -> Api:
        # stable across restarts, shaped like AWS's ids: 32 characters for a URL id, 10 for an API
        digest = hashlib.sha256(f"{fmt.value}:{function_name}".encode()).digest()
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        ident = "".join(alphabet[b % len(alphabet)] for b in digest)
        if fmt is Format.FUNCTION_URL:
            # an URL with auth type NONE is called by anyone: the account is "anonymous"
            return cls(fmt, ident[:32], region, "anonymous", "$default")
        if fmt is Format.HTTP_API:
            return cls(fmt, ident[:10], region, account_id, "$default")
        return cls(fmt, ident[:10], region, account_id, "Prod")


# --- events -----------------------------------------------------------------------------------


def is_textual(content_type: str | None) -> bool:
    if not content_type:
        return True  # no declared type: API Gateway and Function URLs pass the body as text
    media = content_type.split(";", 1)[0].strip().lower()
    return (
        media.startswith("text/")
        or media in _TEXT_TYPES
        or media.endswith("+json")
        or media.endswith("+xml")
    )


def _body_fields(req: HttpRequest) -> tuple[str | None, bool]:
    if not req.body:
        return None, False
    if is_textual(req.header("content-type")):
        try:
            return req.body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass  # declared as text but not UTF-8: it can only travel as base64
    return base64.b64encode(req.body).decode("ascii"), True


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    return parse_qsl(raw_query, keep_blank_values=True)


def _clf_time(epoch_ms: int) -> str:
    # Common Log Format, as API Gateway writes it: 12/Mar/2020:19:03:58 +0000
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch_ms / 1000))


def _forwarded(req: HttpRequest, trace_id: str) -> list[tuple[str, str]]:
    # what AWS's load balancers add in front of every integration
    added = [
        ("X-Amzn-Trace-Id", trace_id),
        ("X-Forwarded-For", req.source_ip),
        ("X-Forwarded-Port", str(req.port)),
        ("X-Forwarded-Proto", "http"),
    ]
    present = {k.lower() for k, _ in req.headers}
    return [(k, v) for k, v in added if k.lower() not in present or k == "X-Forwarded-For"]


@dataclass(frozen=True, slots=True)
class EventInfo:
    """The per-request facts that do not come from the request itself."""

    request_id: str
    trace_id: str
    epoch_ms: int
    route: Route | None = None
    path_params: Mapping[str, str] = field(default_factory=dict)


def build_event(api: Api, req: HttpRequest, info: EventInfo) -> dict[str, object]:
    if api.format is Format.REST_API:
        return _event_v1(api, req, info)
    return _event_v2(api, req, info)


def _event_v2(api: Api, req: HttpRequest, info: EventInfo) -> dict[str, object]:
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in [*req.headers, *_forwarded(req, info.trace_id)]:
        lower = name.lower()
        if lower == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        headers[lower] = f"{headers[lower]},{value}" if lower in headers else value
    query: dict[str, str] = {}
    for key, value in _query_pairs(req.raw_query):
        query[key] = f"{query[key]},{value}" if key in query else value
    route_key = "$default"
    if api.format is Format.HTTP_API and info.route is not None:
        route_key = info.route.key
    event: dict[str, object] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": req.raw_path,
        "rawQueryString": req.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    prefix = api.domain_name.partition(".")[0]
    event["requestContext"] = {
        "accountId": api.account_id,
        "apiId": api.api_id,
        "domainName": api.domain_name,
        "domainPrefix": prefix,
        "http": {
            "method": req.method,
            "path": req.path,
            "protocol": req.protocol,
            "sourceIp": req.source_ip,
            "userAgent": req.header("user-agent") or "",
        },
        "requestId": info.request_id,
        "routeKey": route_key,
        "stage": api.stage,
        "time": _clf_time(info.epoch_ms),
        "timeEpoch": info.epoch_ms,
    }
    body, b64 = _body_fields(req)
    if body is not None:
        event["body"] = body
    if api.format is Format.HTTP_API and info.path_params:
        event["pathParameters"] = dict(info.path_params)
    event["isBase64Encoded"] = b64
    return event


def _event_v1(api: Api, req: HttpRequest, info: EventInfo) -> dict[str, object]:
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in [*req.headers, *_forwarded(req, info.trace_id)]:
        headers[name] = value  # the single-value map keeps the last value, in its own case
        multi_headers.setdefault(name, []).append(value)
    query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for key, value in _query_pairs(req.raw_query):
        query[key] = value
        multi_query.setdefault(key, []).append(value)
    if info.route is not None and not info.route.default:
        resource = info.route.path
        params: dict[str, str] | None = dict(info.path_params) or None
    elif req.path == "/":
        resource, params = "/", None
    else:
        # no routes: the function sits behind a greedy proxy resource, as `sam local` sets it up
        resource, params = "/{proxy+}", {"proxy": req.path.lstrip("/")}
    body, b64 = _body_fields(req)
    return {
        "resource": resource,
        "path": req.path,
        "httpMethod": req.method,
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": params,
        "stageVariables": None,
        "requestContext": {
            "resourceId": hashlib.sha256(resource.encode()).hexdigest()[:6],
            "resourcePath": resource,
            "httpMethod": req.method,
            "extendedRequestId": info.request_id,
            "requestTime": _clf_time(info.epoch_ms),
            "path": f"/{api.stage}{req.path}",
            "accountId": api.account_id,
            "protocol": req.protocol,
            "stage": api.stage,
            "domainPrefix": api.api_id,
            "requestTimeEpoch": info.epoch_ms,
            "requestId": info.request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": req.source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": req.header("user-agent"),
                "user": None,
            },
            "domainName": api.domain_name,
            "apiId": api.api_id,
        },
        "body": body,
        "isBase64Encoded": b64,
    }


# --- results ----------------------------------------------------------------------------------

# a header name is an RFC 9110 token; a value holds no control character but HTAB (a CR or LF
# would end the header early and let the function write headers of its own choosing)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# framing is the front's: what the function says about it is not sent (the front counts the body
# itself). A REST API keeps the function's Content-Length and Connection under
# x-amzn-Remapped-*; the others are dropped
_FRAMING = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "trailer",
        "te",
    }
)
_REMAPPED = frozenset({"content-length", "connection"})


def _header_value(name: str, value: object) -> str:
    if not _TOKEN.match(name):
        raise MalformedResult(f"header name {name!r} is not an HTTP token")
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        raise MalformedResult(f"header {name!r}: the value must be a string, number or boolean")
    if _CONTROL.search(text):
        raise MalformedResult(f"header {name!r}: the value holds a control character")
    return text


def _sendable(headers: list[tuple[str, str]], remap: bool) -> list[tuple[str, str]]:
    """The function's headers without those about framing (remapped on a REST API)."""
    out = []
    for name, value in headers:
        lower = name.lower()
        if lower not in _FRAMING:
            out.append((name, value))
        elif remap and lower in _REMAPPED:
            out.append((f"x-amzn-Remapped-{name}", value))
    return out


def _status(doc: Mapping[str, object]) -> int:
    status = doc.get("statusCode")
    if isinstance(status, str) and status.isascii() and status.isdigit() and len(status) <= 3:
        status = int(status)
    # 1xx is never a final answer: a function cannot send one
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise MalformedResult("statusCode must be an HTTP status, 200-599")
    return status


def _body(doc: Mapping[str, object]) -> bytes:
    body = doc.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise MalformedResult("body must be a string")
    encoded = doc.get("isBase64Encoded", False)
    if encoded not in (True, False):
        raise MalformedResult("isBase64Encoded must be a boolean")
    if encoded:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedResult("body is not valid base64") from None
    return body.encode("utf-8")


def _headers_map(doc: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedResult(f"{key} must be an object")
    return value


def _cookie_headers(doc: Mapping[str, object]) -> list[tuple[str, str]]:
    cookies = doc.get("cookies")
    if cookies is None:
        return []
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        raise MalformedResult("cookies must be a list of strings")
    if any(_CONTROL.search(c) for c in cookies):
        raise MalformedResult("a cookie holds a control character")
    return [("Set-Cookie", c) for c in cookies]


def map_result(fmt: Format, payload: bytes) -> HttpAnswer:
    """The HTTP answer for a function's successful result (MalformedResult if it is not one)."""
    try:
        # orjson bounds nesting (1,024 levels) and refuses numbers no double holds: a result
        # too deep or too long to map is malformed rather than an error of the front's
        doc = orjson.loads(payload) if payload.strip() else None
    except orjson.JSONDecodeError:
        raise MalformedResult("the result is not JSON this front can read") from None
    if fmt is Format.REST_API:
        return _result_v1(doc)
    return _result_v2(doc, payload)


def _result_v2(doc: object, payload: bytes) -> HttpAnswer:
    if not isinstance(doc, dict) or "statusCode" not in doc:
        # payload 2.0's inference: any other valid JSON is the body of a 200 JSON answer
        if doc is None and not payload.strip():
            raise MalformedResult("the result is empty")
        # the body is the result as the function wrote it: a string keeps its JSON quotes (the
        # Function URL guide's example: "Hello, world!" reaches the client as 15 bytes)
        return HttpAnswer(200, (("Content-Type", "application/json"),), payload)
    status = _status(doc)
    headers = [(k, _header_value(k, v)) for k, v in _headers_map(doc, "headers").items()]
    headers = _sendable(headers, remap=False)
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/json"))
    headers += _cookie_headers(doc)
    return HttpAnswer(status, tuple(headers), _body(doc))


_V1_KEYS = frozenset({"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"})


def _result_v1(doc: object) -> HttpAnswer:
    if not isinstance(doc, dict):
        raise MalformedResult("the result must be an object with statusCode")
    extra = set(doc) - _V1_KEYS
    if extra:
        raise MalformedResult(
            f"unexpected fields in the proxy response: {', '.join(sorted(extra))}"
        )
    status = _status(doc)  # 1.0 has no inference: a missing statusCode is an invalid one
    multi = _headers_map(doc, "multiValueHeaders")
    headers: list[tuple[str, str]] = []
    multi_names = set()
    for name, values in multi.items():
        if not isinstance(values, list):
            raise MalformedResult(f"multiValueHeaders {name!r}: the value must be a list")
        multi_names.add(name.lower())
        headers += [(name, _header_value(name, v)) for v in values]
    for name, value in _headers_map(doc, "headers").items():
        # where both maps name a header, only multiValueHeaders' values are kept
        if name.lower() not in multi_names:
            headers.append((name, _header_value(name, value)))
    headers = _sendable(headers, remap=True)
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return HttpAnswer(status, tuple(headers), _body(doc))


def split_prelude(data: bytes) -> tuple[dict[str, object], bytes] | None:
    """A streamed http-integration-response: (prelude, body so far), or None until the 8 NULs
    that end the prelude have arrived."""
    end = data.find(PRELUDE_SEPARATOR)
    if end < 0:
        return None
    try:
        prelude = orjson.loads(data[:end]) if data[:end].strip() else {}
    except orjson.JSONDecodeError:
        raise MalformedResult("the streamed response's prelude is not JSON") from None
    if not isinstance(prelude, dict):
        raise MalformedResult("the streamed response's prelude must be an object")
    return prelude, data[end + len(PRELUDE_SEPARATOR) :]


def prelude_head(prelude: Mapping[str, object]) -> tuple[int, tuple[tuple[str, str], ...]]:
    """Status and headers (cookies as Set-Cookie) from a streamed response's prelude."""
    status = _status(prelude) if "statusCode" in prelude else 200
    headers = [(k, _header_value(k, v)) for k, v in _headers_map(prelude, "headers").items()]
    headers = _sendable(headers, remap=False)
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/octet-stream"))
    headers += _cookie_headers(prelude)
    return status, tuple(headers)


# --- failures ---------------------------------------------------------------------------------

_JSON = (("Content-Type", "application/json"),)


def _json_answer(status: int, message: str, key: str = "message") -> HttpAnswer:
    return HttpAnswer(status, _JSON, json.dumps({key: message}).encode())


def failure_answer(fmt: Format, failure: Failure) -> HttpAnswer:
    """How each front answers what went wrong (README: "HTTP fronts: errors")."""
    if failure is Failure.NOT_FOUND:
        return _json_answer(404, "Not Found")
    if failure is Failure.BAD_REQUEST:
        return _json_answer(400, "Bad Request")
    if fmt is Format.FUNCTION_URL:
        if failure in (Failure.FUNCTION_ERROR, Failure.MALFORMED):
            return HttpAnswer(502, (("Content-Type", "text/plain"),), b"Internal Server Error")
        if failure is Failure.THROTTLED:
            return _json_answer(429, "Rate Exceeded.", "Message")
        if failure is Failure.TOO_LARGE:
            return _json_answer(413, "Request Entity Too Large", "Message")
        return _json_answer(500, "Internal Server Error", "Message")
    # API Gateway: an invoke Lambda refused is 500, a function error or bad result 502
    if failure in (Failure.FUNCTION_ERROR, Failure.MALFORMED):
        return _json_answer(502, "Internal server error")
    if failure is Failure.INTEGRATION_TIMEOUT:
        if fmt is Format.REST_API:
            return _json_answer(504, "Endpoint request timed out")
        return _json_answer(503, "Service Unavailable")
    if failure is Failure.TOO_LARGE:
        return _json_answer(413, "Request Entity Too Large")
    return _json_answer(500, "Internal server error")


# --- CORS (Function URLs) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cors:
    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int = 0
    allow_credentials: bool = False

    @property
    def enabled(self) -> bool:
        return bool(
            self.allow_origins
            or self.allow_methods
            or self.allow_headers
            or self.expose_headers
            or self.max_age
            or self.allow_credentials
        )

    def _origin(self, origin: str | None) -> str | None:
        if origin is None:
            return None
        if "*" in self.allow_origins:
            return origin if self.allow_credentials else "*"
        wanted = origin.rstrip("/").lower()
        for allowed in self.allow_origins:
            if allowed.rstrip("/").lower() == wanted:
                return origin
        return None

    def preflight(self, origin: str | None, method: str | None, headers: str | None) -> HttpAnswer:
        """The answer to a preflight OPTIONS, given without invoking the function."""
        out: list[tuple[str, str]] = [("Vary", "Origin")]
        allowed = self._origin(origin)
        if allowed is not None:
            out.append(("Access-Control-Allow-Origin", allowed))
            if self.allow_methods:
                wildcard = "*" in self.allow_methods
                out.append(
                    (
                        "Access-Control-Allow-Methods",
                        (method or "*") if wildcard else ",".join(self.allow_methods),
                    )
                )
            if self.allow_headers:
                wildcard = "*" in self.allow_headers
                value = (headers or "*") if wildcard else ",".join(self.allow_headers)
                out.append(("Access-Control-Allow-Headers", value))
            if self.allow_credentials:
                out.append(("Access-Control-Allow-Credentials", "true"))
            if self.max_age:
                out.append(("Access-Control-Max-Age", str(self.max_age)))
        return HttpAnswer(200, tuple(out))

    def response_headers(self, origin: str | None) -> list[tuple[str, str]]:
        """The CORS headers that replace the function's own on an answer to `origin`."""
        allowed = self._origin(origin)
        if allowed is None:
            return []
        out = [("Access-Control-Allow-Origin", allowed), ("Vary", "Origin")]
        if self.allow_credentials:
            out.append(("Access-Control-Allow-Credentials", "true"))
        if self.expose_headers:
            out.append(("Access-Control-Expose-Headers", ",".join(self.expose_headers)))
        return out


def is_preflight(req: HttpRequest) -> bool:
    return (
        req.method == "OPTIONS"
        and req.header("origin") is not None
        and req.header("access-control-request-method") is not None
    )


def with_cors(answer: HttpAnswer, cors: Cors, origin: str | None) -> HttpAnswer:
    """The answer with Function URL CORS applied: where the function set a header the
    configuration also sets, the configuration's wins (Lambda's "Cross-origin resource sharing")."""
    if not cors.enabled:
        return answer
    added = cors.response_headers(origin)
    if not added:
        return answer
    names = {k.lower() for k, _ in added}
    kept = [(k, v) for k, v in answer.headers if k.lower() not in names]
    return HttpAnswer(answer.status, (*kept, *added), answer.body)
