"""`rie --external-runtime`: rie starts no runtime; one started here, as a separate process (as a
person would start one under a debugger), connects to the Runtime API rie announces. Real
processes, real sockets: this project's runtime client (`python -m runtime`) and the sh + curl
runtime, killed and started again, a timeout, a failed init, shutdown."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, Reply, RieProcess, rie
from tests.rie.conftest import CURL_SH, PY, report

GUARD_S = 60.0  # how long a state may take to come about before the test fails
ANNOUNCE = r"rie: waiting for an external runtime on (\S+): start it (.*)"

APP = """
import os, time

def echo(event, context):
    print("handling", event.get("n"))
    return {"echo": event, "function": context.function_name,
            "memory": context.memory_limit_in_mb, "own": os.environ.get("OWN")}

def gated(event, context):
    # waits for the test to open the gate (a file): a handler stuck at a breakpoint
    while not os.path.exists(event["gate"]):
        time.sleep(0.01)
    return "late"
"""


class Runtime:
    """A runtime process the test starts itself, with its output kept for waiting on."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        full = {k: v for k, v in os.environ.items() if k != "AWS_LAMBDA_RUNTIME_API"}
        full.update(env)
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=full,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self._lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()

    def output(self) -> str:
        with self._cond:
            return "\n".join(self._lines)

    def wait_for(self, text: str) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: any(text in x for x in self._lines), GUARD_S):
                raise AssertionError(f"{text!r} never printed by the runtime:\n" + self.output())

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(GUARD_S)


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    root = tmp_path / "task"
    root.mkdir()
    (root / "app.py").write_text(APP)
    return root


@pytest.fixture
def runtimes() -> Iterator[list[Runtime]]:
    started: list[Runtime] = []
    yield started
    for runtime in started:
        runtime.kill()


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line)
    return {key: value for key, value in pairs}


def external(tmp_path: Path, *flags: str) -> tuple[RieProcess, Path]:
    env_file = tmp_path / "runtime.env"
    r = rie("--external-runtime-env", str(env_file), "--handler", "app.echo", *flags)
    return r, env_file


def python_runtime(runtimes: list[Runtime], env_file: Path, cwd: Path, **extra: str) -> Runtime:
    runtime = Runtime([PY, "-m", "runtime"], {**read_env_file(env_file), **extra}, cwd)
    runtimes.append(runtime)
    return runtime


def ok(reply: Reply, r: RieProcess, runtime: Runtime | None = None) -> object:
    seen = f"{reply.status} {reply.body!r}\nrie:\n{r.output()}"
    if runtime is not None:
        seen += "\nruntime:\n" + runtime.output()
    assert reply.status == 200 and reply.header("X-Amz-Function-Error") is None, seen
    return reply.json()


def test_a_runtime_started_apart_serves_invocations_and_is_replaced(
    tmp_path: Path, task_root: Path, runtimes: list[Runtime]
) -> None:
    r, env_file = external(tmp_path, "--memory", "256", "--env", "OWN=mine")
    with r:
        m = r.wait_for(ANNOUNCE)
        assert m.group(2) == f"with the variables in {env_file}", m.group(0)
        env = read_env_file(env_file)
        assert env["AWS_LAMBDA_RUNTIME_API"] == m.group(1)
        assert env["_HANDLER"] == "app.echo" and env["OWN"] == "mine"
        assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
        # rie's own environment (which its own runtimes inherit) is not the runtime's business
        assert "PATH" not in env and "TMPDIR" not in env and "LAMBDA_TASK_ROOT" not in env
        assert "AWS_ACCESS_KEY_ID" not in env  # no empty credentials hiding the runtime's own
        assert oct(env_file.stat().st_mode & 0o777) == oct(0o600)

        first = python_runtime(runtimes, env_file, task_root)
        reply = r.invoke({"n": 1}, timeout=GUARD_S)
        assert ok(reply, r, first) == {
            "echo": {"n": 1},
            "function": "test_function",
            "memory": "256",
            "own": "mine",
        }
        request_id = reply.header("X-Amzn-RequestId")
        fields = report(r, request_id)
        assert "Init Duration" in fields, fields["line"]  # the environment's cold start
        assert fields["Max Memory Used"] == "0 MB"  # not rie's process: not measured
        out = r.output()
        assert f"START RequestId: {request_id} Version: $LATEST" in out
        assert f"END RequestId: {request_id}" in out
        first.wait_for("handling 1")  # the runtime's output stays where it runs
        assert "handling 1" not in out

        # a debugger restart: the runtime goes, another comes, the environment waits for it
        first.kill()
        second = python_runtime(runtimes, env_file, task_root)
        reply = r.invoke({"n": 2}, timeout=GUARD_S)
        assert ok(reply, r, second)["echo"] == {"n": 2}  # type: ignore[index]
        second.wait_for("handling 2")
        report(r, reply.header("X-Amzn-RequestId"))
        assert r.proc is not None and r.proc.poll() is None
    assert r.proc is not None and r.proc.returncode == 0, r.output()


def test_an_invocation_waits_for_the_runtime_to_connect(
    tmp_path: Path, task_root: Path, runtimes: list[Runtime]
) -> None:
    r, env_file = external(tmp_path, "--timeout", "60")
    with r:
        replies: list[Reply] = []
        caller = threading.Thread(
            target=lambda: replies.append(r.invoke({"n": 7}, timeout=GUARD_S))
        )
        caller.start()
        runtime = python_runtime(runtimes, env_file, task_root)
        caller.join(GUARD_S)
        assert replies, "no answer:\n" + r.output()
        assert ok(replies[0], r, runtime)["echo"] == {"n": 7}  # type: ignore[index]


