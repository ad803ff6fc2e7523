"""Pure helpers of the HTTP layers and logs: ids, error shapes, log lines, names, client context."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import uuid

import pytest

from rie.api.invoke import decode_client_context, new_ids, resolve_function
from rie.api.runtime import sanitize_error_type, shape_error_body
from rie.functions.registry import Function, Functions
from rie.model.errors import InvalidRequestContent, ResourceNotFound
from rie.observe.logs import (
    PrefixedSink,
    Sink,
    billed_ms,
    init_report_line,
    report_line,
    start_line,
    timeout_line,
)
from rie.sandbox.environment import Endpoint, Environment
from rie.sandbox.supervisor import describe_exit
from rie.settings.config import Config


async def _no_endpoint(env: Environment) -> Endpoint:
    raise OSError("no endpoint in a unit test")


TRACE = re.compile(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0")


def test_request_ids_are_random_uuid4_and_trace_ids_well_formed() -> None:
    seen = set()
    for _ in range(500):
        request_id, trace_id = new_ids()
        parsed = uuid.UUID(request_id)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == request_id
        assert TRACE.fullmatch(trace_id)
        seen.add(request_id)
    assert len(seen) == 500


@pytest.mark.parametrize(
    ("given", "recorded"),
    [
        ("Runtime.ImportModuleError", "Runtime.ImportModuleError"),
        ("Function.MyError", "Function.MyError"),
        ("Runtime.bad", "Runtime.Unknown"),
        ("Function.bad-type", "Function.Unknown"),
        ("ValueError", "Runtime.Unknown"),
        ("Runtime.X1", "Runtime.Unknown"),
        ("", "Runtime.Unknown"),
        (None, "Runtime.Unknown"),
    ],
)
def test_error_types_are_sanitised(given: str | None, recorded: str) -> None:
    assert sanitize_error_type(given) == recorded


def test_error_cause_keeps_only_lambdas_fields() -> None:
    body = json.dumps(
        {"errorMessage": "m", "errorType": "T", "stackTrace": ["a"], "extra": 1, "requestId": "x"}
    ).encode()
    shaped = shape_error_body(
        body, "application/vnd.aws.lambda.error.cause+json", "Runtime.Unknown"
    )
    assert json.loads(shaped) == {"errorMessage": "m", "errorType": "T", "stackTrace": ["a"]}
    # any other content type: passed on as it is, JSON or not
    assert shape_error_body(body, "application/json", "Runtime.Unknown") == body
    assert shape_error_body(b"not json", "text/plain", "Runtime.Unknown") == b"not json"
    assert (
        shape_error_body(b"not json", "application/vnd.aws.lambda.error.cause+json", "Runtime.X")
        == b"not json"
    )
    # no body: built from the header's type
    assert json.loads(shape_error_body(b"", None, "Function.Oops")) == {
        "errorMessage": "",
        "errorType": "Function.Oops",
    }


def test_report_line_in_lambdas_order_and_format() -> None:
    line = report_line("id", 15.741, 128, 56, 130.494)
    assert line == (
        "REPORT RequestId: id\tDuration: 15.74 ms\tBilled Duration: 16 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 56 MB\tInit Duration: 130.49 ms\t\n"
    )
    assert report_line("id", 3000.0, 128, 40, status="timeout").endswith(
        "Max Memory Used: 40 MB\tStatus: timeout\t\n"
    )
    assert report_line("id", 1.0, 128, 40, status="error", error_type="Runtime.ExitError").endswith(
        "Status: error\tError Type: Runtime.ExitError\t\n"
    )
    assert start_line("id", "$LATEST") == "START RequestId: id Version: $LATEST\n"
    assert (
        init_report_line(10000.0, "timeout")
        == "INIT_REPORT Init Duration: 10000.00 ms\tPhase: init\tStatus: timeout\n"
    )
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z id Task timed out after 3\.00 seconds\n",
        timeout_line("id", 3),
    )


@pytest.mark.parametrize(
    ("duration", "billed"), [(0.01, 1), (1.0, 1), (1.001, 2), (15.74, 16), (3000.0, 3000)]
)
def test_billed_duration_rounds_up_to_the_millisecond(duration: float, billed: int) -> None:
    assert billed_ms(duration) == billed


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (3, "exit status 3"),
        (0, "exit status 0"),
        (-signal.SIGKILL, "signal: killed"),
        (-signal.SIGTERM, "signal: terminated"),
        (-signal.SIGSEGV, "signal: segmentation fault"),
    ],
)
def test_exit_descriptions_match_lambdas_wording(code: int, text: str) -> None:
    assert describe_exit(code) == text


CONFIG = Config(command=("/bin/true",), handler="", function_name="my-fn")
FUNCTIONS = Functions([Function(CONFIG, {}, Sink(), _no_endpoint)])


def test_with_several_functions_each_is_found_by_name_and_function_is_only_a_name() -> None:
    other = Config(command=("/bin/true",), handler="", function_name="other")
    functions = Functions(
        [Function(CONFIG, {}, Sink(), _no_endpoint), Function(other, {}, Sink(), _no_endpoint)]
    )
    assert functions.resolve("other").name == "other"
    assert functions.resolve("arn:aws:lambda:us-east-1:012345678912:function:my-fn").name == "my-fn"
    with pytest.raises(ResourceNotFound):
        functions.resolve("function")
    with pytest.raises(ValueError, match="two functions"):
        Functions([Function(other, {}, Sink(), _no_endpoint)] * 2)


@pytest.mark.parametrize(
    "name",
    [
        "function",
        "my-fn",
        "my-fn:$LATEST",
        "arn:aws:lambda:us-east-1:012345678912:function:my-fn",
        "arn%3Aaws%3Alambda%3Aus-east-1%3A012345678912%3Afunction%3Amy-fn%3A%24LATEST",
        "012345678912:function:my-fn",
    ],
)
def test_function_name_forms_accepted(name: str) -> None:
    assert resolve_function(FUNCTIONS, name, None).name == "my-fn"


@pytest.mark.parametrize(
    ("name", "qualifier"),
    [("other", None), ("my-fn", "prod"), ("my-fn:1", None), ("function", "7")],
)
def test_unknown_functions_and_qualifiers_are_404(name: str, qualifier: str | None) -> None:
    with pytest.raises(ResourceNotFound) as info:
        resolve_function(FUNCTIONS, name, qualifier)
    assert (
        info.value.status == 404
        and "Function not found: arn:aws:lambda:us-east-1:012345678912:function:"
        in info.value.message
    )
    assert info.value.headers()["X-Amzn-ErrorType"] == "ResourceNotFoundException"


def test_client_context_is_decoded_and_checked() -> None:
    doc = {"custom": {"k": "v"}, "env": {"e": "1"}, "client": {"installation_id": "i"}}
    assert (
        json.loads(decode_client_context(base64.b64encode(json.dumps(doc).encode()).decode()) or "")
        == doc
    )
    assert decode_client_context(None) is None
    for bad in (
        "***",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b"[1]").decode(),
        "A" * 3584,
    ):
        with pytest.raises(InvalidRequestContent):
            decode_client_context(bad)


def test_client_context_with_line_breaks_or_non_ascii_becomes_one_header_safe_line() -> None:
    doc = {"custom": {"greeting": "héllo\nworld"}}
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    out = decode_client_context(base64.b64encode(text.encode()).decode())
    assert out is not None and json.loads(out) == doc
    assert "\n" not in out and out.isascii()


def test_a_prefixed_sink_prefixes_every_line_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "log"
    with out.open("wb") as f:
        sink = Sink(fd=f.fileno())
        prefixed = PrefixedSink(sink, "[fn] ")
        for part in (b"one\ntw", b"o\n", b"", b"three\nfour\n"):
            prefixed.write(part)
        sink.flush()
    assert out.read_bytes() == b"[fn] one\n[fn] two\n[fn] three\n[fn] four\n"


def test_the_sink_keeps_one_timer_through_direct_flushes_and_still_writes_late_lines(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    out = tmp_path / "log"

    async def main() -> int:
        loop = asyncio.get_running_loop()
        timers = []
        call_later = loop.call_later

        def counting(delay, callback, *args):  # type: ignore[no-untyped-def]
            if isinstance(getattr(callback, "__self__", None), Sink):  # not asyncio.sleep's
                timers.append(callback)
            return call_later(delay, callback, *args)

        loop.call_later = counting  # type: ignore[method-assign]
        with out.open("wb") as f:
            sink = Sink(fd=f.fileno())
            sink.FLUSH_AFTER_S = 1.0  # type: ignore[misc]  # (an instance's: the test's pace)
            for i in range(5):
                sink.write(b"%d\n" % i)
                sink.flush()  # as an environment does after each REPORT
            sink.write(b"late\n")  # no flush of its own: the pending timer writes it
            for _ in range(1000):
                if out.read_bytes().endswith(b"late\n"):
                    break
                await asyncio.sleep(0.01)
        assert out.read_bytes() == b"0\n1\n2\n3\n4\nlate\n"
        return len(timers)

    assert asyncio.run(main()) == 1
