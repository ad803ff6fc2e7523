"""REFERENCE §3: init, timeouts, runtime exits, shutdown, output streaming and concurrency."""

from __future__ import annotations

import re
import signal
import threading
import time

import pytest

from tests.helpers import pids_in_session
from tests.rie.conftest import (
    curl_sh,
    do,
    good_invoke,
    report,
    ric,
    scripted,
    wait_until,
)


class Background:
    """An invoke running in a thread."""

    def __init__(self, fn, *args, **kw) -> None:  # type: ignore[no-untyped-def]
        self.reply = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.reply = fn(*args, **kw)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self, timeout: float = 30.0):  # type: ignore[no-untyped-def]
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the invoke did not return"
        if self.error is not None:
            raise self.error
        return self.reply


def children(r) -> list[int]:  # type: ignore[no-untyped-def]
    return [p for p in pids_in_session(r.proc.pid) if p != r.proc.pid]


# --- lazy and eager init ----------------------------------------------------------------------


def test_init_is_lazy_by_default(tmp_path) -> None:
    record = tmp_path / "record.jsonl"
    with scripted(env={"RECORD": str(record)}) as r:
        time.sleep(0.3)  # give a wrongly eager emulator the time to start its runtime
        assert children(r) == [], "a runtime started before the first invoke"
        assert not record.exists()
        reply = r.invoke({"x": 1})
        assert reply.status == 200
        assert children(r), "no runtime after the first invoke"
        rep = report(r, reply.header("X-Amzn-RequestId") or "")
        assert "Init Duration" in rep


def test_eager_init_starts_the_runtime_before_any_invoke(tmp_path) -> None:
    record = tmp_path / "record.jsonl"
    with scripted("--init", "eager", env={"RECORD": str(record)}) as r:
        wait_until(lambda: record.exists() and "started" in record.read_text(), what="init")
        assert children(r), "no runtime process before the first invoke"
        reply = do(r)
        assert reply.status == 200
        env = reply.json()["next"]  # type: ignore[index]
        assert env["status"] == 200
        rep = report(r, reply.header("X-Amzn-RequestId") or "")
        assert 0 < float(rep["Init Duration"][:-3]) < 10000, rep
        assert record.read_text().count("started") == 1  # it was not started twice
        reply2 = do(r)
        assert "Init Duration" not in report(r, reply2.header("X-Amzn-RequestId") or "")


# --- timeout ----------------------------------------------------------------------------------


def test_timeout_answers_sandbox_timedout_then_the_next_invoke_reinits() -> None:
    with scripted("--timeout", "1") as r:
        good_invoke(r)
        first_pids = children(r)
        reply = do(r, {"sleep": 30})
        rid = reply.header("X-Amzn-RequestId")
        assert reply.status == 200
        assert reply.header("X-Amz-Function-Error") == "Unhandled"
        assert reply.json() == {
            "errorType": "Sandbox.Timedout",
            "errorMessage": f"RequestId: {rid} Error: Task timed out after 1.00 seconds",
        }
        r.wait_for(
            rf"^\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z {rid} Task timed out after 1\.00 seconds$"
        )
        rep = report(r, rid or "")
        assert rep.get("Status") == "timeout", rep["line"]
        # the runtime was killed: the next invoke inits again and succeeds
        reply = r.invoke({"still": "works"})
        assert reply.status == 200 and reply.json() == {"still": "works"}
        rep = report(r, reply.header("X-Amzn-RequestId") or "")
        assert "Init Duration" in rep, rep["line"]
        assert not set(first_pids) & set(children(r))


def test_timeout_kills_the_runtimes_grandchildren() -> None:
    with curl_sh("--timeout", "1", env={"SPAWN_GRANDCHILD": "1"}) as r:
        reply = r.invoke({"mode": "hang"})
        assert reply.json()["errorType"] == "Sandbox.Timedout"  # type: ignore[index]
        old = set(children(r))
        good_invoke(r)
        # the old process group (sh, curl, sleep 1000) is gone; only the new one is left
        wait_until(lambda: not (set(children(r)) & old), what="the old runtime's group to die")


