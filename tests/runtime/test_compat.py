"""The same handlers under awslambdaric and under `python -m runtime`: the Runtime API must see
the same thing, apart from the documented improvements (UTF-8 instead of \\uXXXX escapes,
compact JSON, an error-type header on invocation errors, our own init warning wording)."""

from __future__ import annotations

import json
import os
import re
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.runtime.fake_api import Recorded, Run, run

KINDS = ("ric", "ours")
TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


def both(handler: str, events: list[dict[str, Any]] | None = None, **kw: Any) -> dict[str, Run]:
    """Run the handler under both runtimes at once (they have separate fake servers)."""
    with ThreadPoolExecutor(2) as pool:
        futures = {k: pool.submit(run, k, handler, events, **kw) for k in KINDS}
        return {k: f.result() for k, f in futures.items()}


def decoded(rec: Recorded) -> Any:
    # NaN is not JSON, but awslambdaric writes it for Decimal('NaN'); compare it as a string
    return json.loads(rec.body, parse_constant=str)


def outcome(ev_rec: Recorded) -> tuple[str, str | None, Any]:
    kind = ev_rec.path.rsplit("/", 1)[1]
    ctype = ev_rec.header("content-type")
    body = decoded(ev_rec) if ctype == "application/json" else ev_rec.body
    if isinstance(body, dict) and "requestId" in body:
        body["requestId"] = "-"
    return kind, ctype, body


def xray(rec: Recorded) -> Any:
    cause = json.loads(rec.header("lambda-runtime-function-xray-error-cause") or "null")
    if cause:
        cause["paths"] = sorted(cause["paths"])
    return cause


# -- results -----------------------------------------------------------------------------------

RESULT_KINDS = [
    "dict", "none", "str", "bytes", "decimal", "decimals", "list", "nonascii", "tuple",
    "namedtuple", "intkeys", "bigint", "bool", "float", "int", "empty",
]  # fmt: skip


def test_every_result_type_reaches_the_api_the_same() -> None:
    events = [{"payload": {"kind": k}} for k in RESULT_KINDS]
    runs = both("results.handler", events)
    for i, kind in enumerate(RESULT_KINDS):
        ric = runs["ric"].events[i].outcome
        ours = runs["ours"].events[i].outcome
        assert ric is not None and ours is not None
        assert outcome(ours) == outcome(ric), kind
        assert ours.path == ric.path.replace(
            runs["ric"].events[i].request_id, runs["ours"].events[i].request_id
        )


def test_non_ascii_is_sent_as_utf8() -> None:
    r = run("ours", "results.handler", [{"payload": {"kind": "nonascii"}}])
    out = r.events[0].outcome
    assert out is not None
    assert "héllo wörld ✓ 日本".encode() in out.body
    assert b"\\u" not in out.body


def test_second_next_after_each_response_on_one_connection() -> None:
    r = run("ours", "results.handler", [{"payload": {"kind": "int"}}] * 3)
    paths = [(q.method, q.path.rsplit("/", 1)[-1]) for q in r.requests]
    assert paths == [("GET", "next"), ("POST", "response")] * 3 + [("GET", "next")]
    assert len({q.conn for q in r.requests}) == 1, "one keep-alive connection for everything"


# -- events ------------------------------------------------------------------------------------


def test_events_by_content_type() -> None:
    events = [
        {"raw": b'{"a": [1, 2]}'},
        {"raw": b"plain text", "content_type": "text/plain"},
        {"raw": b'{"a": 1}', "content_type": "application/json; charset=utf-8"},
        {"raw": b'{"n": NaN}'},
        {"raw": b'{"big": 123456789012345678901234567890}'},
        {"raw": '{"ü": "ß"}'.encode()},
    ]
    runs = both("results.echo", events)
    for i in range(len(events)):
        ric, ours = runs["ric"].events[i].outcome, runs["ours"].events[i].outcome
        assert ric is not None and ours is not None
        assert outcome(ours) == outcome(ric), events[i]


