"""Faults and the pool: a timed-out or crashed environment must not cost a caller a slot, and
nothing a function started outlives its environment, a shutdown or the emulator itself."""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest

from rie.sandbox.supervisor import MemoryCgroup
from tests.helpers import Reply, RieProcess, pids_in_session, rie
from tests.rie.conftest import wait_until

FIXTURES = Path(__file__).parent / "fixtures"
PY_RUNTIME = ["--task-root", str(FIXTURES), "--handler", "fn.handler"]


def report_of(r: RieProcess, request_id: str) -> str:
    return r.wait_for(rf"REPORT RequestId: {re.escape(request_id)}\t.*", 15).group(0)


def test_an_invoke_right_after_a_timeout_runs_instead_of_being_throttled() -> None:
    # the timed-out environment is still being torn down when the next caller arrives: the
    # limit counts invocations in flight, so the next one gets a fresh environment, not a 429
    with rie(*PY_RUNTIME, "--max-concurrency", "1", "--timeout", "1") as r:
        for i in range(5):
            slow = r.invoke({"action": "sleep", "s": 30})
            assert slow.status == 200 and slow.header("X-Amz-Function-Error") == "Unhandled"
            assert b"Sandbox.Timedout" in slow.body or b"timed out" in slow.body, slow.body
            reply = r.invoke({"n": i})
            assert reply.status == 200, (i, reply.status, reply.body)
            assert reply.header("X-Amz-Function-Error") is None, reply.body
            assert reply.json()["n"] == i  # type: ignore[index]


def test_shutdown_is_bounded_and_every_event_ends_in_exactly_one_record(tmp_path: Path) -> None:
    grace = 3.0
    failures = tmp_path / "failures.jsonl"
    r = rie(
        *PY_RUNTIME,
        "--max-concurrency", "3",
        "--shutdown-timeout", str(grace),
        "--event-failure-file", str(failures),
    ).start()  # fmt: skip
    event = {"X-Amz-Invocation-Type": "Event"}
    # two run past the grace period, one fails during it (its retry is cut), three are queued
    running = [r.invoke({"action": "sleep", "s": 60}, headers=event) for _ in range(2)]
    failing = r.invoke({"action": "sleep", "s": 1, "then": "fail"}, headers=event)
    queued = [r.invoke({"action": "sleep", "s": 60}, headers=event) for _ in range(3)]
    ids = [reply.header("X-Amzn-RequestId") for reply in [*running, failing, *queued]]
    assert all(reply.status == 202 for reply in [*running, failing, *queued])
    for request_id in ids[:3]:
        r.wait_for(re.escape(f"START RequestId: {request_id}"), 15)
    assert r.proc is not None
    started = time.monotonic()
    r.proc.send_signal(signal.SIGTERM)
    r.proc.wait(30)  # a guard only: the bound is asserted below
    took = time.monotonic() - started
    # the whole shutdown fits in --shutdown-timeout (plus the interpreter's own exit)
    assert took < grace + 2.5, took
    assert r.proc.returncode == 0
    records = [json.loads(line) for line in failures.read_text().splitlines()]
    recorded = [rec["requestContext"]["requestId"] for rec in records]
    assert sorted(recorded) == sorted(ids), "each event exactly one on-failure record"
    assert {rec["requestContext"]["condition"] for rec in records} == {"EmulatorShutdown"}
    by_id = {rec["requestContext"]["requestId"]: rec for rec in records}
    assert by_id[ids[2]]["responseContext"]["functionError"] == "Unhandled"
    assert "failing after a sleep" in json.dumps(by_id[ids[2]]["responsePayload"])


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for init to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(b")") + 2 :].startswith(b"Z")


def leftovers(rie_pid: int) -> list[str]:
    """The TMPDIRs and memory cgroups rie `rie_pid` made that still exist."""
    found = glob.glob(os.path.join(tempfile.gettempdir(), f"rie-{rie_pid}-*"))
    base = MemoryCgroup._find_base()
    if base:
        found += glob.glob(os.path.join(base, f"pyrie-{rie_pid}-*"))
    return found


