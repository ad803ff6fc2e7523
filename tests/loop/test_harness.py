"""rie.testing.LambdaFunction used directly, as users and the suite use it: rie's own environment,
raw requests, waiting for a line from a mark, and a stop that has read rie's output to its end."""

from __future__ import annotations

import signal

from rie.testing import LambdaFunction, rie_arguments
from tests.helpers import REPO

HELLO = REPO / "examples" / "hello"


def test_environ_raw_requests_log_marks_and_a_complete_stop() -> None:
    args = rie_arguments("app.handler", HELLO, env={"GREETING": "x"}, timeout=3)
    fn = LambdaFunction(args, cwd=REPO, environ={"PYRIE_HARNESS_CHECK": "from-rie"}).start()
    try:
        assert fn.process is not None and fn.process.poll() is None
        reply = fn.request("POST", "/2015-03-31/functions/function/invocations", b'{"name": "raw"}')
        assert reply.status == 200 and reply.header("X-Amzn-RequestId")
        assert reply.json()["message"] == "Hello, raw!"  # type: ignore[index]
        refused = fn.request("POST", "/2015-03-31/functions/nobody/invocations", b"{}")
        assert refused.status == 404
        assert refused.header("x-amzn-errortype") == "ResourceNotFoundException"
        metrics = fn.request("GET", "/metrics")
        assert b'rie_invocations_total{function="test_function"' in metrics.body

        # the first invocation's REPORT is read (rie wrote it before answering; the harness reads
        # rie's output on a thread of its own), so a mark taken now is after it
        fn.wait_for_log(f"REPORT RequestId: {reply.header('X-Amzn-RequestId')}")
        mark = len(fn.log_lines)
        second = fn.invoke({"name": "again"})
        m = fn.wait_for_log(r"REPORT RequestId: (\S+)", start=mark)
        assert m.group(1) == second.request_id
        # rie runs with the variables given (its runtimes inherit its environment)
        with open(f"/proc/{fn.process.pid}/environ", "rb") as f:
            assert b"PYRIE_HARNESS_CHECK=from-rie" in f.read().split(b"\0")
    finally:
        code = fn.stop(signal.SIGINT)
    assert code == 0 and not fn.killed
    # the summary is rie's last line, printed as it exits: stop() returns after reading it
    assert "rie summary: 2 invocations" in fn.log_lines[-1], fn.logs