# -- invocation errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "handler",
    [
        "raising.handler",
        "raising.custom",
        "raising.nonascii",
        "raising.chained",
        "raising.empty_message",
        "results.datetime_result",
        "results.set_result",
    ],
)
def test_invocation_errors_match(handler: str) -> None:
    runs = both(handler, [{"payload": {"value": 3}}])
    ric, ours = runs["ric"].events[0].outcome, runs["ours"].events[0].outcome
    assert ric is not None and ours is not None
    assert ric.path.endswith("/error") and ours.path.endswith("/error")
    body_ric, body_ours = decoded(ric), decoded(ours)
    body_ric["requestId"] = body_ours["requestId"] = "-"
    assert body_ours == body_ric  # same message, type and stack trace, frame for frame
    assert xray(ours) == xray(ric)
    # our improvement: the error type travels in the header too
    assert ours.header("lambda-runtime-function-error-type") == decoded(ours)["errorType"]
    assert ours.header("content-type") == ric.header("content-type") == "application/json"
    # the error is logged the same way
    assert error_lines(runs["ours"].stdout) == error_lines(runs["ric"].stdout)


def test_nested_frames_are_the_users_only() -> None:
    r = run("ours", "raising.handler", [{"payload": {"value": 3}}])
    assert r.events[0].outcome is not None
    trace = decoded(r.events[0].outcome)["stackTrace"]
    functions = [re.search(r"in (\w+)\n", t).group(1) for t in trace]  # type: ignore[union-attr]
    assert functions == ["handler", "_middle", "_innermost"]
    assert all("raising.py" in t for t in trace)


def test_bad_event_and_bad_client_context() -> None:
    for handler, event, error_type, prefix in [
        ("results.echo", {"raw": b"{bad"}, "Runtime.UnmarshalError", "Unable to unmarshal input: "),
        (
            "context_dump.handler",
            {"payload": {}, "client_context": "{bad"},
            "Runtime.LambdaContextUnmarshalError",
            "Unable to parse Client Context JSON: ",
        ),
    ]:
        runs = both(handler, [event])
        for kind in KINDS:
            out = runs[kind].events[0].outcome
            assert out is not None and out.path.endswith("/error")
            body = decoded(out)
            assert body["errorType"] == error_type
            assert body["errorMessage"].startswith(prefix)
            assert body["stackTrace"] == []


# -- init errors -------------------------------------------------------------------------------

INIT_ERRORS = [
    ("nodot", "Runtime.MalformedHandlerName"),
    ("no_such_module_xyz.handler", "Runtime.ImportModuleError"),
    ("pkg/sub/nothing_here.handler", "Runtime.ImportModuleError"),
    ("imports_missing.handler", "Runtime.ImportModuleError"),
    ("syntax_error.handler", "Runtime.UserCodeSyntaxError"),
    ("results.no_such_function", "Runtime.HandlerNotFound"),
    ("sys.handler", "Runtime.BuiltInModuleConflict"),
    ("raise_at_import.handler", "ConfigurationError"),
]


@pytest.mark.parametrize(("handler", "error_type"), INIT_ERRORS)
def test_init_errors_match(handler: str, error_type: str) -> None:
    runs = both(handler, expect_exit=True)
    for kind in KINDS:
        r = runs[kind]
        assert r.returncode == 1, (kind, r.stdout)
        assert [q.path for q in r.requests] == ["/2018-06-01/runtime/init/error"], kind
        assert r.init_errors[0].header("lambda-runtime-function-error-type") == error_type
    ric, ours = runs["ric"].init_errors[0], runs["ours"].init_errors[0]
    assert decoded(ours) == decoded(ric)
    assert decoded(ours)["requestId"] == ""
    assert error_lines(runs["ours"].stdout) == error_lines(runs["ric"].stdout)
    # both warn first; the wording of the warning is our own
    for kind in KINDS:
        assert re.match(
            r"\[WARNING\]\t\S+Z\t\tLAMBDA_WARNING: Unhandled exception", runs[kind].stdout
        )


