"""Lambda's resource model, end to end: memory that ends the runtime, CPU by memory size, /tmp of
the ephemeral size, read-only code, 1,024 files and threads, and `--sandbox off` as before.

Real rie processes, real runtimes (this project's, awslambdaric, a sh script). What this machine
cannot enforce (no root, no cgroups, no mount namespaces) is skipped, saying why.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rie.sandbox import cgroups, namespace, supervisor
from rie.sandbox.limits import quotas
from rie.sandbox.policy import capabilities
from rie.sandbox.supervisor import MemoryCgroup
from rie.testing import InvokeResult, LambdaFunction, rie_arguments

HERE = Path(__file__).resolve().parent
FN = HERE / "fixtures" / "fn"
OOM_INIT = HERE / "fixtures" / "oom_init"
OOM_SH = HERE / "fixtures" / "oom.sh"

_caps = capabilities()
needs_memory = pytest.mark.skipif(
    _caps.memory is not None or not _caps.oom_counted,
    reason=f"memory limits cannot be enforced here: {_caps.memory or 'no OOM counter'}",
)
needs_cpu = pytest.mark.skipif(
    _caps.cpu is not None, reason=f"CPU cannot be limited here: {_caps.cpu}"
)
needs_pids = pytest.mark.skipif(
    _caps.pids is not None, reason=f"processes cannot be limited here: {_caps.pids}"
)
needs_fs = pytest.mark.skipif(
    namespace.capability() is not None,
    reason=f"no private /tmp or read-only code here: {namespace.capability()}",
)


def start(
    handler: str = "res.handler",
    memory: int = 128,
    *extra: str,
    task_root: Path = FN,
    command: tuple[str, ...] = (),
) -> LambdaFunction:
    args = rie_arguments(
        handler=handler,
        task_root=task_root,
        memory=memory,
        timeout=60,
        command=command,
        args=["--sandbox", "lambda", *extra],
    )
    return LambdaFunction(args).start()


@pytest.fixture
def small() -> Iterator[LambdaFunction]:
    fn = start()
    try:
        yield fn
    finally:
        fn.stop()


def report_fields(log: str) -> dict[str, str]:
    line = next(x for x in log.splitlines() if x.startswith("REPORT "))
    fields = {}
    for part in line.split("\t")[1:]:
        key, _, value = part.partition(": ")
        if key:
            fields[key] = value
    return fields


def assert_out_of_memory(result: InvokeResult, fn: LambdaFunction, memory: int = 128) -> None:
    rid = result.request_id
    message = f"RequestId: {rid} Error: Runtime exited with error: signal: killed"
    assert result.status == 200
    assert result.function_error == "Unhandled"
    assert result.payload == {"errorType": "Runtime.OutOfMemory", "errorMessage": message}
    lines = result.log.splitlines()
    at = lines.index(message)
    assert lines[at + 1] == "Runtime.OutOfMemory"
    assert lines[at + 2] == f"END RequestId: {rid}"
    fields = report_fields(result.log)
    assert fields["Memory Size"] == f"{memory} MB"
    assert fields["Max Memory Used"] == f"{memory} MB"
    assert (fields["Status"], fields["Error Type"]) == ("error", "Runtime.OutOfMemory")
    fn.wait_for_log(re.escape(f"REPORT RequestId: {rid}"))


@needs_memory
def test_allocation_past_the_memory_size_is_runtime_out_of_memory_and_the_next_invoke_works(
    small: LambdaFunction,
) -> None:
    assert small.invoke({"kind": "alloc", "mb": 40}).payload == {"allocated_mb": 40}
    assert_out_of_memory(small.invoke({"kind": "alloc", "mb": 300}), small)
    again = small.invoke({"kind": "alloc", "mb": 40})
    assert again.payload == {"allocated_mb": 40} and again.function_error is None
    assert "Init Duration" in report_fields(again.log), "the environment was reset"
    with urllib.request.urlopen(small.endpoint_url + "/metrics", timeout=10) as reply:
        metrics = reply.read().decode()
    assert re.search(r"^rie_errors_total(\{[^}]*\})? 1(\.0)?$", metrics, re.M), metrics


@needs_memory
def test_awslambdaric_out_of_memory() -> None:
    fn = start("", 128, command=(sys.executable, "-m", "awslambdaric", "res.handler"))
    try:
        assert_out_of_memory(fn.invoke({"kind": "alloc", "mb": 300}), fn)
        assert fn.invoke({"kind": "alloc", "mb": 10}).payload == {"allocated_mb": 10}
    finally:
        fn.stop()


@needs_memory
def test_sh_runtime_out_of_memory() -> None:
    fn = start("", 128, command=(str(OOM_SH),))
    try:
        assert fn.invoke({"mb": 1}).payload == {"mb": 1}
        assert_out_of_memory(fn.invoke({"mb": 300}), fn)
        assert fn.invoke({"hello": 1}).payload == {"hello": 1}
    finally:
        fn.stop()


@needs_memory
def test_out_of_memory_during_init_fails_the_init() -> None:
    fn = start("big_init.handler", 128, task_root=OOM_INIT)
    try:
        result = fn.invoke({})
        assert result.function_error == "Unhandled"
        assert isinstance(result.payload, dict)
        assert result.payload["errorType"] == "Runtime.OutOfMemory"
        fn.wait_for_log(r"INIT_REPORT .*Status: error\tError Type: Runtime.OutOfMemory")
    finally:
        fn.stop()


def _hungry_extension(tmp_path: Path, *env: str) -> LambdaFunction:
    """A 128 MB function whose extension eats 400 MB once (HUNGRY_AT: on an INVOKE or in init)."""
    d = tmp_path / "extensions"
    d.mkdir()
    text = (HERE / "fixtures" / "extensions" / "hungry.py").read_text()
    (d / "hungry").write_text(f"#!{sys.executable}\n{text}")
    (d / "hungry").chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    flags = ["--extensions-dir", str(d), "--env", f"HUNGRY_DIR={state}"]
    for item in env:
        flags += ["--env", item]
    return start("res.handler", 128, *flags)


@needs_memory
def test_an_extension_shares_the_memory_size_its_oom_is_runtime_out_of_memory(
    tmp_path: Path,
) -> None:
    fn = _hungry_extension(tmp_path)
    try:
        # the runtime sleeps; the extension, woken by the same INVOKE, runs the sandbox out
        assert_out_of_memory(fn.invoke({"kind": "sleep", "s": 30}), fn)
        again = fn.invoke({"kind": "alloc", "mb": 10})
        assert again.payload == {"allocated_mb": 10} and again.function_error is None
        assert "Init Duration" in report_fields(again.log), "the environment was reset"
    finally:
        fn.stop()


@needs_memory
def test_an_extension_out_of_memory_in_init_fails_the_init(tmp_path: Path) -> None:
    fn = _hungry_extension(tmp_path, "HUNGRY_AT=init")
    try:
        result = fn.invoke({})
        assert result.function_error == "Unhandled"
        assert isinstance(result.payload, dict)
        assert result.payload["errorType"] == "Runtime.OutOfMemory", result.payload
        fn.wait_for_log(r"INIT_REPORT .*Status: error\tError Type: Runtime.OutOfMemory")
        assert fn.invoke({"kind": "alloc", "mb": 10}).payload == {"allocated_mb": 10}
    finally:
        fn.stop()


@needs_memory
def test_a_sigkill_that_is_not_an_oom_stays_runtime_exit_error(small: LambdaFunction) -> None:
    # the same signal as the OOM killer's, from someone else: the cgroup counted no OOM kill
    small.invoke({})
    results: list[InvokeResult] = []
    thread = threading.Thread(
        target=lambda: results.append(small.invoke({"kind": "sleep", "s": 30}))
    )
    thread.start()
    small.wait_for_log("sleeping", timeout=30)
    for pid in _runtime_pids(small):
        os.kill(pid, signal.SIGKILL)
    thread.join(60)
    assert isinstance(results[0].payload, dict)
    assert results[0].payload["errorType"] == "Runtime.ExitError"


def _runtime_pids(fn: LambdaFunction) -> list[int]:
    """The processes in the memory cgroups of fn's runtimes (an environment's group holds one
    group per process)."""
    base = MemoryCgroup.base()
    assert base is not None and fn._proc is not None
    found = []
    for procs in glob.glob(f"{base}/pyrie-{fn._proc.pid}-*/runtime/cgroup.procs"):
        found += [int(p) for p in Path(procs).read_text().split()]
    assert found, "no runtime found"
    return found


@needs_cpu
@pytest.mark.skipif(
    "memory" not in cgroups.own_paths(), reason="v1 hierarchies only (v2 has no `tasks` file)"
)
def test_a_runtime_joins_its_memory_cpu_and_pids_groups_itself_before_exec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # between fork and exec, through the `tasks` files MemoryCgroup.join_files names (moving the
    # one thread the child has), not through rie adopting it afterwards
    monkeypatch.setattr(supervisor, "_preexec_ok", True)
    group = MemoryCgroup.create_shared(
        f"pyrie-join-{os.getpid()}", quotas(512, os.cpu_count() or 1)
    )
    assert group is not None
    try:
        files = group.join_files
        assert len(files) == len(group.procs_files) == 3  # memory, cpu and pids
        assert all(f.endswith("/tasks") for f in files), files
        setup = supervisor._child_setup(files)
        out = subprocess.run(
            ["cat", "/proc/self/cgroup"], preexec_fn=setup, capture_output=True, check=True
        ).stdout.decode()
        name = os.path.basename(group.path)
        joined = [line for line in out.splitlines() if line.endswith("/" + name)]
        assert len(joined) == len(files), out
    finally:
        group.remove()


@needs_cpu
def test_cpu_follows_memory_at_128_mb_a_handler_gets_128_1769ths_of_a_cpu() -> None:
    # ~50 ms of CPU work. Lambda gives a function memory/1,769 of a vCPU, so at 128 MB the work
    # takes 1,769/128 = 13.8 times its own CPU time in wall time, and at 1,769 MB about its CPU
    # time. Each run is measured against its own CPU time: what the same loop costs in CPU varies
    # between runs (caches, clock speed, neighbours), the share of a CPU the quota grants does not.
    # This machine's CPUs may be busy with other work, which a 7.2 % share never notices and a
    # whole CPU only a little, so 1,769 MB only has to stay far from 128 MB's slowdown.
    work = {"kind": "burn", "n": 1_000_000}
    runs: dict[int, list[dict[str, float]]] = {}
    for memory in (1769, 128):
        fn = start("res.handler", memory)
        try:
            fn.invoke({})  # init and warm-up
            runs[memory] = [fn.invoke(work).payload for _ in range(3)]  # type: ignore[misc]
        finally:
            fn.stop()
    slowdown = {
        memory: [run["wall_ms"] / run["cpu_ms"] for run in done] for memory, done in runs.items()
    }
    at_128 = statistics.median(slowdown[128])
    assert 13.8 * 0.75 <= at_128 <= 13.8 * 1.25, (at_128, runs)
    assert min(slowdown[1769]) < 13.8 / 3, (slowdown[1769], runs)


def test_open_files_limit_is_1024() -> None:
    fn = start("res.handler", 256)
    try:
        assert fn.invoke({"kind": "limits"}).payload == {"nofile": [1024, 1024]}
    finally:
        fn.stop()


@needs_pids
def test_processes_and_threads_are_limited_to_1024() -> None:
    fn = start("res.handler", 1024)
    try:
        result = fn.invoke({"kind": "threads", "n": 1100}).payload
        assert isinstance(result, dict)
        assert result["error"] and 1000 <= result["started"] < 1024, result
        assert fn.invoke({"kind": "threads", "n": 10}).payload == {"started": 10, "error": None}
    finally:
        fn.stop()


@needs_fs
def test_tmp_is_private_sized_by_ephemeral_storage_and_the_code_is_read_only(
    tmp_path: Path,
) -> None:
    # the task root under the machine's /tmp, as pytest's tmp_path is: it stays reachable
    task = tmp_path / "task"
    task.mkdir()
    (task / "res.py").write_text((FN / "res.py").read_text())
    had_var_task = Path("/var/task").exists()
    fn = start("res.handler", 1024, task_root=task)
    try:
        real = str(task / "via-real-path")
        first = fn.invoke({"kind": "fs", "marker": "a", "write_to": [real]}).payload
        assert isinstance(first, dict)
        assert first["tmpdir"] == "/tmp"
        # the code at Lambda's path, read-only there and at its own path
        assert first["task_root"] == first["cwd"] == "/var/task"
        assert "res.py" in first["code_files"]
        assert first["code"] == first[real] == errno.EROFS
        # the machine's /var is still there around /var/task
        assert {"lib", "log", "tmp", "task"} <= set(first["var"])
        assert Path("/var/task").exists() == had_var_task, "the machine's /var is not touched"
        assert first["tmp_write"] == "ok"
        assert "marker-a" not in " ".join(p.name for p in Path("/tmp").iterdir())
        full = fn.invoke({"kind": "fs", "mb": 600}).payload
        assert isinstance(full, dict) and full["tmp_write"] == errno.ENOSPC
        again = fn.invoke({"kind": "fs"}).payload
        assert isinstance(again, dict)
        assert {"marker-a", "fill"} <= set(again["tmp"]), "the environment lives on"
        assert not (task / "written").exists()
    finally:
        fn.stop()


def test_sandbox_off_is_todays_behaviour(tmp_path: Path) -> None:
    (tmp_path / "res.py").write_text((FN / "res.py").read_text())
    fn = start("res.handler", 128, "--sandbox", "off", task_root=tmp_path)
    try:
        assert fn.wait_for_log(r"rie: sandbox of \S+: off \(--sandbox off\)")
        nofile = fn.invoke({"kind": "limits"}).payload
        import resource

        assert nofile == {"nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE))}
        fs = fn.invoke({"kind": "fs"}).payload
        assert isinstance(fs, dict) and fs["tmpdir"] != "/tmp" and fs["code"] == "written"
    finally:
        fn.stop()


def test_start_up_line_says_what_is_enforced() -> None:
    fn = start("res.handler", 512)
    try:
        line = fn.wait_for_log(r"rie: sandbox of \S+ \(lambda\): .*").group(0)
        for part in ("memory 512 MB", "cpu 0.29 of", "open files 1024: on", "/tmp 512 MB"):
            assert part in line, line
    finally:
        fn.stop()


@needs_memory
def test_telemetry_says_runtime_out_of_memory_too(tmp_path: Path) -> None:
    from tests.rie.test_extensions import ext_dir, telemetry_events, wait_lines

    d = ext_dir(tmp_path, "py-ext")
    # the extension's record goes outside /tmp, which the sandbox makes the environment's own
    with tempfile.TemporaryDirectory(dir="/dev/shm") as shared:
        log = Path(shared) / "log"
        fn = start("res.handler", 128, "--extensions-dir", str(d), "--env", f"EXT_LOG={log}")
        try:
            result = fn.invoke({"kind": "alloc", "mb": 300})
            assert_out_of_memory(result, fn)
            wait_lines(log, lambda ls: any('"platform.report"' in x for x in ls))
            events = telemetry_events(log)
        finally:
            fn.stop()
    done = next(ev["record"] for ev in events if ev["type"] == "platform.runtimeDone")
    report = next(ev["record"] for ev in events if ev["type"] == "platform.report")
    # a runtime that exits is a platform failure to telemetry, as any Runtime.ExitError here
    assert (done["status"], done.get("errorType")) == ("failure", "Runtime.OutOfMemory")
    assert (report["status"], report.get("errorType")) == ("failure", "Runtime.OutOfMemory")


@pytest.mark.skipif(
    namespace.mode() != "root", reason="the environment's /tmp is a mount of rie's only as root"
)
def test_the_tmp_of_an_emulator_killed_outright_is_swept_by_the_next() -> None:
    fn = start("res.handler", 1024)
    assert fn._proc is not None
    pid = fn._proc.pid
    fn.invoke({"kind": "fs", "marker": "left"})
    mine = [line.split()[1] for line in _mounts() if f"/rie-{pid}-" in line.split()[1]]
    assert len(mine) == 1, "each environment's /tmp is a tmpfs mount"
    os.kill(pid, signal.SIGKILL)
    fn._proc.wait(30)
    assert mine[0] in [line.split()[1] for line in _mounts()], "left behind"
    fn.stop()
    nxt = start("res.handler", 1024)  # its start-up sweeps what a dead emulator left
    try:
        assert mine[0] not in [line.split()[1] for line in _mounts()]
        assert not Path(mine[0]).exists()
    finally:
        nxt.stop()


def _mounts() -> list[str]:
    return Path("/proc/self/mounts").read_text().splitlines()