# --- runtime exit -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "how"), [({"exit": 3}, "exit status 3"), ({"kill": 9}, "signal: killed")]
)
def test_runtime_exit_during_invoke_is_runtime_exit_error(action, how) -> None:
    with scripted("--timeout", "10") as r:
        reply = do(r, action)
        rid = reply.header("X-Amzn-RequestId")
        assert reply.status == 200
        assert reply.header("X-Amz-Function-Error") == "Unhandled"
        assert reply.json() == {
            "errorType": "Runtime.ExitError",
            "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: {how}",
        }
        rep = report(r, rid or "")
        assert "\tStatus: error\tError Type: Runtime.ExitError\t" in rep["line"], rep["line"]
        # Lambda's log lines for it, right before END
        lines = r.output().splitlines()
        at = lines.index(f"RequestId: {rid} Error: Runtime exited with error: {how}")
        assert lines[at + 1 : at + 3] == ["Runtime.ExitError", f"END RequestId: {rid}"]
        reply = r.invoke({"still": "works"})
        assert reply.json() == {"still": "works"}
        assert "Init Duration" in report(r, reply.header("X-Amzn-RequestId") or "")


def test_sh_runtime_exit_3() -> None:
    with curl_sh() as r:
        reply = r.invoke({"mode": "exit3"})
        assert reply.header("X-Amz-Function-Error") == "Unhandled"
        body = reply.json()
        assert body["errorType"] == "Runtime.ExitError"  # type: ignore[index]
        assert body["errorMessage"].endswith("Runtime exited with error: exit status 3")  # type: ignore[index]
        good_invoke(r)


def test_bootstrap_exiting_during_init_without_posting_is_runtime_exit_error() -> None:
    with curl_sh(env={"INIT_EXIT": "3"}) as r:
        for _ in range(2):  # every invoke tries the init again
            reply = r.invoke({})
            assert reply.status == 200
            assert reply.header("X-Amz-Function-Error") == "Unhandled"
            body = reply.json()
            assert body["errorType"] == "Runtime.ExitError", body  # type: ignore[index]
            assert "exit status 3" in body["errorMessage"]  # type: ignore[index]
        # the answer can reach the caller before the log reaches stdout: wait for the log
        wait_until(lambda: r.output().count("sh init exiting with 3") >= 2, what="both inits")
        assert r.output().count("sh init exiting with 3") == 2


# --- init failures with awslambdaric ----------------------------------------------------------


def test_import_error_is_answered_and_the_next_invoke_inits_again() -> None:
    with ric("no_such_module.handler") as r:
        for _ in range(2):
            reply = r.invoke({})
            assert reply.status == 200
            assert reply.header("X-Amz-Function-Error") == "Unhandled"
            body = reply.json()
            assert body["errorType"] == "Runtime.ImportModuleError", body  # type: ignore[index]
            assert body["errorMessage"] == (  # type: ignore[index]
                "Unable to import module 'no_such_module': No module named 'no_such_module'"
            )
            rep = report(r, reply.header("X-Amzn-RequestId") or "")
            assert "Init Duration" in rep, rep["line"]


def test_failed_init_is_retried_and_recovers(tmp_path) -> None:
    flaky = tmp_path / "imports"
    with ric("flaky_init.handler", env={"FLAKY_FILE": str(flaky)}) as r:
        reply = r.invoke({})
        assert reply.header("X-Amz-Function-Error") == "Unhandled"
        assert reply.json()["errorType"] == "RuntimeError"  # type: ignore[index]
        assert reply.json()["errorMessage"] == "first init fails"  # type: ignore[index]
        reply = r.invoke({})
        assert reply.status == 200 and reply.header("X-Amz-Function-Error") is None
        assert reply.json() == "recovered"
        assert flaky.read_text().count("import") == 2


# --- shutdown ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_with_an_invocation_in_flight(sig) -> None:
    r = curl_sh("--timeout", "30", env={"SPAWN_GRANDCHILD": "1"})
    r.start()
    try:
        assert r.invoke({"mode": "spawn"}).status == 200  # leaves another `sleep 1000` behind
        slow = Background(r.invoke, {"mode": "slow"}, timeout=30)
        r.wait_for("sh-marker ")
        assert len(children(r)) >= 3  # sh, its sleeps
        r.proc.send_signal(sig)
        # no new invocation is taken once shutdown has begun
        deadline = time.monotonic() + 5
        refused = False
        while not refused and time.monotonic() < deadline:
            try:
                r.invoke({}, timeout=2)
            except OSError:
                refused = True
        assert refused, "the Invoke API still took invocations during shutdown"
        # the one in flight (2 s, within the 5 s grace) finishes and is answered as usual
        reply = slow.result(30)
        assert reply.status == 200 and not reply.header("X-Amz-Function-Error"), reply
        assert r.proc.wait(20) == 0
        wait_until(lambda: pids_in_session(r.proc.pid) == [], 10, "every process to end")
    finally:
        r.stop()