def test_init_error_messages() -> None:
    expected = {
        "nodot": "Bad handler 'nodot': not enough values to unpack (expected 2, got 1)",
        "no_such_module_xyz.handler": "Unable to import module 'no_such_module_xyz': No module named 'no_such_module_xyz'",
        "results.no_such_function": "Handler 'no_such_function' missing on module 'results'",
        "sys.handler": "Cannot use built-in module sys as a handler module",
        "raise_at_import.handler": "missing setting DATABASE_URL",
    }
    for handler, message in expected.items():
        r = run("ours", handler, expect_exit=True)
        assert decoded(r.init_errors[0])["errorMessage"] == message


# -- context and environment -------------------------------------------------------------------


def test_context_matches() -> None:
    cc = {
        "custom": {"k": "v"},
        "env": {"platform": "test"},
        "client": {"installation_id": "i-1", "app_title": "t"},
        "w3c": {"traceparent": "00-abc-def-01", "other": "dropped"},
    }
    events = [
        {
            "payload": {"x": 1},
            "client_context": json.dumps(cc),
            "cognito_identity": json.dumps(
                {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}
            ),
            "tenant_id": "tenant-42",
        },
        {"payload": {"x": 2}, "trace_id": None},
        {"payload": [1, 2], "trace_id": TRACE},
    ]
    runs = both("context_dump.handler", events)
    for i in range(len(events)):
        ric, ours = runs["ric"].events[i].outcome, runs["ours"].events[i].outcome
        assert ric is not None and ours is not None
        got, want = decoded(ours), decoded(ric)
        assert got["aws_request_id"] == runs["ours"].events[i].request_id
        got["aws_request_id"] = want["aws_request_id"] = "-"
        assert got == want
    first = decoded(runs["ours"].events[0].outcome)  # type: ignore[arg-type]
    assert first["tenant_id"] == "tenant-42"
    assert first["client_context"]["client"]["installation_id"] == "i-1"
    assert first["identity"] == {
        "cognito_identity_id": "id-1",
        "cognito_identity_pool_id": "pool-1",
    }
    assert first["remaining_positive"] and first["remaining_at_most_deadline"]
    # the trace id is set from the header, removed when an invocation has none, set again
    traces = [decoded(runs["ours"].events[i].outcome)["trace_env"] for i in range(3)]  # type: ignore[arg-type]
    assert traces == [events[0].get("trace_id", TRACE), None, TRACE]


def test_context_reprs_and_w3c_match() -> None:
    ev = {
        "payload": {},
        "client_context": json.dumps(
            {"custom": {"a": 1}, "client": {"app_title": "t"}, "w3c": {"baggage": "b=1"}}
        ),
        "cognito_identity": json.dumps({"cognitoIdentityId": "id1"}),
    }
    runs = both("context_dump.reprs", [ev, {"payload": {}}])
    for i in range(2):
        assert decoded(runs["ours"].events[i].outcome) == decoded(runs["ric"].events[i].outcome)  # type: ignore[arg-type]


def test_remaining_time_never_negative() -> None:
    r = run("ours", "context_dump.remaining", [{"payload": {}, "deadline_ms": 1000}])
    assert decoded(r.events[0].outcome) == 0  # type: ignore[arg-type]


@pytest.mark.parametrize("handler", ["pkg/sub/mod.handler", "pkg.sub.mod.handler"])
def test_handler_in_a_package(handler: str) -> None:
    runs = both(handler, [{"payload": {}}])
    assert (
        decoded(runs["ours"].events[0].outcome)
        == decoded(runs["ric"].events[0].outcome)
        == {"where": "pkg.sub.mod"}
    )  # type: ignore[arg-type]


# -- logging -----------------------------------------------------------------------------------

_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")


def normalise(text: str, request_ids: list[str]) -> str:
    text = _STAMP.sub("<time>", text)
    for i, rid in enumerate(request_ids):
        text = text.replace(rid, f"<request {i}>")
    return text


def error_lines(stdout: str) -> list[str]:
    return [
        _STAMP.sub("<time>", line)
        for line in stdout.splitlines()
        if "[ERROR]" in line or ('"level": "ERROR"' in line and "errorType" in line)
    ]


