"""rie.testing.LambdaFunction used directly, as users and the suite use it: rie's own environment,
raw requests, waiting for a line from a mark, and a stop that has read rie's output to its end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

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

        # rie writes an invocation's log before it answers, and the harness reads what its reader
        # thread has not taken yet before it shows the log: a mark taken now is after the REPORT
        lines = fn.log_lines
        mark = len(lines)
        assert f"REPORT RequestId: {reply.header('X-Amzn-RequestId')}" in "\n".join(lines)
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


def test_the_log_is_caught_up_from_the_pipe_and_a_last_line_without_newline_is_kept() -> None:
    # rie's stdout as a pipe nobody else reads (no reader thread: start() is not called), so
    # every line seen comes from the catch-up that logs, log_lines and wait_for_log do first
    fn = LambdaFunction([])
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert writer.stdin is not None and writer.stdout is not None
    fn._proc = writer
    os.set_blocking(writer.stdout.fileno(), False)
    try:
        writer.stdin.write(b"one\ntw")
        writer.stdin.flush()
        writer.stdin.close()  # the writer copies what it got, then ends its output
        writer.wait(10)
        assert fn.wait_for_log("^tw$").group(0) == "tw"  # the end of output ends the last line
        assert fn.log_lines == ["one", "tw"]
        assert fn.logs == "one\ntw"
    finally:
        writer.stdout.close()
