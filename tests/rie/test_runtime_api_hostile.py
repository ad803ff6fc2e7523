"""The Runtime API end to end under input that must not wedge an environment, make a runtime spin
or take the endpoint down: real rie, real runtimes, real sockets."""

from __future__ import annotations

import json

from tests.helpers import RieProcess
from tests.rie.conftest import good_invoke, scripted


def assert_refused_or_failed(r: RieProcess, headers: dict[str, str]) -> None:
    """Refused by the Invoke API (400), or ended with a function error: at once, never stuck."""
    reply = r.invoke({"x": 1}, headers=headers, timeout=10)
    if reply.status == 400:
        assert reply.header("X-Amzn-ErrorType") == "InvalidRequestContentException", reply.body
        return
    assert reply.status == 200, (reply.status, reply.body)
    assert reply.header("X-Amz-Function-Error") == "Unhandled", reply.body
    assert json.loads(reply.body)["errorType"] == "Runtime.InternalError", reply.body


def test_a_header_the_runtime_cannot_be_given_never_wedges_the_environment() -> None:
    # the caller's timeout (10 s) is well inside the function's (30 s): an invocation left to time
    # out, or a runtime spinning on `next`, fails the test
    with scripted("--timeout", "30", "--max-concurrency", "1") as r:
        bad = {"Content-Type": "application/json; x=\xe9"}  # sent as the raw byte 0xe9
        assert_refused_or_failed(r, bad)  # cold: the runtime's first `next`
        good_invoke(r, timeout=10)
        assert_refused_or_failed(r, bad)  # warm: the runtime already waits in `next`
        good_invoke(r, timeout=10)
        assert r.output().count("Runtime.InternalError") <= 2  # no loop of failures