@pytest.mark.parametrize("level", [None, "DEBUG", "ERROR"])
def test_text_logging_matches(level: str | None) -> None:
    env = {"AWS_LAMBDA_LOG_LEVEL": level} if level else {}
    runs = both("logs.handler", [{"payload": {}}, {"payload": {}}], env=env)
    outs = {k: normalise(r.stdout, [e.request_id for e in r.events]) for k, r in runs.items()}
    assert outs["ours"] == outs["ric"]
    assert "printed line\n" in outs["ours"]
    assert "partial line\n" in outs["ours"]
    if level != "ERROR":
        assert "[INFO]\t<time>\t<request 1>\tinfo message arg\n" in outs["ours"]


@pytest.mark.parametrize("level", [None, "INFO"])
def test_json_logging_matches(level: str | None) -> None:
    env = {"AWS_LAMBDA_LOG_FORMAT": "JSON"} | ({"AWS_LAMBDA_LOG_LEVEL": level} if level else {})
    events = [{"payload": {}, "tenant_id": "t-1"}, {"payload": {}}]
    runs = both("logs.handler", events, env=env)

    def records(r: Run) -> list[Any]:
        out = []
        for line in normalise(r.stdout, [e.request_id for e in r.events]).splitlines():
            out.append(json.loads(line) if line.startswith("{") else line)
        return out

    assert records(runs["ours"]) == records(runs["ric"])
    recs = [x for x in records(runs["ours"]) if isinstance(x, dict)]
    info = next(x for x in recs if x.get("message") == "info message arg")
    assert info["level"] == "INFO" and info["logger"] == "app" and info["tenantId"] == "t-1"
    assert any(x.get("customer") == "c-1" for x in recs)
    failure = next(x for x in recs if x.get("message") == "caught it")
    assert failure["errorType"] == "ValueError" and failure["stackTrace"]


def test_json_error_log_matches() -> None:
    env = {"AWS_LAMBDA_LOG_FORMAT": "JSON"}
    runs = both("raising.handler", [{"payload": {}}], env=env)
    logged = {}
    for kind, r in runs.items():
        line = next(x for x in r.stdout.splitlines() if x.startswith("{"))
        rec = json.loads(line)
        rec["timestamp"] = "-"
        rec["requestId"] = "-"
        logged[kind] = rec
    assert logged["ours"] == logged["ric"]


def read_frames(data: bytes) -> list[tuple[int, str]]:
    frames = []
    while data:
        kind, length, _ts = struct.unpack(">IIQ", data[:16])
        frames.append((kind, data[16 : 16 + length].decode()))
        data = data[16 + length :]
    return frames


@pytest.mark.parametrize("fmt", ["TEXT", "JSON"])
def test_telemetry_fd_frames_match(fmt: str) -> None:
    frames = {}
    for kind in KINDS:
        rfd, wfd = os.pipe()
        try:
            env = {"_LAMBDA_TELEMETRY_LOG_FD": str(wfd), "AWS_LAMBDA_LOG_FORMAT": fmt}
            r = run(kind, "logs.handler", [{"payload": {}}], env=env, pass_fds=(wfd,))
            os.close(wfd)
            data = b""
            while chunk := os.read(rfd, 65536):
                data += chunk
        finally:
            os.close(rfd)
        rid = [e.request_id for e in r.events]
        frames[kind] = [(t, normalise(m, rid)) for t, m in read_frames(data)]
        # print() is not a log record: it still goes to stdout
        assert "printed line" in r.stdout
    assert frames["ours"] == frames["ric"]
    assert frames["ours"], "log records arrive as frames"


def test_telemetry_error_frame_matches() -> None:
    frames = {}
    for kind in KINDS:
        rfd, wfd = os.pipe()
        try:
            r = run(
                kind,
                "raising.handler",
                [{"payload": {}}],
                env={"_LAMBDA_TELEMETRY_LOG_FD": str(wfd)},
                pass_fds=(wfd,),
            )
            os.close(wfd)
            data = os.read(rfd, 1 << 20)
        finally:
            os.close(rfd)
        frames[kind] = [
            (t, normalise(m, [e.request_id for e in r.events])) for t, m in read_frames(data)
        ]
    assert frames["ours"] == frames["ric"]
    assert frames["ours"][0][0] == 0xA55A0017
