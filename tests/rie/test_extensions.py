"""External extensions under rie, end to end: real extension processes (POSIX sh + curl, Python
with `requests` and `http.server`, Node.js), the Extensions API, phases, SHUTDOWN reasons,
Telemetry and Logs API deliveries, extension failures, layers and the exec wrapper.

Extensions write what they see to a file ($EXT_LOG); tests wait for lines in it (never for time).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import REPO, RieProcess, pids_in_session, rie
from tests.rie.conftest import report

HERE = Path(__file__).resolve().parent
EXT_FIX = HERE / "fixtures" / "extensions"
SH_EXT = EXT_FIX / "sh-ext"
PY_EXT = EXT_FIX / "py_ext.py"
NODE_EXT = EXT_FIX / "node_ext.js"


def ext_dir(tmp_path: Path, *names: str) -> Path:
    """An extensions directory holding the named fixture extensions."""
    d = tmp_path / "extensions"
    d.mkdir(exist_ok=True)
    for name in names:
        if name == "sh-ext":
            shutil.copy(SH_EXT, d / "sh-ext")
        elif name == "py-ext":
            # the shebang names this interpreter, which has `requests`
            text = PY_EXT.read_text()
            (d / "py-ext").write_text(f"#!{sys.executable}\n{text}")
        elif name == "node-ext":
            shutil.copy(NODE_EXT, d / "node-ext")
        (d / name).chmod(0o755)
    return d


def with_exts(d: Path, handler: str, *flags: str, env: dict[str, str]) -> RieProcess:
    return rie(
        "--extensions-dir", str(d), "--task-root", str(EXT_FIX), "--handler", handler,
        *flags, env=env,
    )  # fmt: skip


def wait_lines(path: Path, pred: Callable[[list[str]], bool], timeout: float = 20.0) -> list[str]:
    """The lines of `path` once `pred` holds for them (bounded wait on a state, not a delay)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if pred(lines):
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met; {path} holds:\n" + "\n".join(lines))
        time.sleep(0.02)


def has(text: str) -> Callable[[list[str]], bool]:
    return lambda lines: any(text in line for line in lines)


