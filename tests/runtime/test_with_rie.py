"""The same handlers under awslambdaric and under our runtime, both driven by our emulator
through its Invoke API: the caller must get the same answers. Also the root `bootstrap`
end to end (emulator mode, then runtime mode inside it)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import RieProcess, rie
from tests.runtime.fake_api import HANDLERS, PYTHON, REPO

pytestmark = pytest.mark.skipif(
    not (REPO / "rie" / "__main__.py").exists(),
    reason="rie is not there yet (rie/__main__.py missing)",
)

RUNTIMES = {
    "ric": [PYTHON, "-m", "awslambdaric"],
    "ours": [PYTHON, "-m", "runtime"],
}


def _rie(kind: str, handler: str) -> RieProcess:
    return rie(
        "--task-root",
        str(HANDLERS),
        "--handler",
        handler,
        "--",
        *RUNTIMES[kind],
        handler,
        cwd=HANDLERS,
    )


def _invoke_all(
    handler: str, payloads: list[object]
) -> dict[str, list[tuple[int, str | None, object]]]:
    answers = {}
    for kind in RUNTIMES:
        with _rie(kind, handler) as r:
            got = []
            for p in payloads:
                reply = r.invoke(p)
                parsed = json.loads(reply.body, parse_constant=str) if reply.body else None
                if isinstance(parsed, dict) and "requestId" in parsed:
                    parsed["requestId"] = "-"
                got.append((reply.status, reply.header("x-amz-function-error"), parsed))
            answers[kind] = got
    return answers


def test_results_through_rie_match() -> None:
    kinds = [
        "dict",
        "none",
        "str",
        "decimal",
        "decimals",
        "list",
        "nonascii",
        "namedtuple",
        "bigint",
    ]
    answers = _invoke_all("results.handler", [{"kind": k} for k in kinds])
    assert answers["ours"] == answers["ric"]


def test_errors_through_rie_match() -> None:
    answers = _invoke_all("raising.handler", [{"value": 2}, {"value": 5}])
    assert answers["ours"] == answers["ric"]
    assert answers["ours"][0][1] == "Unhandled"


def test_init_error_through_rie_matches() -> None:
    answers = _invoke_all("raise_at_import.handler", [{}])
    assert answers["ours"] == answers["ric"]
    assert answers["ours"][0][2]["errorType"] == "ConfigurationError"  # type: ignore[index]


def test_context_through_rie_matches() -> None:
    answers = _invoke_all("context_dump.handler", [{"a": 1}])
    for kind in answers:
        result = answers[kind][0][2]
        assert isinstance(result, dict)
        result["aws_request_id"] = "-"
        result["log_stream_name"] = bool(result["log_stream_name"])  # random per environment
        result["trace_env"] = bool(result["trace_env"])
    assert answers["ours"] == answers["ric"]


def test_bootstrap_end_to_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AWS_LAMBDA_RUNTIME_API"}
    env.update(
        PATH=f"{Path(PYTHON).parent}:/usr/bin:/bin",
        PYRIE_PYTHON=PYTHON,
        RIE_ADDRESS="127.0.0.1:0",
        RIE_ARGS=f"--runtime-api-address 127.0.0.1:0 --task-root {HANDLERS}",
    )
    proc = subprocess.Popen(
        [str(REPO / "bootstrap"), "results.handler"], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    found = threading.Event()
    port: list[int] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            lines.append(line)
            m = re.search(r"listening on http://[\d.]+:(\d+)", line)
            if m and not port:
                port.append(int(m.group(1)))
                found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert found.wait(15), "".join(lines)
        r = RieProcess([], port=port[0])
        reply = r.invoke({"kind": "nonascii"})
        assert reply.status == 200
        assert json.loads(reply.body) == {"grüße": "héllo wörld ✓ 日本", "emoji": "🎉"}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    time.sleep(0)
    assert proc.returncode == 0, "".join(lines)