def test_a_timeout_answers_the_caller_and_keeps_the_runtime(
    tmp_path: Path, task_root: Path, runtimes: list[Runtime]
) -> None:
    r, env_file = external(tmp_path, "--timeout", "1")
    gate = tmp_path / "gate"
    with r:
        runtime = python_runtime(runtimes, env_file, task_root, _HANDLER="app.gated")
        reply = r.invoke({"gate": str(gate)}, timeout=GUARD_S)
        assert reply.status == 200 and reply.json()["errorType"] == "Sandbox.Timedout", (  # type: ignore[index]
            r.output()
        )
        stuck = reply.header("X-Amzn-RequestId")
        assert report(r, stuck)["Status"] == "timeout"
        assert f"{stuck} Task timed out after 1.00 seconds" in r.output()
        # the runtime is still in the handler: nothing takes the next invocation within its
        # timeout, and it is answered so, without a runtime ever seeing it
        reply = r.invoke({"gate": str(gate)}, timeout=GUARD_S)
        assert reply.json()["errorType"] == "Sandbox.Timedout", r.output()  # type: ignore[index]
        untaken = reply.header("X-Amzn-RequestId")
        r.wait_for(rf"invocation {untaken}: no runtime called next on \S+ within its timeout")
        report(r, untaken)
        # the handler ends: its late answer is refused, and the same runtime goes on
        gate.touch()
        runtime.wait_for("refused the response: 403")
        reply = r.invoke({"gate": str(gate)}, timeout=GUARD_S)
        assert ok(reply, r, runtime) == "late"
        assert runtime.proc.poll() is None  # rie killed nothing


def test_a_runtime_restarted_mid_invocation_is_handed_it_again(
    tmp_path: Path, task_root: Path, runtimes: list[Runtime]
) -> None:
    r, env_file = external(tmp_path, "--timeout", "60")
    gate = tmp_path / "gate"
    with r:
        stuck = python_runtime(runtimes, env_file, task_root, _HANDLER="app.gated")
        replies: list[Reply] = []
        caller = threading.Thread(
            target=lambda: replies.append(r.invoke({"gate": str(gate), "n": 5}, timeout=GUARD_S))
        )
        caller.start()
        r.wait_for(r"START RequestId: ")
        stuck.kill()  # the debugger session is stopped in the handler, and started again
        again = python_runtime(runtimes, env_file, task_root)
        caller.join(GUARD_S)
        assert replies, "no answer:\n" + r.output()
        assert ok(replies[0], r, again)["echo"] == {"gate": str(gate), "n": 5}  # type: ignore[index]


def test_a_failed_init_is_reported_and_the_next_runtime_is_waited_for(
    tmp_path: Path, task_root: Path, runtimes: list[Runtime]
) -> None:
    r, env_file = external(tmp_path, "--timeout", "60")
    with r:
        broken = python_runtime(runtimes, env_file, task_root, _HANDLER="missing.handler")
        r.wait_for(r"INIT_REPORT Init Duration: .*\tPhase: init\tStatus: error")
        broken.proc.wait(GUARD_S)
        good = python_runtime(runtimes, env_file, task_root)
        reply = r.invoke({"n": 3}, timeout=GUARD_S)
        assert ok(reply, r, good)["echo"] == {"n": 3}  # type: ignore[index]
        assert "Init Duration" in report(r, reply.header("X-Amzn-RequestId"))


def test_a_sh_and_curl_runtime_from_the_printed_line(
    tmp_path: Path, task_root: Path, runtimes: list[Runtime]
) -> None:
    with rie("--external-runtime") as r:
        m = r.wait_for(ANNOUNCE)
        words = shlex.split(m.group(2))
        assert words[:2] == ["with:", "env"], m.group(0)
        env = dict(word.split("=", 1) for word in words[2:])
        assert env["AWS_LAMBDA_RUNTIME_API"] == m.group(1)
        assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"  # quoted for a shell
        runtime = Runtime([str(CURL_SH)], env, task_root)
        runtimes.append(runtime)
        reply = r.invoke({"x": 1}, timeout=GUARD_S)
        assert ok(reply, r, runtime) == {"x": 1}
        reply = r.invoke({"mode": "fail"}, timeout=GUARD_S)
        assert reply.header("X-Amz-Function-Error") == "Unhandled", r.output()
        assert reply.json()["errorMessage"] == "sh failed"  # type: ignore[index]
        runtime.kill()
        again = Runtime([str(CURL_SH)], env, task_root)
        runtimes.append(again)
        reply = r.invoke({"x": 2}, timeout=GUARD_S)
        assert ok(reply, r, again) == {"x": 2}


def test_shutdown_leaves_the_runtime_alone(
    tmp_path: Path, task_root: Path, runtimes: list[Runtime]
) -> None:
    r, env_file = external(tmp_path)
    r.start()
    runtime = python_runtime(runtimes, env_file, task_root)
    assert ok(r.invoke({"n": 1}, timeout=GUARD_S), r, runtime)
    assert r.stop() == 0, r.output()
    # its connection is gone: it ends by itself, not by a signal of rie's
    code = runtime.proc.wait(GUARD_S)
    assert code >= 0, (code, runtime.output())


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--external-runtime", "--", "/bin/true"], "give no COMMAND"),
        (["--external-runtime", "--max-concurrency", "2"], "--max-concurrency with"),
        (["--external-runtime", "--watch"], "--watch with"),
        (["--external-runtime-env", "/no/such/dir/x.env"], "no such directory"),
    ],
)
def test_flags_that_cannot_go_with_an_external_runtime(args: list[str], words: str) -> None:
    done = subprocess.run(
        [PY, "-m", "rie", *args], capture_output=True, text=True, cwd=REPO, timeout=GUARD_S
    )
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr
    assert re.search("Traceback", done.stderr) is None