def records(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def telemetry_events(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [ev for r in records(path) if r["kind"] == "batch" for ev in r["batch"]]


def assert_gone(r: RieProcess) -> None:
    assert r.proc is not None
    left = {pid: _cmdline(pid) for pid in pids_in_session(r.proc.pid)}
    assert left == {}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"


# --- sh + curl: registration, INVOKE, SHUTDOWN, holding the next invocation ----------------


def test_sh_extension_gets_each_invoke_and_spindown(tmp_path: Path) -> None:
    log = tmp_path / "log"
    d = ext_dir(tmp_path, "sh-ext")
    # one environment, so that both invocations go to the same extension process
    one_env = ("--max-concurrency", "1", "--queue-timeout", "30")
    r = with_exts(d, "handler.echo", *one_env, env={"EXT_LOG": str(log)}).start()
    try:
        ids = []
        for i in range(2):
            reply = r.invoke({"n": i})
            assert reply.status == 200, reply.body
            ids.append(reply.json()["requestId"])  # type: ignore[index]
        wait_lines(log, has(f"DONE {ids[1]}"))
        r.wait_for(rf"REPORT RequestId: {ids[1]}")
    finally:
        assert r.stop() == 0
    lines = log.read_text().splitlines()
    assert lines[0].startswith("sh-ext REGISTERED ")
    assert lines[1:] == [
        f"sh-ext INVOKE {ids[0]}",
        f"sh-ext DONE {ids[0]}",
        f"sh-ext INVOKE {ids[1]}",
        f"sh-ext DONE {ids[1]}",
        "sh-ext SHUTDOWN spindown",
    ]
    out = r.output()
    # the extension's output is in the function's log, and it started before the runtime
    assert out.index("[sh-ext] registered") < out.index(f"START RequestId: {ids[0]}")
    assert f"[sh-ext] invoke {ids[0]}" in out
    assert_gone(r)


def test_next_invocation_waits_until_the_extension_is_back_in_next(tmp_path: Path) -> None:
    log = tmp_path / "log"
    gate = tmp_path / "gate"
    d = ext_dir(tmp_path, "sh-ext")
    env = {"EXT_LOG": str(log), "EXT_GATE": str(gate)}
    # one environment: the second invocation must wait for it rather than get another one
    with with_exts(
        d, "handler.echo", "--max-concurrency", "1", "--queue-timeout", "30", env=env
    ) as r:
        first = r.invoke({"n": 1})
        assert first.status == 200
        rid1 = first.json()["requestId"]  # type: ignore[index]
        # the caller has its answer although the extension is still working on the invocation
        with log.open("a") as f:
            f.write(f"TEST answered {rid1}\n")
        second: list[object] = []
        t = threading.Thread(target=lambda: second.append(r.invoke({"n": 2})))
        t.start()
        # the second invocation is accepted and waits: the extension is not back in `next`
        wait_lines(log, has(f"TEST answered {rid1}"))
        with log.open("a") as f:
            f.write(f"TEST gate {rid1}\n")
        (tmp_path / f"gate.{rid1}").touch()
        lines = wait_lines(log, lambda ls: sum("INVOKE" in x for x in ls) == 2)
        rid2 = lines[-1].split()[-1]
        (tmp_path / f"gate.{rid2}").touch()
        t.join(30)
        reply2 = second[0]
        assert reply2.status == 200  # type: ignore[attr-defined]
        assert reply2.json()["requestId"] == rid2  # type: ignore[attr-defined]
        rep = r.wait_for(rf"REPORT RequestId: {rid1}\tDuration: ([\d.]+) ms")
        out = r.output()
        metrics = r.request("GET", "/metrics").body.decode()
    # (the extension's INVOKE line and the caller's answer race: Lambda sends INVOKE as it
    # hands the event to the runtime)
    order = [
        f"TEST answered {rid1}",
        f"TEST gate {rid1}",
        f"sh-ext DONE {rid1}",
        f"sh-ext INVOKE {rid2}",
    ]
    lines = log.read_text().splitlines()
    assert [line for line in lines if line in order] == order
    assert lines.index(f"sh-ext INVOKE {rid1}") < lines.index(f"sh-ext DONE {rid1}")
    # the second invocation reached the runtime only after the extension's DONE
    assert out.index(f"REPORT RequestId: {rid1}") < out.index(f"START RequestId: {rid2}")
    assert float(rep.group(1)) > 0
    # the time the extension kept the environment after the answer is counted, and billed
    held = re.search(r"^rie_extension_milliseconds_total(?:{[^}]*})? (\S+)$", metrics, re.M)
    assert held is not None and float(held.group(1)) > 0


def test_shutdown_reason_timeout_then_a_fresh_init(tmp_path: Path) -> None:
    log = tmp_path / "log"
    d = ext_dir(tmp_path, "sh-ext")
    with with_exts(d, "handler.slow", "--timeout", "1", env={"EXT_LOG": str(log)}) as r:
        reply = r.invoke({"sleep": 5})
        assert reply.json()["errorType"] == "Sandbox.Timedout"  # type: ignore[index]
        wait_lines(log, has("SHUTDOWN timeout"))
        reply = r.invoke({"sleep": 0})
        assert reply.status == 200 and reply.json() == "late"
        lines = wait_lines(log, lambda ls: sum("REGISTERED" in x for x in ls) == 2)
    assert sum("SHUTDOWN" in x for x in lines) >= 1


def test_shutdown_reason_failure_when_the_runtime_dies(tmp_path: Path) -> None:
    log = tmp_path / "log"
    d = ext_dir(tmp_path, "sh-ext")
    with with_exts(d, "handler.crash", env={"EXT_LOG": str(log)}) as r:
        reply = r.invoke({})
        assert reply.json()["errorType"] == "Runtime.ExitError"  # type: ignore[index]
        wait_lines(log, has("SHUTDOWN failure"))


# --- extension failures -----------------------------------------------------------------------


def test_extension_init_error_fails_the_init(tmp_path: Path) -> None:
    log = tmp_path / "log"
    d = ext_dir(tmp_path, "sh-ext")
    with with_exts(d, "handler.echo", env={"EXT_LOG": str(log), "EXT_FAIL": "init"}) as r:
        reply = r.invoke({})
        assert reply.status == 200
        assert reply.header("X-Amz-Function-Error") == "Unhandled"
        assert reply.json()["errorType"] == "Extension.InitError"  # type: ignore[index]
        r.wait_for(
            r"INIT_REPORT Init Duration: [\d.]+ ms\tPhase: init\tStatus: error\tError Type: Extension.InitError"
        )
        assert "handler echo" not in r.output()


def test_extension_crash_during_init(tmp_path: Path) -> None:
    d = ext_dir(tmp_path, "sh-ext")
    with with_exts(d, "handler.echo", env={"EXT_FAIL": "crash-init"}) as r:
        reply = r.invoke({})
        assert reply.json()["errorType"] == "Extension.Crash"  # type: ignore[index]
        # the next invocation tries a fresh init (and fails the same way)
        assert r.invoke({}).json()["errorType"] == "Extension.Crash"  # type: ignore[index]
    assert_gone(r)


@pytest.mark.parametrize("how", ["exit", "crash"])
def test_extension_failure_after_init_resets_the_environment(tmp_path: Path, how: str) -> None:
    log = tmp_path / "log"
    d = ext_dir(tmp_path, "sh-ext")
    gate = tmp_path / "gate"
    env = {"EXT_LOG": str(log), "EXT_FAIL": how, "EXT_GATE": str(gate)}
    with with_exts(d, "handler.echo", env=env) as r:
        first = r.invoke({})
        assert first.status == 200 and "requestId" in first.json()  # type: ignore[operator]
        # the extension fails once the caller has its answer
        (tmp_path / f"gate.{first.json()['requestId']}").touch()  # type: ignore[index]
        mark = "EXIT_ERROR" if how == "exit" else "CRASH"
        wait_lines(log, has(mark))
        # the environment was reset: the next invocation inits again, with a new extension
        second = r.invoke({})
        assert second.status == 200 and "requestId" in second.json()  # type: ignore[operator]
        wait_lines(log, lambda ls: sum("REGISTERED" in x for x in ls) == 2)
        (tmp_path / f"gate.{second.json()['requestId']}").touch()  # type: ignore[index]
    assert_gone(r)


# --- Python extension: Telemetry API, Logs API, the API's errors ----------------------------


def _types(events: list[dict]) -> list[str]:  # type: ignore[type-arg]
    return [ev["type"] for ev in events]


def test_telemetry_batches_in_lambdas_order(tmp_path: Path) -> None:
    log = tmp_path / "log"
    d = ext_dir(tmp_path, "py-ext")
    env = {"EXT_LOG": str(log)}
    with with_exts(d, "handler.echo", env=env) as r:
        ok = r.invoke({"n": 1})
        rid = ok.json()["requestId"]  # type: ignore[index]
        rep = r.wait_for(
            rf"REPORT RequestId: {rid}\tDuration: ([\d.]+) ms\tBilled Duration: (\d+) ms"
        )
        wait_lines(log, lambda ls: any('"platform.report"' in x for x in ls))
    events = telemetry_events(log)
    kinds = _types(events)
    init = [
        "platform.initStart",
        "platform.telemetrySubscription",
        "platform.extension",
        "platform.initRuntimeDone",
        "platform.initReport",
    ]
    assert [k for k in kinds if k in init] == init
    invoke = ["platform.start", "function", "platform.runtimeDone", "platform.report"]
    assert [k for k in kinds[kinds.index("platform.start") :] if k in invoke] == invoke
    assert kinds.count("platform.report") == 1
    by_type = {ev["type"]: ev["record"] for ev in events}
    assert by_type["platform.initStart"]["phase"] == "init"
    assert by_type["platform.extension"] == {
        "name": "py-ext",
        "state": "Ready",
        "events": ["INVOKE", "SHUTDOWN"],
    }
    assert by_type["platform.telemetrySubscription"]["types"] == [
        "platform",
        "function",
        "extension",
    ]
    assert by_type["platform.start"]["requestId"] == rid
    done = by_type["platform.runtimeDone"]
    assert done["status"] == "success" and done["requestId"] == rid
    assert [s["name"] for s in done["spans"]] == ["responseLatency", "responseDuration"]
    assert done["metrics"]["producedBytes"] == len(ok.body)
    report = by_type["platform.report"]
    # one source of truth: the REPORT line and the telemetry record give the same figures
    # (the line shows 2 decimals, the record 3, as Lambda's do)
    assert abs(report["metrics"]["durationMs"] - float(rep.group(1))) <= 0.0051
    assert report["metrics"]["billedDurationMs"] == int(rep.group(2))
    assert "initDurationMs" in report["metrics"]
    functions = [ev["record"] for ev in events if ev["type"] == "function"]
    assert f"handler echo {rid}" in functions
    assert any("[py-ext]" in ev["record"] for ev in events if ev["type"] == "extension")
    # delivered before SHUTDOWN: the last records come before the extension's SHUTDOWN event
    recs = records(log)
    shutdown_at = next(
        i
        for i, x in enumerate(recs)
        if x["kind"] == "event" and x["event"]["eventType"] == "SHUTDOWN"
    )
    report_at = next(
        i
        for i, x in enumerate(recs)
        if x["kind"] == "batch" and "platform.report" in _types(x["batch"])
    )
    assert report_at < shutdown_at


def test_telemetry_of_an_error_and_a_timeout(tmp_path: Path) -> None:
    log = tmp_path / "log"
    d = ext_dir(tmp_path, "py-ext")
    with with_exts(d, "handler.fail", "--timeout", "1", env={"EXT_LOG": str(log)}) as r:
        err = r.invoke({})
        assert err.json()["errorType"] == "ValueError"  # type: ignore[index]
        wait_lines(log, lambda ls: any('"platform.report"' in x for x in ls))
    kinds_err = telemetry_events(log)
    done = next(ev["record"] for ev in kinds_err if ev["type"] == "platform.runtimeDone")
    assert done["status"] == "error"
    report = next(ev["record"] for ev in kinds_err if ev["type"] == "platform.report")
    assert report["status"] == "error"

    log2 = tmp_path / "log2"
    with with_exts(d, "handler.slow", "--timeout", "1", env={"EXT_LOG": str(log2)}) as r:
        out = r.invoke({"sleep": 5})
        assert out.json()["errorType"] == "Sandbox.Timedout"  # type: ignore[index]
        wait_lines(log2, has('"eventType": "SHUTDOWN"'))
    recs = records(log2)
    events = telemetry_events(log2)
    kinds = _types(events)
    assert [
        k
        for k in kinds
        if k.startswith("platform.")
        and k not in ("platform.extension", "platform.telemetrySubscription")
    ][-3:] == [
        "platform.start",
        "platform.runtimeDone",
        "platform.report",
    ]
    assert (
        next(ev["record"] for ev in events if ev["type"] == "platform.runtimeDone")["status"]
        == "timeout"
    )
    assert (
        next(ev["record"] for ev in events if ev["type"] == "platform.report")["status"]
        == "timeout"
    )
    shutdown = next(
        x["event"] for x in recs if x["kind"] == "event" and x["event"]["eventType"] == "SHUTDOWN"
    )
    assert shutdown["shutdownReason"] == "timeout"
    ids = [x["event_id"] for x in recs if x["kind"] == "event"]
    assert all(re.fullmatch(r"[0-9a-f-]{36}", i) for i in ids) and len(set(ids)) == len(ids)
    assert shutdown["deadlineMs"] > 0


def test_telemetry_over_tcp_and_the_oldest_schema(tmp_path: Path) -> None:
    log = tmp_path / "log"
    d = ext_dir(tmp_path, "py-ext")
    env = {"EXT_LOG": str(log), "EXT_PROTOCOL": "TCP", "EXT_SCHEMA": "2022-07-01"}
    with with_exts(d, "handler.echo", env=env) as r:
        rid = r.invoke({}).json()["requestId"]  # type: ignore[index]
        wait_lines(log, lambda ls: any('"platform.report"' in x for x in ls))
    events = telemetry_events(log)
    assert all(r["path"] == "tcp" for r in records(log) if r["kind"] == "batch")
    done = next(ev["record"] for ev in events if ev["type"] == "platform.runtimeDone")
    assert done["requestId"] == rid and done["spans"][0]["name"] == "responseLatency"
    init = next(ev["record"] for ev in events if ev["type"] == "platform.initStart")
    assert "functionName" not in init and init["phase"] == "init"


def test_function_records_are_objects_under_the_json_log_format(tmp_path: Path) -> None:
    log = tmp_path / "log"
    d = ext_dir(tmp_path, "py-ext")
    env = {"EXT_LOG": str(log), "AWS_LAMBDA_LOG_FORMAT": "JSON"}
    with with_exts(d, "handler.logs", env=env) as r:
        rid = r.invoke({}).json()["requestId"]  # type: ignore[index]
        wait_lines(log, lambda ls: any('"platform.report"' in x for x in ls))
    records_ = [ev["record"] for ev in telemetry_events(log) if ev["type"] == "function"]
    logged = [x for x in records_ if isinstance(x, dict) and x.get("requestId") == rid]
    assert len(logged) == 1
    assert logged[0]["message"] == f"logged {rid}" and logged[0]["level"] == "WARNING"


def test_logs_api_deliveries(tmp_path: Path) -> None:
    log = tmp_path / "log"
    d = ext_dir(tmp_path, "py-ext")
    with with_exts(d, "handler.echo", env={"EXT_LOG": str(log), "EXT_SUBSCRIBE": "logs"}) as r:
        rid = r.invoke({}).json()["requestId"]  # type: ignore[index]
        wait_lines(log, lambda ls: any('"platform.report"' in x for x in ls))
    sub = next(x for x in records(log) if x["kind"] == "subscribed")
    assert sub["status"] == 200
    events = telemetry_events(log)
    kinds = [
        k
        for k in _types(events)
        if k in ("platform.start", "function", "platform.end", "platform.report")
    ]
    assert kinds[kinds.index("platform.start") :] == [
        "platform.start",
        "function",
        "platform.end",
        "platform.report",
    ]
    start = next(ev["record"] for ev in events if ev["type"] == "platform.start")
    assert start == {"requestId": rid, "version": "$LATEST"}
    assert f"handler echo {rid}" in [ev["record"] for ev in events if ev["type"] == "function"]


def _call(
    api: str,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict]:  # type: ignore[type-arg]
    host, _, port = api.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, (json.loads(data) if data.startswith(b"{") else {"raw": data.decode()})
    finally:
        conn.close()


def test_extensions_api_answers_and_errors(tmp_path: Path) -> None:
    log = tmp_path / "log"
    d = ext_dir(tmp_path, "py-ext")
    env = {"EXT_LOG": str(log), "EXT_SUBSCRIBE": "none"}
    with with_exts(d, "handler.echo", "--function-name", "extfn", env=env) as r:
        assert r.invoke({}).status == 200
        reg = next(x for x in records(log) if x["kind"] == "registered")
        assert reg["status"] == 200
        assert reg["body"] == {
            "functionName": "extfn",
            "functionVersion": "$LATEST",
            "handler": "handler.echo",
            "accountId": "012345678912",
        }
        api, ext_id = reg["api"], reg["id"]
        base = "/2020-01-01/extension"
        cases = [
            (
                "POST",
                "/register",
                {"Lambda-Extension-Name": "late"},
                b'{"events":["INVOKE"]}',
                "Extension.RegistrationClosed",
            ),
            ("POST", "/register", {}, b'{"events":["INVOKE"]}', "Extension.InvalidExtensionName"),
            ("GET", "/event/next", {}, None, "Extension.MissingExtensionIdentifier"),
            (
                "GET",
                "/event/next",
                {"Lambda-Extension-Identifier": "nope"},
                None,
                "Extension.InvalidExtensionIdentifier",
            ),
            (
                "GET",
                "/event/next",
                {"Lambda-Extension-Identifier": "00000000-0000-4000-8000-000000000000"},
                None,
                "Extension.UnknownExtensionIdentifier",
            ),
            (
                "POST",
                "/init/error",
                {"Lambda-Extension-Identifier": ext_id},
                b"{}",
                "Extension.MissingHeader",
            ),
            (
                "POST",
                "/init/error",
                {
                    "Lambda-Extension-Identifier": ext_id,
                    "Lambda-Extension-Function-Error-Type": "Extension.X",
                },
                b"{}",
                "Extension.InvalidExtensionState",
            ),
            (
                "POST",
                "/exit/error",
                {"Lambda-Extension-Identifier": ext_id},
                b"{}",
                "Extension.MissingHeader",
            ),
        ]
        for method, path, headers, body, error_type in cases:
            status, doc = _call(api, method, base + path, headers, body)
            assert (status, doc.get("errorType")) == (403, error_type), (path, doc)
            assert doc["errorMessage"]
        status, _ = _call(api, "GET", base + "/register")
        assert status == 405
        status, doc = _call(
            api,
            "PUT",
            "/2022-07-01/telemetry",
            {"Lambda-Extension-Identifier": ext_id},
            b'{"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://example.com:80/"}}',
        )
        assert (status, doc["errorType"]) == (400, "ValidationError")
        status, doc = _call(
            api,
            "PUT",
            "/2022-07-01/telemetry",
            {"Lambda-Extension-Identifier": ext_id},
            b"{not json",
        )
        assert (status, doc["errorType"]) == (400, "ValidationError")
        # bodies the parsers choke on are refused as any other bad body (issue 16, item 11)
        for uri in ("http://[::1/", "http://sandbox.localdomain:port/"):
            subscription = {
                "schemaVersion": "2022-12-13",
                "types": ["platform"],
                "destination": {"protocol": "HTTP", "URI": uri},
            }
            status, doc = _call(
                api,
                "PUT",
                "/2022-07-01/telemetry",
                {"Lambda-Extension-Identifier": ext_id},
                json.dumps(subscription).encode(),
            )
            assert (status, doc["errorType"]) == (400, "ValidationError"), uri
        status, doc = _call(
            api,
            "PUT",
            "/2022-07-01/telemetry",
            {"Lambda-Extension-Identifier": ext_id},
            b"[" * 60_000,
        )
        assert (status, doc["errorType"]) == (400, "ValidationError")
        status, doc = _call(
            api, "POST", base + "/register", {"Lambda-Extension-Name": "deep"}, b"[" * 60_000
        )
        assert (status, doc["errorType"]) == (403, "InvalidRequestFormat")
        # the environment still serves its function
        assert r.invoke({}).status == 200


@pytest.mark.skipif(shutil.which("node") is None, reason="no node on this machine")
def test_node_extension(tmp_path: Path) -> None:
    log = tmp_path / "log"
    d = ext_dir(tmp_path, "node-ext")
    with with_exts(d, "handler.echo", env={"EXT_LOG": str(log)}) as r:
        rid = r.invoke({}).json()["requestId"]  # type: ignore[index]
        wait_lines(log, has(f"INVOKE {rid}"))
    lines = wait_lines(log, has("SHUTDOWN spindown"))
    assert lines[0].startswith("node-ext REGISTERED ")


# --- layers and the exec wrapper --------------------------------------------------------------


def _layers(tmp_path: Path) -> tuple[Path, Path]:
    plain = tmp_path / "layer1"
    (plain / "python" / "layerpkg").mkdir(parents=True)
    (plain / "python" / "layerpkg" / "__init__.py").write_text("VALUE = 'from layer1'\n")
    (plain / "bin").mkdir()
    tool = plain / "bin" / "layertool"
    tool.write_text("#!/bin/sh\necho tool\n")
    tool.chmod(0o755)
    (plain / "lib").mkdir()
    zipped = tmp_path / "layer2.zip"
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr(f"python/lib/{pyver}/site-packages/zippkg/__init__.py", "VALUE = 'from zip'\n")
        info = zipfile.ZipInfo("extensions/sh-ext")
        info.external_attr = 0o755 << 16
        zf.writestr(info, SH_EXT.read_bytes())
    return plain, zipped


@pytest.mark.parametrize("runtime", ["pyrie", "awslambdaric"])
def test_layers_reach_the_handler_and_start_their_extensions(tmp_path: Path, runtime: str) -> None:
    plain, zipped = _layers(tmp_path)
    log = tmp_path / "log"
    flags = ["--layer", str(plain), "--layer", str(zipped), "--task-root", str(EXT_FIX)]
    if runtime == "pyrie":
        r = rie(*flags, "--handler", "handler.layers", env={"EXT_LOG": str(log)})
    else:
        r = rie(
            *flags,
            "--",
            sys.executable,
            "-m",
            "awslambdaric",
            "handler.layers",
            env={"EXT_LOG": str(log)},
        )
    with r:
        reply = r.invoke({})
        assert reply.status == 200, reply.body
        doc = reply.json()
        rid = reply.header("X-Amzn-RequestId")
        wait_lines(log, has(f"INVOKE {rid}"))
    assert doc["layerpkg"] == "from layer1"  # type: ignore[index]
    assert doc["zippkg"] == "from zip"  # type: ignore[index]
    assert doc["tool"] == str(plain / "bin" / "layertool")  # type: ignore[index]
    assert str(plain / "lib") in doc["ld"]  # type: ignore[index]
    # the unpacked zip is gone with the emulator
    assert not [
        p
        for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("rie-layers-*")
        if str(zipped) in str(p)
    ]


def test_too_many_layers_is_a_clear_error(tmp_path: Path) -> None:
    layers = [arg for _ in range(6) for arg in ("--layer", str(tmp_path))]
    proc = subprocess.run(
        [sys.executable, "-m", "rie", *layers, "--handler", "a.b"],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "at most 5 layers" in proc.stderr


def test_exec_wrapper_starts_the_runtime(tmp_path: Path) -> None:
    wrapper = tmp_path / "wrapper"
    wrapper.write_text('#!/bin/sh\nexport WRAPPED="yes:$1"\nexec "$@"\n')
    wrapper.chmod(0o755)
    env = {"AWS_LAMBDA_EXEC_WRAPPER": str(wrapper)}
    keys = {"keys": ["WRAPPED"]}
    with rie("--task-root", str(EXT_FIX), "--handler", "handler.env", env=env) as r:
        got = r.invoke(keys).json()
        assert got["WRAPPED"] == f"yes:{sys.executable}"  # type: ignore[index]
    # this project's bootstrap honours it too (and rie does not wrap a custom bootstrap again)
    boot_env = {**env, "PYRIE_PYTHON": sys.executable}
    with rie(
        "--task-root", str(EXT_FIX), "--", str(REPO / "bootstrap"), "handler.env", env=boot_env
    ) as r:
        got = r.invoke(keys).json()
        assert got["WRAPPED"] == f"yes:{sys.executable}"  # type: ignore[index]


# --- the same sh + curl extension under the official Go emulator ----------------------------


@pytest.mark.skipif(
    not os.environ.get("PYRIE_PEER_RIE"), reason="PYRIE_PEER_RIE names no aws-lambda-rie binary"
)
def test_sh_extension_under_the_go_emulator(tmp_path: Path) -> None:
    """The Go emulator starts what is in /opt/extensions (its only place): the test puts the
    extension there for its run and removes it afterwards."""
    peer = os.environ["PYRIE_PEER_RIE"]
    opt = Path("/opt/extensions")
    if not os.access(opt if opt.exists() else opt.parent, os.W_OK):
        pytest.skip("/opt/extensions is not writable here")
    created = not opt.exists()
    opt.mkdir(exist_ok=True)
    target = opt / f"sh-ext-{os.getpid()}"
    shutil.copy(SH_EXT, target)
    target.chmod(0o755)
    log = tmp_path / "log"
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "EXT_LOG": str(log), "LAMBDA_TASK_ROOT": str(EXT_FIX)}
    proc = subprocess.Popen(
        [peer, "--runtime-interface-emulator-address", f"127.0.0.1:{port}", sys.executable, "-m", "awslambdaric", "handler.echo"],
        cwd=EXT_FIX, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                conn.request("POST", "/2015-03-31/functions/function/invocations", body=b"{}")
                body = conn.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        rid = json.loads(body)["requestId"]
        lines = wait_lines(log, has(f"DONE {rid}"))
        assert re.match(rf"{target.name} REGISTERED [0-9a-f-]{{36}}$", lines[0])
        assert lines[1] == f"{target.name} INVOKE {rid}"
    finally:
        proc.terminate()
        proc.wait(10)
        target.unlink()
        if created:
            opt.rmdir()


def test_an_extension_past_the_deadline_times_the_invocation_out(tmp_path: Path) -> None:
    """The caller has its answer; the extension never comes back to `next`: at the deadline the
    invoke phase ends as a timeout (REPORT Status: timeout) and the environment is reset."""
    log = tmp_path / "log"
    gate = tmp_path / "gate"  # never opened
    d = ext_dir(tmp_path, "sh-ext")
    env = {"EXT_LOG": str(log), "EXT_GATE": str(gate)}
    with with_exts(d, "handler.echo", "--timeout", "1", env=env) as r:
        reply = r.invoke({})
        assert reply.status == 200 and reply.header("X-Amz-Function-Error") is None
        rid = reply.json()["requestId"]  # type: ignore[index]
        rep = report(r, rid)
        assert rep["Status"] == "timeout"
        assert float(rep["Duration"].split()[0]) >= 900
        r.wait_for(rf"{rid} Task timed out after 1.00 seconds")
        # reset: the next invocation gets a fresh environment and extension
        second = r.invoke({})
        assert second.status == 200
        wait_lines(log, lambda ls: sum("REGISTERED" in x for x in ls) == 2)
        (tmp_path / f"gate.{second.json()['requestId']}").touch()  # type: ignore[index]
    assert_gone(r)


INTERNAL_WRAPPER = """#!/bin/sh
# an exec wrapper that registers an internal extension before the runtime starts (as in-process
# extensions do), serves it from a background loop, then execs the runtime
api="http://${AWS_LAMBDA_RUNTIME_API}/2020-01-01/extension"
h=$(mktemp)
curl -sS -D "$h" -o /dev/null -X POST "$api/register" -H "Lambda-Extension-Name: inner" -d '{"events":["INVOKE"]}'
id=$(sed -n 's/^[Ll]ambda-[Ee]xtension-[Ii]dentifier: *\\([0-9a-f-]*\\).*/\\1/p' "$h")
echo "inner REGISTERED $id" >> "$EXT_LOG"
curl -sS -X POST "$api/register" -H "Lambda-Extension-Name: inner2" -d '{"events":["SHUTDOWN"]}' >> "$EXT_LOG"
echo >> "$EXT_LOG"
(
    while true; do
        event=$(curl -sS "$api/event/next" -H "Lambda-Extension-Identifier: $id")
        rid=$(printf '%s' "$event" | sed -n 's/.*"requestId": *"\\([^"]*\\)".*/\\1/p')
        echo "inner INVOKE $rid" >> "$EXT_LOG"
    done
) &
exec "$@"
"""


def test_an_internal_extension_registered_by_an_exec_wrapper(tmp_path: Path) -> None:
    log = tmp_path / "log"
    wrapper = tmp_path / "wrapper"
    wrapper.write_text(INTERNAL_WRAPPER)
    wrapper.chmod(0o755)
    env = {"EXT_LOG": str(log), "AWS_LAMBDA_EXEC_WRAPPER": str(wrapper)}
    with rie("--task-root", str(EXT_FIX), "--handler", "handler.echo", env=env) as r:
        rid = r.invoke({}).json()["requestId"]  # type: ignore[index]
        lines = wait_lines(log, has(f"inner INVOKE {rid}"))
    assert lines[0].startswith("inner REGISTERED ")
    # an internal extension cannot take SHUTDOWN
    assert json.loads(lines[1])["errorType"] == "Extension.InvalidEventType"
    assert_gone(r)


def test_each_environment_has_its_own_extensions(tmp_path: Path) -> None:
    """Two provisioned environments, two overlapping invocations: each extension is started
    ahead of any invoke and sees only the invocation of its own environment."""
    log = tmp_path / "log"
    d = ext_dir(tmp_path, "py-ext")
    env = {"EXT_LOG": str(log), "EXT_SUBSCRIBE": "telemetry"}
    flags = ("--provisioned", "2", "--max-concurrency", "2")
    with with_exts(d, "handler.slow", *flags, env=env) as r:
        regs = wait_lines(log, lambda ls: sum('"registered"' in x for x in ls) == 2)
        assert not any('"eventType": "INVOKE"' in x for x in regs)  # both ready before any invoke
        replies: list[object] = []
        threads = [
            threading.Thread(target=lambda: replies.append(r.invoke({"sleep": 1})))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        rids = [reply.header("X-Amzn-RequestId") for reply in replies]  # type: ignore[attr-defined]
        wait_lines(log, lambda ls: sum('"eventType": "INVOKE"' in x for x in ls) == 2)
        wait_lines(log, lambda ls: sum('"platform.report"' in x for x in ls) >= 2)
    invokes = [
        x for x in records(log) if x["kind"] == "event" and x["event"]["eventType"] == "INVOKE"
    ]
    assert sorted(x["event"]["requestId"] for x in invokes) == sorted(rids)
    assert len({x["api"] for x in invokes}) == 2  # one per environment's endpoint
    starts = [ev for ev in telemetry_events(log) if ev["type"] == "platform.initStart"]
    assert [ev["record"]["initializationType"] for ev in starts] == ["provisioned-concurrency"] * 2


def test_max_memory_used_counts_the_extensions(tmp_path: Path) -> None:
    d = ext_dir(tmp_path, "py-ext")
    env = {"EXT_SUBSCRIBE": "none", "EXT_ALLOC_MB": "80"}
    with with_exts(d, "handler.echo", env=env) as r:
        rid = r.invoke({}).json()["requestId"]  # type: ignore[index]
        rep = report(r, rid)
    assert int(rep["Max Memory Used"].split()[0]) >= 80


def test_layers_of_a_config_file_reach_only_their_function(tmp_path: Path) -> None:
    """Two functions from a --config file: the one with the layer imports its package and starts
    the extension in the layer's extensions/ folder; the other has neither."""
    plain, _ = _layers(tmp_path)
    (plain / "extensions").mkdir()
    shutil.copy(SH_EXT, plain / "extensions" / "sh-ext")
    log = tmp_path / "log"
    (tmp_path / "rie.toml").write_text(
        f"""
[functions.with-layer]
handler = "handler.env"
task_root = "{EXT_FIX}"
layers = ["{plain}"]
env = {{ EXT_LOG = "{log}" }}

[functions.without]
handler = "handler.env"
task_root = "{EXT_FIX}"
"""
    )
    keys = {"keys": ["PYTHONPATH"]}
    with rie("--config", str(tmp_path / "rie.toml")) as r:
        with_layer = r.invoke(keys, name="with-layer")
        without = r.invoke(keys, name="without")
        rid = with_layer.header("X-Amzn-RequestId")
        wait_lines(log, has(f"INVOKE {rid}"))
    assert str(plain / "python") in (with_layer.json()["PYTHONPATH"] or "")  # type: ignore[index]
    assert str(plain / "python") not in (without.json()["PYTHONPATH"] or "")  # type: ignore[index]
    assert sum("REGISTERED" in line for line in log.read_text().splitlines()) == 1


def test_concurrent_invocations_of_one_environment_each_get_their_report(tmp_path: Path) -> None:
    """Two invocations at once in one environment (--per-environment-concurrency 2): the
    extension gets both INVOKEs, one after the other, and both REPORTs come once it is done."""
    log = tmp_path / "log"
    gate = tmp_path / "gate"
    d = ext_dir(tmp_path, "sh-ext")
    env = {"EXT_LOG": str(log), "EXT_GATE": str(gate)}
    flags = ("--per-environment-concurrency", "2", "--max-concurrency", "1")
    with with_exts(d, "handler.slow", *flags, env=env) as r:
        replies: list[object] = []
        threads = [
            threading.Thread(target=lambda: replies.append(r.invoke({"sleep": 0.5})))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        first = wait_lines(log, has("INVOKE"))[-1].split()[-1]
        # both callers have their answers while the extension still works on the first INVOKE
        for t in threads:
            t.join(30)
        rids = [reply.header("X-Amzn-RequestId") for reply in replies]  # type: ignore[attr-defined]
        assert len(rids) == 2 and first in rids
        assert "REPORT RequestId" not in r.output()
        (tmp_path / f"gate.{first}").touch()
        lines = wait_lines(log, lambda ls: sum("INVOKE" in x for x in ls) == 2)
        (tmp_path / f"gate.{lines[-1].split()[-1]}").touch()
        for rid in rids:
            report(r, rid)
        out = r.output()
    assert sorted(x.split()[-1] for x in log.read_text().splitlines() if "DONE" in x) == sorted(
        rids
    )
    for rid in rids:
        assert out.count(f"REPORT RequestId: {rid}") == 1


def test_an_extension_that_cannot_start_fails_the_init(tmp_path: Path) -> None:
    d = ext_dir(tmp_path)
    broken = d / "broken-ext"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    with with_exts(d, "handler.echo", env={}) as r:
        reply = r.invoke({})
        assert reply.json()["errorType"] == "Extension.LaunchError"  # type: ignore[index]
        r.wait_for(r"EXTENSION\tName: broken-ext\tState: LaunchError")
        # the runtime never started
        assert "handler echo" not in r.output()
    assert_gone(r)
