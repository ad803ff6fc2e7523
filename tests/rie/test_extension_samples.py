"""Extensions written the way AWS's sample extensions (aws-samples/aws-lambda-extensions) are,
run under rie as layers: what they send (the launcher's basename as `Lambda-Extension-Name`,
`Content-Type` on GET, a chunked Logs API body, destinations on `sandbox.localdomain`, `sandbox`
or `0.0.0.0`) and what they parse (the identifier header, the register answer, INVOKE and
SHUTDOWN events, Telemetry and Logs API batches) must work as on Lambda.

Each extension writes what it receives to $EXT_LOG as JSON lines; the tests wait for lines there
(never for time).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import RieProcess, rie
from tests.rie.conftest import wait_until

HERE = Path(__file__).resolve().parent
LAYERS = HERE / "fixtures" / "sample_layers"
TASK_ROOT = HERE / "fixtures" / "extensions"  # handler.echo prints "handler echo <request id>"

Record = dict[str, Any]


def read(log: Path) -> list[Record]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def wait_records(log: Path, pred: Any, timeout: float = 20.0) -> list[Record]:
    """The records once `pred(records)` holds (a bounded wait on a state, not a delay)."""
    deadline = time.monotonic() + timeout
    while True:
        recs = read(log)
        if pred(recs):
            return recs
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met; {log} holds:\n{log.read_text()}")
        time.sleep(0.02)


def events(recs: list[Record], api: str) -> list[Record]:
    return [ev for r in recs if r["kind"] == "batch" and r["api"] == api for ev in r["batch"]]


def reported(api: str, request_id: str) -> Any:
    def pred(recs: list[Record]) -> bool:
        return any(
            ev["type"] == "platform.report" and ev["record"]["requestId"] == request_id
            for ev in events(recs, api)
        )

    return pred


def shut_down(recs: list[Record]) -> bool:
    return any(r["kind"] == "event" and r["event"]["eventType"] == "SHUTDOWN" for r in recs)


def start(layer: str, env: dict[str, str]) -> RieProcess:
    return rie(
        "--layer", str(LAYERS / layer), "--task-root", str(TASK_ROOT), "--handler", "handler.echo",
        env=env,
    )  # fmt: skip


def check_session(recs: list[Record], name: str, rid: str) -> None:
    """What every sample-style extension must have seen for one invoke and a spindown."""
    reg = next(r for r in recs if r["kind"] == "registered")
    assert reg["status"] == 200 and reg["name"] == name and len(reg["id"]) == 36
    assert {"functionName", "functionVersion", "handler"} <= set(reg["answer"])
    subs = {r["api"]: r for r in recs if r["kind"] == "subscribed"}
    assert subs["telemetry"]["status"] == 200 and subs["logs"]["status"] == 200
    got = [r["event"] for r in recs if r["kind"] == "event"]
    assert [e["eventType"] for e in got] == ["INVOKE", "SHUTDOWN"]
    invoke, shutdown = got
    assert invoke["requestId"] == rid
    assert invoke["invokedFunctionArn"].startswith("arn:aws:lambda:")
    assert isinstance(invoke["deadlineMs"], int)
    assert invoke["tracing"]["type"] == "X-Amzn-Trace-Id"
    assert shutdown["shutdownReason"] == "spindown" and isinstance(shutdown["deadlineMs"], int)
    # the last batches reach the extension before its SHUTDOWN event
    last_event = max(i for i, r in enumerate(recs) if r["kind"] == "event")
    assert reported("telemetry", rid)(recs[:last_event]) and reported("logs", rid)(
        recs[:last_event]
    )

    telemetry = events(recs, "telemetry")
    kinds = [ev["type"] for ev in telemetry]
    for kind in ("platform.start", "platform.runtimeDone", "platform.report"):
        assert kind in kinds
    assert f"handler echo {rid}" in [ev["record"] for ev in telemetry if ev["type"] == "function"]
    done = next(ev["record"] for ev in telemetry if ev["type"] == "platform.runtimeDone")
    assert done["requestId"] == rid and done["status"] == "success"
    assert {"durationMs", "producedBytes"} <= set(done["metrics"])

    logs = [ev for ev in events(recs, "logs") if ev["type"] != "platform.extension"]
    mine = [
        ev["type"]
        for ev in logs
        if ev["type"] == "function" or ev["record"].get("requestId") == rid  # type: ignore[union-attr]
    ]
    assert mine == ["platform.start", "function", "platform.end", "platform.report"]


@pytest.mark.parametrize("sam_local", [False, True], ids=["sandbox.localdomain", "AWS_SAM_LOCAL"])
def test_python_sample_style_extension(tmp_path: Path, sam_local: bool) -> None:
    """python-example-telemetry-api-extension's shape: a launcher in extensions/, `urllib`, a
    telemetry listener at `http://sandbox.localdomain:PORT` (or, under AWS_SAM_LOCAL, at
    `http://0.0.0.0:PORT`), and python-example-logs-api-extension's `http://sandbox:PORT`."""
    log = tmp_path / "log"
    env = {"EXT_LOG": str(log), "EXT_PYTHON": sys.executable}
    if sam_local:
        env["AWS_SAM_LOCAL"] = "true"
    with start("python", env) as r:
        rid = r.invoke({"x": 1}).json()["requestId"]  # type: ignore[index]
        wait_records(
            log, lambda recs: reported("telemetry", rid)(recs) and reported("logs", rid)(recs)
        )
    recs = wait_records(log, shut_down)
    check_session(recs, "python_sample_ext", rid)
    reg = next(r for r in recs if r["kind"] == "registered")
    assert "accountId" in reg["answer"]  # it sent Lambda-Extension-Accept-Feature: accountId
    sub = next(r for r in recs if r["kind"] == "subscribed" and r["api"] == "telemetry")
    host = "0.0.0.0" if sam_local else "sandbox.localdomain"
    assert sub["uri"]["destination"]["URI"].startswith(f"http://{host}:")
    telemetry = events(recs, "telemetry")
    # schema 2022-07-01, as the samples subscribe: spans and tracing are there
    done = next(ev["record"] for ev in telemetry if ev["type"] == "platform.runtimeDone")
    assert [s["name"] for s in done["spans"]] == ["responseLatency", "responseDuration"]
    assert all(r.get("content_type") == "application/json" for r in recs if r["kind"] == "batch")
    ext = next(ev["record"] for ev in telemetry if ev["type"] == "platform.extension")
    assert ext == {"name": "python_sample_ext", "state": "Ready", "events": ["INVOKE", "SHUTDOWN"]}


