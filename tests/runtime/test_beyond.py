"""What our runtime does beyond awslambdaric, each checked with real processes and sockets:
oversized responses, reconnection, async handlers on one kept loop, SIGTERM, concurrency,
live stdout, and a start-up that imports nothing it does not need."""

from __future__ import annotations

import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from tests.runtime.fake_api import HANDLERS, PYTHON, FakeRuntimeApi, child_env, run, start, stop


def body(rec: Any) -> Any:
    assert rec is not None
    return json.loads(rec.body)


# -- oversized responses -----------------------------------------------------------------------


def test_response_over_the_limit_becomes_a_function_error() -> None:
    events = [{"payload": {}}, {"payload": {"size": 100}}]
    r = run("ours", "results.huge", events)
    posts = [(p.path.rsplit("/", 1)[1], len(p.body)) for p in r.posts]
    # the oversized response is refused with 413, then reported as the function's error
    assert posts[0] == ("response", 7_000_002)
    assert posts[1][0] == "error"
    error = body(r.events[0].outcome)
    assert error["errorType"] == "Function.ResponseSizeTooLarge"
    assert error["errorMessage"] == (
        "Response payload size (7000002 bytes) exceeded maximum allowed payload size (6291556 bytes)."
    )
    assert (
        r.events[0].outcome.header("lambda-runtime-function-error-type")
        == "Function.ResponseSizeTooLarge"
    )  # type: ignore[union-attr]
    # and the process lives on to serve the next invocation
    assert body(r.events[1].outcome) == "x" * 100


def test_awslambdaric_crashes_on_an_oversized_response() -> None:
    with FakeRuntimeApi() as api:
        api.push({})
        proc = start("ric", "results.huge", api)
        proc.wait(10)
        out = stop(proc)
    assert proc.returncode != 0, out


# -- the connection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{"close_after_reply": True}, {"drop_after_post": True}, {"chunked_next": True}],
    ids=["connection-close", "silently-dropped", "chunked"],
)
def test_server_closing_or_chunking_is_transparent(options: dict[str, bool]) -> None:
    events = [{"payload": {"kind": "dict"}} for _ in range(4)]
    r = run("ours", "results.handler", events, api_options=options)
    for ev in r.events:
        assert body(ev.outcome) == {"a": 1, "b": [1, 2.5, True, None], "c": {"d": "e"}}
    if not options.get("chunked_next"):
        assert len({q.conn for q in r.requests}) > 1, "reconnected after the server closed"
    # nothing was sent twice
    assert len(r.posts) == len(events)


def test_big_event_arrives_whole() -> None:
    payload = {"data": "y" * 5_000_000}
    r = run("ours", "results.echo", [{"payload": payload}])
    assert body(r.events[0].outcome)["event"] == payload


# -- async handlers ----------------------------------------------------------------------------


def test_async_handler_keeps_one_loop_across_invocations() -> None:
    events = [{"payload": {"n": i}} for i in range(3)]
    r = run("ours", "async_handlers.handler", events)
    results = [body(e.outcome) for e in r.events]
    assert [x["seen"] for x in results] == [[0], [0, 1], [0, 1, 2]]
    assert all(x["same_loop"] and x["ticker_alive"] for x in results)
    assert results[0]["loop_type"] == "uvloop"
    assert [x["request_id"] for x in results] == [e.request_id for e in r.events]


class _Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(b"echo:" + line)


def test_async_handler_reuses_a_connection_opened_at_init() -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        addr = "{}:{}".format(*server.server_address[:2])
        events = [{"payload": {"msg": f"m{i}"}} for i in range(3)]
        r = run("ours", "async_handlers.echo", events, env={"ECHO_ADDR": addr})
    finally:
        server.shutdown()
        server.server_close()
    assert [body(e.outcome) for e in r.events] == [
        {"echoed": f"echo:m{i}", "init_loop": True} for i in range(3)
    ]


def test_async_handler_errors_carry_the_users_frames() -> None:
    r = run("ours", "async_handlers.fails", [{"payload": {}}])
    error = body(r.events[0].outcome)
    assert error["errorType"] == "LookupError"
    assert [t.split(", in ")[1].split("\n")[0] for t in error["stackTrace"]] == ["fails", "_inner"]


def test_sync_handler_returning_a_coroutine_is_awaited() -> None:
    r = run("ours", "results.coroutine_result", [{"payload": {}}])
    assert body(r.events[0].outcome) == "awaited"


# -- SIGTERM -----------------------------------------------------------------------------------


