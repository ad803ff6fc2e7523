"""Many execution environments: parallelism, warm reuse, throttling, isolation, retirement,
provisioned concurrency, Event retries and managed-instances mode, all through real processes."""

from __future__ import annotations

import glob
import json
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import RieProcess, boto_client, pids_in_session, rie

FIXTURES = Path(__file__).parent / "fixtures"
PY_RUNTIME = ["--task-root", str(FIXTURES), "--handler", "fn.handler"]


def invoke_json(r: RieProcess, event: object, **kw: object) -> dict[str, object]:
    reply = r.invoke(event, **kw)  # type: ignore[arg-type]
    assert reply.status == 200, reply.body
    body = reply.json()
    assert isinstance(body, dict)
    return body


def parallel(
    r: RieProcess, events: list[object], workers: int | None = None
) -> list[dict[str, object]]:
    with ThreadPoolExecutor(workers or len(events)) as ex:
        return list(ex.map(lambda e: invoke_json(r, e), events))


def wait_reports(r: RieProcess, n: int) -> list[str]:
    """The REPORT lines, once there are at least `n` of them."""
    deadline = time.monotonic() + 10
    while True:
        reports = [line for line in r.output().splitlines() if line.startswith("REPORT")]
        if len(reports) >= n or time.monotonic() > deadline:
            return reports
        time.sleep(0.02)


def init_reports(r: RieProcess, after: object = None) -> int:
    """REPORT lines with an Init Duration, once the REPORT of request id `after` is out."""
    if after is not None:
        r.wait_for(re.escape(f"REPORT RequestId: {after}"), 10)
    return sum(
        1
        for line in r.output().splitlines()
        if line.startswith("REPORT") and "Init Duration" in line
    )


def test_parallel_invokes_run_in_parallel_environments() -> None:
    with rie(*PY_RUNTIME) as r:
        start = time.monotonic()
        events = [{"action": "sleep", "s": 1.0, "n": i, "mark": True} for i in range(4)]
        results = parallel(r, events)
        elapsed = time.monotonic() - start
        # four one-second sleeps at once: together far less than the four seconds in a row
        assert elapsed < 3.5, elapsed
        assert len({res["pid"] for res in results}) == 4
        assert len({res["api"] for res in results}) == 4, "each environment has its own Runtime API"
        assert all(str(res["api"]).startswith("127.0.0.1:") for res in results)
        assert len({res["stream"] for res in results}) == 4
        for res in results:
            r.wait_for(re.escape(f"REPORT RequestId: {res['request_id']}"), 10)
        # each environment has a TMPDIR of its own (under the sandbox, its own /tmp), made by
        # rie in the machine's temporary directory
        assert all(res["marks"] == [f"mark-{res['pid']}"] for res in results), results
        assert r.proc is not None
        tmpdirs = glob.glob(os.path.join(tempfile.gettempdir(), f"rie-{r.proc.pid}-*"))
        assert len(tmpdirs) == 4
        assert init_reports(r) == 4
        # warm reuse: the next invokes, one at a time, init nothing and land on the most recently used
        warm = [invoke_json(r, {"n": i}) for i in range(5)]
        pids = {res["pid"] for res in warm}
        assert len(pids) == 1 and pids <= {res["pid"] for res in results}
        assert init_reports(r, after=warm[-1]["request_id"]) == 4
    for t in tmpdirs:
        assert not Path(t).exists(), "an environment's TMPDIR goes when it retires"


def test_throttled_at_the_limit_through_boto3() -> None:
    with rie(*PY_RUNTIME, "--max-concurrency", "2") as r:
        client = boto_client(r)
        with ThreadPoolExecutor(3) as ex:
            busy = [ex.submit(invoke_json, r, {"action": "sleep", "s": 1.5}) for _ in range(2)]
            r.wait_for(r"START RequestId.*", 10)
            deadline = time.monotonic() + 10
            while (
                sum(line.startswith("START") for line in r.output().splitlines()) < 2
                and time.monotonic() < deadline
            ):
                time.sleep(0.05)
            with pytest.raises(client.exceptions.TooManyRequestsException) as info:
                client.invoke(FunctionName="function", Payload=b"{}")
            err = info.value.response
            assert err["ResponseMetadata"]["HTTPStatusCode"] == 429
            assert err.get("Reason") == "ReservedFunctionConcurrentInvocationLimitExceeded"
            assert all(f.result()["pid"] for f in busy)
        # the limit freed up: the same call goes through
        assert client.invoke(FunctionName="function", Payload=b"{}")["StatusCode"] == 200
        metrics = r.request("GET", "/metrics").body.decode()
        assert re.search(r'^rie_throttles_total{function="test_function"} 1$', metrics, re.M)


def test_queue_timeout_waits_for_a_slot() -> None:
    with rie(*PY_RUNTIME, "--max-concurrency", "1", "--queue-timeout", "10") as r:
        results = parallel(r, [{"action": "sleep", "s": 0.3, "n": i} for i in range(3)])
        assert sorted(res["n"] for res in results) == [0, 1, 2]  # type: ignore[type-var]
        assert len({res["pid"] for res in results}) == 1


