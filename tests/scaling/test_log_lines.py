"""The function's log as Lambda keeps it: whole lines per environment, platform lines on their own,
and every line an invocation printed in its tail, through real runtimes and real pipes."""

from __future__ import annotations

import base64
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import Reply, rie

FIXTURES = Path(__file__).parent / "fixtures"
PY_RUNTIME = ["--task-root", str(FIXTURES), "--handler", "fn.handler"]
CHUNKY = re.compile(r"^chunky (\d+) line (\d\d) a{50}( b){20} end$")


def tail_of(reply: Reply) -> list[str]:
    return base64.b64decode(reply.header("X-Amz-Log-Result") or "").decode().splitlines()


def test_environments_printing_at_once_never_interleave_within_a_line() -> None:
    n_envs, n_lines = 4, 25
    with rie(*PY_RUNTIME, "--max-concurrency", str(n_envs)) as r:
        with ThreadPoolExecutor(n_envs) as ex:
            replies = list(
                ex.map(
                    lambda n: r.invoke({"action": "chunks", "lines": n_lines, "n": n}),
                    range(n_envs),
                )
            )
        assert all(reply.status == 200 for reply in replies), [x.body for x in replies]
        ids = [reply.json()["request_id"] for reply in replies]  # type: ignore[index]
        for request_id in ids:
            r.wait_for(re.escape(f"REPORT RequestId: {request_id}"), 15)
        lines = r.output().splitlines()
    seen: dict[str, int] = {}
    for line in lines:
        if "chunky" in line:
            m = CHUNKY.match(line)
            assert m, f"a line was cut or glued to another: {line!r}"
            seen[m.group(1)] = seen.get(m.group(1), 0) + 1
        for platform in ("START RequestId:", "END RequestId:", "REPORT RequestId:"):
            if platform in line:
                assert line.startswith(platform), f"a platform line is not on its own: {line!r}"
    assert seen == {str(n): n_lines for n in range(n_envs)}
    # a line the function left unfinished is ended before its END, on its own
    for n in range(n_envs):
        assert f"unfinished line of {n}" in lines


@pytest.mark.parametrize("runtime", ["runtime", "awslambdaric"])
def test_a_cold_invokes_tail_has_every_line_it_printed_before_end(runtime: str) -> None:
    command = ["--", sys.executable, "-m", runtime]
    if runtime == "awslambdaric":
        command.append("fn.handler")
    with rie(*PY_RUNTIME, "--max-concurrency", "1", *command) as r:
        for n in range(30):
            reply = r.invoke(
                {"action": "print", "lines": 20, "n": n}, headers={"X-Amz-Log-Type": "Tail"}
            )
            assert reply.status == 200, reply.body
            tail = base64.b64decode(reply.header("X-Amz-Log-Result") or "").decode()
            lines = tail.splitlines()
            want = [f"line {i:02d} of {n}" for i in range(20)]
            assert [line for line in lines if line.startswith("line ")] == want, tail
            end = next(i for i, line in enumerate(lines) if line.startswith("END RequestId:"))
            assert lines.index(want[-1]) < end, tail
            # the next invoke is cold: this environment's runtime exits
            crash = r.invoke({"action": "exit"})
            assert crash.header("X-Amz-Function-Error") == "Unhandled", crash.body


def test_the_tail_of_an_invoke_whose_init_failed_shows_what_stdout_shows() -> None:
    curl_sh = Path(__file__).parent.parent / "rie" / "fixtures" / "curl_bootstrap.sh"
    with rie("--", str(curl_sh), env={"INIT_EXIT": "3"}) as r:
        reply = r.invoke({}, headers={"X-Amz-Log-Type": "Tail"})
        assert reply.header("X-Amz-Function-Error") == "Unhandled", reply.body
        request_id = reply.header("X-Amzn-RequestId")
        tail = tail_of(reply)
        r.wait_for(re.escape(f"REPORT RequestId: {request_id}"), 15)
        stdout = r.output().splitlines()
    # the tail is the end of this invocation's log as stdout shows it, init included
    first = stdout.index("sh init exiting with 3")
    last = next(i for i, line in enumerate(stdout) if line.startswith("REPORT RequestId:"))
    assert [line.rstrip() for line in tail] == [line.rstrip() for line in stdout[first : last + 1]]
    assert any(line.startswith("INIT_REPORT ") and "Status: error" in line for line in tail)
    assert f"START RequestId: {request_id} Version: $LATEST" in tail