def test_shutdown_with_a_hanging_invocation_answers_and_leaves_nothing() -> None:
    r = curl_sh("--timeout", "60", "--shutdown-timeout", "0.5", env={"SPAWN_GRANDCHILD": "1"})
    r.start()
    try:
        hang = Background(r.invoke, {"mode": "hang"}, timeout=30)
        r.wait_for("sh hanging ")
        r.proc.send_signal(signal.SIGTERM)
        reply = hang.result(20)
        assert reply.status >= 200, reply
        assert r.proc.wait(20) == 0
        wait_until(lambda: pids_in_session(r.proc.pid) == [], 10, "every process to end")
    finally:
        r.stop()


def test_idle_emulator_exits_0_on_sigterm_leaving_nothing() -> None:
    r = scripted()
    r.start()
    try:
        good_invoke(r)
        assert children(r)
        assert r.stop() == 0
        wait_until(lambda: pids_in_session(r.proc.pid) == [], 10, "every process to end")
    finally:
        r.stop()


# --- output and concurrency -------------------------------------------------------------------


def test_runtime_output_reaches_stdout_as_it_is_written(sr) -> None:
    marker = f"MARKER-{time.monotonic_ns()}"
    slow = Background(do, sr, {"print": marker}, {"sleep": 2})
    sr.wait_for(re.escape(marker), 10)
    assert slow.thread.is_alive(), "the marker only appeared once the invoke was over"
    reply = slow.result()
    assert reply.status == 200


def test_overlapping_invokes_wait_their_turn_with_a_queue_timeout() -> None:
    with scripted("--max-concurrency", "1", "--queue-timeout", "10") as r:
        good_invoke(r)
        calls = [Background(do, r, {"sleep": 0.5}, {"print": f"turn {i}"}) for i in range(3)]
        replies = [c.result(30) for c in calls]
        assert [x.status for x in replies] == [200, 200, 200], [x.body for x in replies]
        assert all(x.header("X-Amz-Function-Error") is None for x in replies)
        ids = {x.header("X-Amzn-RequestId") for x in replies}
        assert len(ids) == 3


def test_overlapping_invoke_without_queue_timeout_is_429() -> None:
    with scripted("--max-concurrency", "1") as r:
        good_invoke(r)
        busy = Background(do, r, {"print": "busy-now"}, {"sleep": 1.5})
        r.wait_for("busy-now")
        reply = r.invoke({})
        assert reply.status == 429, (reply.status, reply.body)
        assert reply.header("X-Amzn-ErrorType") == "TooManyRequestsException"
        body = reply.json()
        assert body["Type"] == "User"  # type: ignore[index]
        assert body.get("Reason") == "ReservedFunctionConcurrentInvocationLimitExceeded"  # type: ignore[union-attr]
        assert busy.result().status == 200
        good_invoke(r)


def test_init_over_10_s_is_cut_and_retried(tmp_path) -> None:
    record = tmp_path / "record.jsonl"
    env = {"INIT_SLEEP_ONCE": f"60:{tmp_path / 'slept'}", "RECORD": str(record)}
    with scripted("--timeout", "5", env=env) as r:
        t0 = time.monotonic()
        reply = r.invoke({"after": "init timeout"}, timeout=40)
        elapsed = time.monotonic() - t0
        # the first init is stopped at 10 s and retried; the retry is quick and serves the invoke
        assert 9 < elapsed < 30, elapsed
        r.wait_for(r"INIT_REPORT Init Duration: \d+\.\d\d ms\tPhase: init\tStatus: timeout")
        assert reply.status == 200, reply.body
        assert reply.header("X-Amz-Function-Error") is None, reply.body
        assert reply.json() == {"after": "init timeout"}
        assert record.read_text().count('"started"') == 2
        assert len(children(r)) == 1, "the first, sleeping runtime was not killed"
        good_invoke(r)


def test_eager_init_that_fails_is_retried_by_the_first_invoke() -> None:
    with curl_sh("--init", "eager", env={"INIT_EXIT": "3"}) as r:
        # the eager init's failure is processed (its INIT_REPORT is out) before the invoke, so
        # the invoke must start an init of its own
        r.wait_for(r"INIT_REPORT .*Status: error")
        reply = r.invoke({})
        assert reply.header("X-Amz-Function-Error") == "Unhandled"
        assert reply.json()["errorType"] == "Runtime.ExitError"  # type: ignore[index]
        wait_until(
            lambda: r.output().count("sh init exiting with 3") == 2, what="the second init's exit"
        )