def test_sigterm_while_waiting_exits_promptly_and_cleanly() -> None:
    with FakeRuntimeApi() as api:
        api.push({"kind": "int"})
        proc = start("ours", "results.handler", api)
        api.wait_waiting(1)
        time.sleep(0.05)  # well inside the blocking read
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(5)
        elapsed = time.monotonic() - t0
        out = stop(proc)
    assert code == 0, out
    assert elapsed < 2.0
    assert "Traceback" not in out


def test_sigterm_during_an_invocation_finishes_it_first() -> None:
    with FakeRuntimeApi() as api:
        ev = api.push({"sleep": 0.5})
        proc = start("ours", "slow.handler", api)
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"sleeping\n"  # the handler is running
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(5)
        out = stop(proc)
    assert code == 0, out
    assert ev.outcome is not None and ev.outcome.path.endswith("/response")


def test_a_functions_own_sigterm_handler_is_left_alone() -> None:
    with FakeRuntimeApi() as api:
        proc = start("ours", "own_sigterm.handler", api)
        api.wait_waiting(1)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(5)
    out = stop(proc)
    assert code == 7, out
    assert "function's own SIGTERM handler ran" in out


# -- concurrency (Lambda Managed Instances) --------------------------------------------------


def test_max_concurrency_serves_invocations_at_once() -> None:
    with FakeRuntimeApi() as api:
        proc = start(
            "ours", "slow.handler", api, {"AWS_LAMBDA_MAX_CONCURRENCY": "2"}, start_new_session=True
        )
        try:
            api.wait_waiting(2)  # two `next` calls outstanding at once
            events = [api.push({"sleep": 0.6}) for _ in range(2)]
            for ev in events:
                assert ev.done.wait(10)
            results = [body(ev.outcome) for ev in events]
            api.wait_waiting(2)
            nexts = [q for q in api.requests if q.method == "GET"]
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(5)
            elapsed = time.monotonic() - t0
        finally:
            out = stop(proc)
    assert code == 0, out
    assert elapsed < 2.0
    assert results[0]["pid"] != results[1]["pid"], "one worker process each"
    # they overlapped in time
    assert max(r["started"] for r in results) < min(r["ended"] for r in results)
    assert len({q.conn for q in nexts}) >= 2, "each worker has its own connection"
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # no worker outlived the runtime


def test_max_concurrency_init_error_exits_1() -> None:
    r = run("ours", "nodot", env={"AWS_LAMBDA_MAX_CONCURRENCY": "2"}, expect_exit=True)
    assert r.returncode == 1
    assert (
        r.init_errors
        and r.init_errors[0].header("lambda-runtime-function-error-type")
        == "Runtime.MalformedHandlerName"
    )


# -- output ------------------------------------------------------------------------------------


def test_print_output_arrives_line_by_line_as_it_happens() -> None:
    with FakeRuntimeApi() as api:
        ev = api.push({"lines": 3, "pause": 0.3})
        proc = start("ours", "logs.print_progress", api)
        assert proc.stdout is not None
        first = proc.stdout.readline()
        seen_at = time.monotonic()
        assert first == b"progress 0\n"
        assert not ev.done.is_set(), "the line came while the invocation was still running"
        assert ev.done.wait(10)
        assert time.monotonic() - seen_at > 0.3
        stop(proc)


# -- start-up ----------------------------------------------------------------------------------

_HEAVY = {
    "orjson",
    "json",
    "logging",
    "asyncio",
    "typing",
    "socket",
    "signal",
    "traceback",
    "uvloop",
    "inspect",
    "dataclasses",
}


def test_nothing_heavy_is_imported_before_the_first_next() -> None:
    probe = (
        "import sys; before = set(sys.modules)\n"
        "import runtime.loop, runtime.handler\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [PYTHON, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not _HEAVY & set(out), out


def test_handler_from_argv_else_from_env() -> None:
    with FakeRuntimeApi() as api:
        ev = api.push({"kind": "str"})
        env = child_env(api, {"_HANDLER": "results.handler"})
        proc = subprocess.Popen(
            [PYTHON, "-m", "runtime"],
            cwd="/",
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            assert ev.done.wait(10)
        finally:
            stop(proc)
    assert body(ev.outcome) == "hello"


def test_task_root_comes_first_on_sys_path() -> None:
    # cwd is elsewhere and PYTHONPATH is unset: only LAMBDA_TASK_ROOT can find the module
    with FakeRuntimeApi() as api:
        ev = api.push({"kind": "int"})
        env = child_env(api)
        env.pop("PYTHONPATH")
        proc = subprocess.Popen(
            [sys.executable, "-m", "runtime", "results.handler"],
            cwd="/",
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            assert ev.done.wait(10)
        finally:
            stop(proc)
    assert body(ev.outcome) == 42
    assert env["LAMBDA_TASK_ROOT"] == str(HANDLERS)