def _resolves_to_loopback(name: str) -> bool:
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET)
    except OSError:
        return False
    return all(info[4][0].startswith("127.") for info in infos)


@pytest.mark.skipif(
    not _resolves_to_loopback("sandbox.localdomain") or not _resolves_to_loopback("sandbox"),
    reason="sandbox.localdomain / sandbox do not resolve here (see the README: /etc/hosts)",
)
def test_python_sample_style_extension_binding_the_sandbox_names(tmp_path: Path) -> None:
    """As on Lambda, the listener binds the name `sandbox.localdomain` itself (a machine that
    maps it to 127.0.0.1 in /etc/hosts, as the README says)."""
    log = tmp_path / "log"
    env = {"EXT_LOG": str(log), "EXT_PYTHON": sys.executable}
    env["EXT_LISTEN_HOST"] = "sandbox.localdomain"
    with start("python", env) as r:
        rid = r.invoke({}).json()["requestId"]  # type: ignore[index]
        wait_records(
            log, lambda recs: reported("telemetry", rid)(recs) and reported("logs", rid)(recs)
        )
    check_session(wait_records(log, shut_down), "python_sample_ext", rid)


@pytest.mark.skipif(
    _resolves_to_loopback("sandbox.localdomain"),
    reason="sandbox.localdomain resolves here: the extension would start",
)
def test_a_listener_on_an_unresolvable_sandbox_name_gets_a_hint(tmp_path: Path) -> None:
    """Where `sandbox.localdomain` does not resolve, an extension binding it dies during init:
    the invoke fails as on Lambda when an extension crashes, and rie says once why that is
    likely and what to do."""
    env = {"EXT_LOG": str(tmp_path / "log"), "EXT_PYTHON": sys.executable}
    env["EXT_LISTEN_HOST"] = "sandbox.localdomain"
    with start("python", env) as r:
        reply = r.invoke({})
        assert reply.status == 200 and reply.headers.get("x-amz-function-error") == "Unhandled"
        assert json.loads(reply.body)["errorType"] == "Extension.Crash"
        r.wait_for(r"sandbox\.localdomain .*not resolve.*127\.0\.0\.1 sandbox\.localdomain sandbox")
        r.invoke({})  # a second crash: the hint is not repeated
        wait_until(lambda: sum("State: Crash" in line for line in r.lines) >= 2, 20, "2 crashes")
    assert sum("not resolve" in line for line in r.lines) == 1


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_nodejs_sample_style_extension(tmp_path: Path) -> None:
    """nodejs-example-extension's shape: a launcher in extensions/, the name from its folder,
    `fetch` with `Content-Type: application/json` on every call (GET included), and the Logs API
    subscribed with a chunked body by `http.request`."""
    log = tmp_path / "log"
    with start("nodejs", {"EXT_LOG": str(log)}) as r:
        rid = r.invoke({}).json()["requestId"]  # type: ignore[index]
        wait_records(
            log, lambda recs: reported("telemetry", rid)(recs) and reported("logs", rid)(recs)
        )
    recs = wait_records(log, shut_down)
    check_session(recs, "nodejs-sample-ext", rid)
    init = next(
        ev["record"] for ev in events(recs, "telemetry") if ev["type"] == "platform.initStart"
    )
    assert init["functionName"] and init["instanceMaxMemory"] > 0  # schema 2022-12-13's fields


def test_sample_layers_are_executable() -> None:
    """The launchers must keep their mode bits (a checkout that loses them breaks the tests)."""
    for launcher in LAYERS.glob("*/extensions/*"):
        assert os.access(launcher, os.X_OK), launcher