def test_crash_or_timeout_in_one_environment_leaves_the_others_serving() -> None:
    with rie(*PY_RUNTIME, "--timeout", "1") as r:
        with ThreadPoolExecutor(3) as ex:
            slow = ex.submit(invoke_json, r, {"action": "sleep", "s": 2.0})
            crash = ex.submit(r.invoke, {"action": "exit"})
            ok = [ex.submit(invoke_json, r, {"n": i}) for i in range(3)]
            assert slow.result()["errorType"] == "Sandbox.Timedout"
            crashed = crash.result()
            assert crashed.status == 200 and crashed.header("X-Amz-Function-Error") == "Unhandled"
            assert crashed.json()["errorType"] == "Runtime.ExitError"  # type: ignore[index]
            assert all(f.result()["n"] == i for i, f in enumerate(ok))
        # both broken environments come back on demand
        results = parallel(r, [{"action": "sleep", "s": 0.5, "n": i} for i in range(4)])
        assert sorted(res["n"] for res in results) == [0, 1, 2, 3]  # type: ignore[type-var]


def test_idle_environments_retire() -> None:
    with rie(*PY_RUNTIME, "--idle-timeout", "1") as r:
        first = parallel(r, [{"action": "sleep", "s": 0.3} for _ in range(2)])
        r.wait_for(r"retired after", 10)
        deadline = time.monotonic() + 10
        while len(re.findall(r"retired after", r.output())) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(re.findall(r"retired after", r.output())) == 2
        # "retired after" is logged as the retirement starts: wait for the runtimes to be gone
        pids = {res["pid"] for res in first}
        while pids & set(pids_in_session(r.proc.pid)) and time.monotonic() < deadline + 10:  # type: ignore[union-attr]
            time.sleep(0.05)
        assert not pids & set(pids_in_session(r.proc.pid)), "retired runtimes are gone"  # type: ignore[union-attr]
        again = invoke_json(r, {})
        assert again["pid"] not in {res["pid"] for res in first}
        assert init_reports(r, after=again["request_id"]) == 3


def test_provisioned_environments_answer_the_first_invoke_warm() -> None:
    with rie(*PY_RUNTIME, "--provisioned", "2") as r:
        # both initialised before the emulator said it was listening
        assert len(pids_in_session(r.proc.pid)) >= 3  # type: ignore[union-attr]
        results = parallel(r, [{"action": "sleep", "s": 0.3} for _ in range(2)])
        assert all(res["init_type"] == "provisioned-concurrency" for res in results)
        reports = wait_reports(r, 2)
        assert len(reports) == 2
        assert init_reports(r) == 0


def test_event_invokes_retry_then_write_a_failure_record(tmp_path: Path) -> None:
    failures = tmp_path / "failures.jsonl"
    marker = tmp_path / "attempts"
    # the function's settings name the directory it writes its marker in: under the sandbox it
    # stays reachable there, writable (docs/resources.md)
    with rie(
        *PY_RUNTIME, "--event-retry-delay", "0.2", "--event-failure-file", str(failures),
        env={"MARKERS": str(tmp_path)},
    ) as r:  # fmt: skip
        reply = r.invoke(
            {"action": "fail", "marker": str(marker)}, headers={"X-Amz-Invocation-Type": "Event"}
        )
        assert reply.status == 202 and reply.body == b""
        request_id = reply.header("X-Amzn-RequestId")
        deadline = time.monotonic() + 15
        while not failures.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        record = json.loads(failures.read_text().splitlines()[0])
        ok = r.invoke({"n": 1}, headers={"X-Amz-Invocation-Type": "Event"})
        assert ok.status == 202
        r.wait_for(re.escape(f"START RequestId: {ok.header('X-Amzn-RequestId')}"), 10)
    # three attempts, the same request id each time, as Lambda retries
    assert marker.read_text().split() == [request_id] * 3
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestContext"]["functionArn"].endswith(":function:test_function:$LATEST")
    assert record["requestPayload"] == {"action": "fail", "marker": str(marker)}
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["responsePayload"]["errorType"] == "RuntimeError"
    assert len(failures.read_text().splitlines()) == 1, "the successful event wrote no record"


def test_event_queue_is_written_out_at_shutdown(tmp_path: Path) -> None:
    failures = tmp_path / "failures.jsonl"
    r = rie(
        *PY_RUNTIME,
        "--max-concurrency",
        "1",
        "--shutdown-timeout",
        "0.5",
        "--event-failure-file",
        str(failures),
    ).start()
    ids = []
    for i in range(4):
        reply = r.invoke(
            {"action": "sleep", "s": 3, "n": i}, headers={"X-Amz-Invocation-Type": "Event"}
        )
        ids.append(reply.header("X-Amzn-RequestId"))
    r.wait_for(re.escape(f"START RequestId: {ids[0]}"), 10)
    assert r.stop() == 0
    records = [json.loads(line) for line in failures.read_text().splitlines()]
    written = {rec["requestContext"]["requestId"] for rec in records}
    assert set(ids[1:]) <= written, "every event still queued at shutdown is written out"
    assert {rec["requestContext"]["condition"] for rec in records} == {"EmulatorShutdown"}


