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


def of(recs: list[Record], name: str) -> list[Record]:
    return [r for r in recs if r["name"] == name]


def reported(api: str, request_id: str) -> Any:
    def pred(recs: list[Record]) -> bool:
        return any(
            ev["type"] == "platform.report" and ev["record"]["requestId"] == request_id
            for ev in events(recs, api)
        )

    return pred


def both_reported(request_id: str) -> Any:
    return lambda recs: (
        reported("telemetry", request_id)(recs) and reported("logs", request_id)(recs)
    )


def shut_down(*names: str) -> Any:
    def pred(recs: list[Record]) -> bool:
        return all(
            any(r["kind"] == "event" and r["event"]["eventType"] == "SHUTDOWN" for r in of(recs, n))
            for n in names
        )

    return pred


def start(layer: str, env: dict[str, str]) -> RieProcess:
    return rie(
        "--layer", str(LAYERS / layer), "--task-root", str(TASK_ROOT), "--handler", "handler.echo",
        env=env,
    )  # fmt: skip


def check_extension(recs: list[Record], name: str, api: str, rid: str) -> list[Record]:
    """What a sample-style extension must have seen for one invoke and a spindown; its
    records of `api` back."""
    mine = of(recs, name)
    reg = next(r for r in mine if r["kind"] == "registered")
    assert reg["status"] == 200 and len(reg["id"]) == 36
    assert {"functionName", "functionVersion", "handler"} <= set(reg["answer"])
    sub = next(r for r in mine if r["kind"] == "subscribed")
    assert (sub["api"], sub["status"], json.loads(sub["body"])) == (api, 200, "OK")
    got = [r["event"] for r in mine if r["kind"] == "event"]
    assert [e["eventType"] for e in got] == ["INVOKE", "SHUTDOWN"]
    invoke, shutdown = got
    assert invoke["requestId"] == rid
    assert invoke["invokedFunctionArn"].startswith("arn:aws:lambda:")
    assert isinstance(invoke["deadlineMs"], int)
    assert invoke["tracing"]["type"] == "X-Amzn-Trace-Id"
    assert shutdown["shutdownReason"] == "spindown" and isinstance(shutdown["deadlineMs"], int)
    # the last batch reaches the extension before its SHUTDOWN event
    last_event = max(i for i, r in enumerate(mine) if r["kind"] == "event")
    assert reported(api, rid)(mine[:last_event])
    return events(mine, api)


def check_telemetry(telemetry: list[Record], rid: str) -> None:
    kinds = [ev["type"] for ev in telemetry]
    for kind in ("platform.initStart", "platform.start", "platform.runtimeDone", "platform.report"):
        assert kind in kinds
    assert f"handler echo {rid}" in [ev["record"] for ev in telemetry if ev["type"] == "function"]
    done = next(ev["record"] for ev in telemetry if ev["type"] == "platform.runtimeDone")
    assert done["requestId"] == rid and done["status"] == "success"
    assert {"durationMs", "producedBytes"} <= set(done["metrics"])
    assert [s["name"] for s in done["spans"]] == ["responseLatency", "responseDuration"]


def invocation_types(logs: list[Record], rid: str) -> list[str]:
    """The Logs API records of one invocation (and the function's lines), in order."""
    return [
        ev["type"]
        for ev in logs
        if ev["type"] == "function"
        or (isinstance(ev["record"], dict) and ev["record"].get("requestId") == rid)
    ]


