"""REFERENCE §4: START, END and REPORT lines and their measured figures."""

from __future__ import annotations

import base64
import math
import os
import re

import pytest

from rie.sandbox.supervisor import MemoryCgroup
from tests.rie.conftest import PY, curl_sh, do, mb, ms, report, scripted

REPORT_RE = re.compile(
    r"^REPORT RequestId: (?P<id>[0-9a-f-]{36})\t"
    r"Duration: \d+\.\d\d ms\t"
    r"Billed Duration: \d+ ms\t"
    r"Memory Size: \d+ MB\t"
    r"Max Memory Used: \d+ MB\t"
    r"(Init Duration: \d+\.\d\d ms\t)?"
    r"(Status: (timeout|error)\t(Error Type: [A-Za-z.]+\t)?)?$"
)


def test_start_end_report_in_order_with_the_real_request_id(sr) -> None:
    reply = do(sr, {"print": "between start and end"})
    rid = reply.header("X-Amzn-RequestId")
    report(sr, rid or "")
    lines = sr.output().splitlines()
    start = lines.index(f"START RequestId: {rid} Version: $LATEST")
    end = lines.index(f"END RequestId: {rid}")
    rep = next(i for i, x in enumerate(lines) if x.startswith(f"REPORT RequestId: {rid}\t"))
    own = next(i for i, x in enumerate(lines) if x == "between start and end" and i > start)
    assert start < own < end < rep


def test_report_fields_format_and_billed_duration(sr) -> None:
    for _ in range(3):
        reply = do(sr)
        rep = report(sr, reply.header("X-Amzn-RequestId") or "")
        assert REPORT_RE.match(rep["line"]), repr(rep["line"])
        duration = ms(rep["Duration"])
        billed = ms(rep["Billed Duration"])
        assert billed == int(billed) >= 1
        # rounded up to the next ms (Duration is printed rounded to 0.01 ms)
        assert math.ceil(duration - 0.005) <= billed <= max(1, math.ceil(duration + 0.005))
        assert "Status" not in rep, rep["line"]


def test_memory_size_follows_the_memory_flag_and_max_memory_is_measured() -> None:
    with scripted("--memory", "512") as r:
        small = do(r)
        rep = report(r, small.header("X-Amzn-RequestId") or "")
        assert mb(rep["Memory Size"]) == 512
        before = mb(rep["Max Memory Used"])
        assert 0 < before < 100, rep["line"]
        big = do(r, {"alloc": 100})
        rep = report(r, big.header("X-Amzn-RequestId") or "")
        assert mb(rep["Max Memory Used"]) >= 100, rep["line"]
        assert mb(rep["Memory Size"]) == 512


def test_sh_runtime_memory_is_small_and_not_the_memory_size() -> None:
    with curl_sh() as r:
        reply = r.invoke({})
        rep = report(r, reply.header("X-Amzn-RequestId") or "")
        assert mb(rep["Memory Size"]) == 3008
        used = mb(rep["Max Memory Used"])
        assert 0 < used < 64, rep["line"]


def test_init_duration_only_on_the_invocation_that_did_the_init() -> None:
    with scripted() as r:
        first = do(r)
        rep = report(r, first.header("X-Amzn-RequestId") or "")
        assert 0 < ms(rep["Init Duration"]) < 10000, rep["line"]
        for _ in range(2):
            again = do(r)
            rep = report(r, again.header("X-Amzn-RequestId") or "")
            assert "Init Duration" not in rep, rep["line"]


def test_duration_never_includes_init() -> None:
    with scripted(env={"INIT_SLEEP": "1"}) as r:
        reply = do(r)
        rep = report(r, reply.header("X-Amzn-RequestId") or "")
        assert ms(rep["Init Duration"]) >= 1000, rep["line"]
        assert ms(rep["Duration"]) < 900, rep["line"]


def test_function_error_posted_by_the_runtime_has_no_status(sr) -> None:
    reply = do(
        sr,
        {
            "post": "error",
            "body": '{"errorMessage": "m", "errorType": "E"}',
            "headers": {"Lambda-Runtime-Function-Error-Type": "Function.E"},
        },
    )
    assert reply.header("X-Amz-Function-Error") == "Unhandled"
    rep = report(sr, reply.header("X-Amzn-RequestId") or "")
    assert "Status" not in rep and "Error Type" not in rep, rep["line"]
    assert REPORT_RE.match(rep["line"])


def _memory_cgroups_usable() -> bool:
    probe = MemoryCgroup.create(f"pyrie-probe-{os.getpid()}")
    if probe is None:
        return False
    probe.remove()
    return True


@pytest.mark.skipif(
    not _memory_cgroups_usable(),
    reason="no memory cgroup can be made here: only living processes can be measured",
)
def test_max_memory_used_counts_a_child_process_that_has_already_exited() -> None:
    # a runtime that runs a program per invocation (as shell runtimes do): Lambda measures the
    # whole sandbox's peak, so a 100 MB child shows even though it is gone by the REPORT
    child = f"{PY} -c \"b = bytearray(100 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])\""
    with scripted() as r:
        reply = do(r, {"spawn": child})
        assert reply.status == 200, reply.body
        rep = report(r, reply.header("X-Amzn-RequestId") or "")
        assert mb(rep["Max Memory Used"]) >= 100, rep["line"]


def test_timed_out_invocation_report_and_tail() -> None:
    with scripted("--timeout", "1") as r:
        reply = do(
            r, {"print": "before the timeout"}, {"sleep": 30}, headers={"X-Amz-Log-Type": "Tail"}
        )
        rid = reply.header("X-Amzn-RequestId")
        assert reply.json()["errorType"] == "Sandbox.Timedout"  # type: ignore[index]
        rep = report(r, rid or "")
        assert 1000 <= ms(rep["Duration"]) < 5000, rep["line"]
        assert rep.get("Status") == "timeout"
        assert REPORT_RE.match(rep["line"]), rep["line"]
        log = base64.b64decode(reply.header("X-Amz-Log-Result") or "").decode()
        assert "before the timeout" in log
        assert f"{rid} Task timed out after 1.00 seconds" in log
        assert f"REPORT RequestId: {rid}\t" in log