def files(tmp_path: Path) -> dict[str, str]:
    """rie's environment naming the directory the handler writes its child's pid in: under the
    sandbox, what the function's variables name stays reachable (docs/resources.md)."""
    return {"TEST_FILES": str(tmp_path)}


def spawned(tmp_path: Path, r: RieProcess, event: dict[str, object]) -> tuple[int, Reply]:
    """Invoke with a handler that first starts a `setsid` child: (the child's pid, the reply)."""
    pidfile = tmp_path / f"child-{time.monotonic_ns()}"
    reply = r.invoke({**event, "spawn": str(pidfile)})
    child = int(pidfile.read_text())
    return child, reply


@pytest.mark.parametrize("fault", ["timeout", "crash"])
def test_a_setsid_child_dies_with_its_environment(tmp_path: Path, fault: str) -> None:
    with rie(*PY_RUNTIME, "--timeout", "1", env=files(tmp_path)) as r:
        event = {"action": "sleep", "s": 30} if fault == "timeout" else {"action": "exit"}
        child, reply = spawned(tmp_path, r, event)
        assert reply.header("X-Amz-Function-Error") == "Unhandled", reply.body
        wait_until(lambda: gone(child), what=f"the setsid child {child} to die")
        assert r.invoke({"n": 1}).status == 200


def test_shutdown_leaves_no_process_directory_or_cgroup(tmp_path: Path) -> None:
    r = rie(*PY_RUNTIME, env=files(tmp_path)).start()
    child, reply = spawned(tmp_path, r, {"n": 1})
    assert reply.status == 200 and not gone(child)
    assert leftovers(r.proc.pid)  # type: ignore[union-attr]
    assert r.stop() == 0
    assert gone(child)
    assert leftovers(r.proc.pid) == []  # type: ignore[union-attr]
    assert pids_in_session(r.proc.pid) == []  # type: ignore[union-attr]


def test_what_a_killed_rie_left_is_swept_by_the_next_one(tmp_path: Path) -> None:
    r = rie(*PY_RUNTIME, env=files(tmp_path)).start()
    child, reply = spawned(tmp_path, r, {"n": 1})
    runtime = reply.json()["pid"]  # type: ignore[index]
    assert isinstance(runtime, int)
    assert r.proc is not None
    r.proc.kill()
    r.proc.wait(15)
    # the runtime is tied to rie's life; its setsid child is not (nothing can be, at once)
    wait_until(lambda: gone(runtime), what="the runtime to die with rie")
    assert leftovers(r.proc.pid)
    with rie(*PY_RUNTIME) as again:
        # the next rie sweeps what the killed one left: its cgroups with their processes, its
        # TMPDIRs; it leaves those of living emulators alone (its own, here)
        assert again.invoke({"n": 2}).status == 200
        wait_until(lambda: gone(child), what="the orphaned setsid child to be swept")
        assert leftovers(r.proc.pid) == []
        assert leftovers(again.proc.pid)  # type: ignore[union-attr]


def test_a_setsid_child_started_at_init_dies_with_its_environment(tmp_path: Path) -> None:
    # the runtime's first act is to start a child in a session of its own: it must already be in
    # the runtime's cgroup by then
    pidfile = tmp_path / "child"
    script = 'setsid sleep 60 & echo $! > "$PIDFILE"; exec "$0" -m runtime'
    flags = ("--timeout", "1", "--", "sh", "-c", script, sys.executable)
    with rie(*PY_RUNTIME, *flags, env={"PIDFILE": str(pidfile)}) as r:
        reply = r.invoke({"action": "sleep", "s": 30})
        assert reply.header("X-Amz-Function-Error") == "Unhandled", reply.body
        child = int(pidfile.read_text())
        wait_until(lambda: gone(child), what=f"the setsid child {child} to die")