@pytest.mark.parametrize("sam_local", [False, True], ids=["sandbox.localdomain", "AWS_SAM_LOCAL"])
def test_python_sample_style_extensions(tmp_path: Path, sam_local: bool) -> None:
    """The shape of python-example-telemetry-api-extension (a launcher in extensions/, `urllib`,
    schema 2022-07-01, a listener at `http://sandbox.localdomain:PORT`, or under AWS_SAM_LOCAL at
    `http://0.0.0.0:PORT`) and of python-example-logs-api-extension (`http://sandbox:PORT`, no
    schemaVersion), side by side in one layer."""
    log = tmp_path / "log"
    env = {"EXT_LOG": str(log), "EXT_PYTHON": sys.executable}
    if sam_local:
        env["AWS_SAM_LOCAL"] = "true"
    with start("python", env) as r:
        rid = r.invoke({"x": 1}).json()["requestId"]  # type: ignore[index]
        wait_records(log, both_reported(rid))
    recs = wait_records(log, shut_down("python_telemetry_ext", "python_logs_ext"))
    # the Logs API one called `next` again after SHUTDOWN, as AWS's sample does: it is stopped
    # there, without a traceback from a connection closed under it
    assert not any("Traceback" in line for line in r.lines), "\n".join(r.lines)

    telemetry = check_extension(recs, "python_telemetry_ext", "telemetry", rid)
    check_telemetry(telemetry, rid)
    sub = next(r for r in of(recs, "python_telemetry_ext") if r["kind"] == "subscribed")
    host = "0.0.0.0" if sam_local else "sandbox.localdomain"
    assert sub["request"]["destination"]["URI"].startswith(f"http://{host}:")
    reg = next(r for r in of(recs, "python_telemetry_ext") if r["kind"] == "registered")
    assert "accountId" in reg["answer"]  # it sent Lambda-Extension-Accept-Feature: accountId
    # schema 2022-07-01: initStart has only that schema's fields
    init = next(ev["record"] for ev in telemetry if ev["type"] == "platform.initStart")
    assert set(init) == {"initializationType", "phase", "runtimeVersion", "runtimeVersionArn"}
    assert all(r["content_type"] == "application/json" for r in recs if r["kind"] == "batch")
    # each delivery makes the listener log a line it is subscribed to: batches keep to the
    # buffering limits (and the flush before SHUTDOWN ends) instead of feeding themselves
    assert sum(r["kind"] == "batch" for r in of(recs, "python_telemetry_ext")) < 30
    assert any(ev["type"] == "extension" and "POST" in ev["record"] for ev in telemetry)
    ready = [ev["record"] for ev in telemetry if ev["type"] == "platform.extension"]
    assert {"name": "python_telemetry_ext", "state": "Ready", "events": ["INVOKE", "SHUTDOWN"]} in (
        ready
    )

    logs = check_extension(recs, "python_logs_ext", "logs", rid)
    # the Logs API's default schema 2020-08-15 has no platform.runtimeDone
    assert invocation_types(logs, rid) == [
        "platform.start",
        "function",
        "platform.end",
        "platform.report",
    ]
    start_record = next(ev["record"] for ev in logs if ev["type"] == "platform.start")
    assert start_record["requestId"] == rid


def _resolves_to_loopback(name: str) -> bool:
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET)
    except OSError:
        return False
    return all(info[4][0].startswith("127.") for info in infos)


@pytest.mark.skipif(
    not _resolves_to_loopback("sandbox.localdomain") or not _resolves_to_loopback("sandbox"),
    reason="sandbox.localdomain / sandbox do not resolve here (see docs/extensions.md: /etc/hosts)",
)
def test_python_sample_style_extension_binding_the_sandbox_names(tmp_path: Path) -> None:
    """As on Lambda, the listener binds the name `sandbox.localdomain` itself (a machine that
    maps it to 127.0.0.1 in /etc/hosts, as docs/extensions.md says)."""
    log = tmp_path / "log"
    env = {"EXT_LOG": str(log), "EXT_PYTHON": sys.executable}
    env["EXT_LISTEN_HOST"] = "sandbox.localdomain"
    with start("python", env) as r:
        rid = r.invoke({}).json()["requestId"]  # type: ignore[index]
        wait_records(log, both_reported(rid))
    recs = wait_records(log, shut_down("python_telemetry_ext", "python_logs_ext"))
    check_telemetry(check_extension(recs, "python_telemetry_ext", "telemetry", rid), rid)
    check_extension(recs, "python_logs_ext", "logs", rid)


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
def test_nodejs_sample_style_extensions(tmp_path: Path) -> None:
    """The shape of nodejs-example-extension and its telemetry sample (a launcher in
    extensions/, `fetch` with `Content-Type: application/json` on every call, GET included) and
    of nodejs-example-logs-api-extension (`http.request` with a chunked body), here with the Logs
    API's schema 2021-03-18, which adds platform.runtimeDone."""
    log = tmp_path / "log"
    with start("nodejs", {"EXT_LOG": str(log)}) as r:
        rid = r.invoke({}).json()["requestId"]  # type: ignore[index]
        wait_records(log, both_reported(rid))
    recs = wait_records(log, shut_down("nodejs-telemetry-ext", "nodejs-logs-ext"))
    telemetry = check_extension(recs, "nodejs-telemetry-ext", "telemetry", rid)
    check_telemetry(telemetry, rid)
    init = next(ev["record"] for ev in telemetry if ev["type"] == "platform.initStart")
    assert init["functionName"] and init["instanceMaxMemory"] > 0  # schema 2022-12-13's fields
    logs = check_extension(recs, "nodejs-logs-ext", "logs", rid)
    assert invocation_types(logs, rid) == [
        "platform.start",
        "function",
        "platform.runtimeDone",
        "platform.end",
        "platform.report",
    ]
    done = next(ev["record"] for ev in logs if ev["type"] == "platform.runtimeDone")
    assert done == {"requestId": rid, "status": "success"}


def test_sample_layers_are_executable() -> None:
    """The launchers must keep their mode bits (a checkout that loses them breaks the tests)."""
    for launcher in LAYERS.glob("*/extensions/*"):
        assert os.access(launcher, os.X_OK), launcher