def test_event_older_than_max_age_is_not_run(tmp_path: Path) -> None:
    failures = tmp_path / "failures.jsonl"
    with rie(
        *PY_RUNTIME,
        "--max-concurrency",
        "1",
        "--event-max-age",
        "0.5",
        "--event-failure-file",
        str(failures),
    ) as r:
        first = r.invoke({"action": "sleep", "s": 1.5}, headers={"X-Amz-Invocation-Type": "Event"})
        late = r.invoke({"n": 2}, headers={"X-Amz-Invocation-Type": "Event"})
        deadline = time.monotonic() + 10
        while not failures.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        record = json.loads(failures.read_text().splitlines()[0])
    assert first.status == late.status == 202
    assert record["requestContext"]["requestId"] == late.header("X-Amzn-RequestId")
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0


@pytest.mark.parametrize("runtime", ["python", "sh"])
def test_managed_instances_mode_runs_several_invocations_in_one_environment(runtime: str) -> None:
    if runtime == "python":
        args = [*PY_RUNTIME, "--", sys.executable, "-m", "runtime"]
        event = {"action": "sleep", "s": 0.5}
    else:
        args = ["--task-root", str(FIXTURES), "--", str(FIXTURES / "concurrent_bootstrap.sh")]
        event = {"x": 1}
    with rie("--max-concurrency", "1", "--per-environment-concurrency", "3", *args) as r:
        results = parallel(r, [event] * 3)
        # all three were sleeping at one moment: the last to start began before the first ended
        windows = [res["slept"] for res in results]
        assert max(w[0] for w in windows) < min(w[1] for w in windows), windows
        assert len(wait_reports(r, 3)) == 3
        assert init_reports(r) == 1
        if runtime == "python":
            assert {res["max_concurrency"] for res in results} == {"3"}
            assert len({res["stream"] for res in results}) == 1
        else:
            assert sorted(res["worker"] for res in results) == [1, 2, 3]  # type: ignore[type-var]
        # a fourth at once is over the limit of 1 environment x 3
        with ThreadPoolExecutor(4) as ex:
            replies = list(ex.map(lambda _: r.invoke(event), range(4)))
        assert sorted(rep.status for rep in replies) == [200, 200, 200, 429]


def test_two_hundred_parallel_invokes_are_all_answered_exactly_once() -> None:
    with rie(*PY_RUNTIME, "--max-concurrency", "4", "--queue-timeout", "60") as r:
        results = parallel(r, [{"n": i} for i in range(200)], workers=32)
        assert sorted(res["n"] for res in results) == list(range(200))  # type: ignore[type-var]
        assert len({res["request_id"] for res in results}) == 200
        out = r.output().splitlines()
        for res in results:
            rid = res["request_id"]
            assert sum(line == f"END RequestId: {rid}" for line in out) == 1
        assert len({res["pid"] for res in results}) <= 4


def test_metrics_and_shutdown_summary() -> None:
    r = rie(*PY_RUNTIME, "--memory", "1024").start()
    invoke_json(r, {})
    assert r.invoke({"action": "fail"}).header("X-Amz-Function-Error") == "Unhandled"
    text = r.request("GET", "/metrics").body.decode()
    fn = 'function="test_function"'
    assert f'rie_invocations_total{{{fn},type="RequestResponse",outcome="success"}} 1' in text
    assert (
        f'rie_invocations_total{{{fn},type="RequestResponse",outcome="function_error"}} 1' in text
    )
    assert f"\nrie_cold_starts_total{{{fn}}} 1\n" in text
    assert f"\nrie_invocation_duration_seconds_count{{{fn}}} 2\n" in text
    assert f"\nrie_init_duration_seconds_count{{{fn}}} 1\n" in text
    assert f"\nrie_concurrent_executions{{{fn}}} 0\n" in text
    assert r.stop() == 0
    summary = r.wait_for(
        r"rie summary: (\d+) invocations, (\d+) errors, .* cold starts, .*GB-s billed, about \$([\d.]+)"
    )
    assert summary.group(1) == "2" and summary.group(2) == "1"
    assert float(summary.group(3)) > 0


def test_a_provisioned_environment_whose_init_fails_does_not_restart_in_a_loop(
    tmp_path: Path,
) -> None:
    starts = tmp_path / "starts"
    bootstrap = tmp_path / "bootstrap"
    # under the sandbox the bootstrap's directory is kept read-only unless a variable of the
    # function names a path there (docs/resources.md)
    bootstrap.write_text('#!/bin/sh\necho started >> "$STARTS"\nexit 1\n')
    bootstrap.chmod(0o755)
    with rie("--provisioned", "1", "--", str(bootstrap), env={"STARTS": str(starts)}) as r:
        time.sleep(1.0)
        assert starts.read_text().count("started") == 1
        reply = r.invoke({})
        assert reply.status == 200 and reply.json()["errorType"] == "Runtime.ExitError"  # type: ignore[index]
        assert starts.read_text().count("started") == 2, "an invoke inits it again, on demand"
