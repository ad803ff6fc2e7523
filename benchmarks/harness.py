"""What every scenario shares: the variants under test, starting and killing their processes,
a cheap load generator, /proc readings, interleaving and statistics.

The load generator is a blocking raw-socket HTTP/1.1 keep-alive client in the benchmark process
(one invoke at a time), or for concurrency an asyncio (uvloop) client with one keep-alive
connection per caller. Every process started here runs in its own session and is killed, with its
whole process group, on exit (`atexit` and SIGTERM/SIGINT).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rie.settings.config import RUNTIME_ENTRY

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
HANDLERS = BENCH_DIR / "handlers"
FLOOR_RUNTIME = BENCH_DIR / "floor_runtime.py"
PYTHON = sys.executable
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
LISTEN_RE = re.compile(rb"Invoke API listening on http://([\d.]+):(\d+)")
TIME_LIMIT_S = 60.0  # no single wait in a scenario runs longer than this

# --------------------------------------------------------------------------------------------
# process hygiene

_children: list[subprocess.Popen[bytes]] = []


def spawn(cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Popen in a new session (so the whole group can be killed) and remember it for clean-up."""
    proc: subprocess.Popen[bytes] = subprocess.Popen(list(cmd), start_new_session=True, **kwargs)
    _children.append(proc)
    return proc


def kill(proc: subprocess.Popen[bytes], graceful: bool = False) -> None:
    """Kill `proc`'s process group (SIGTERM first when `graceful`), and every descendant it left."""
    if proc.poll() is None and graceful:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
    stragglers = descendants(proc.pid) if proc.poll() is None else []
    for pid in [proc.pid, *stragglers]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    if proc in _children:
        _children.remove(proc)


def kill_all() -> None:
    for proc in list(_children):
        kill(proc)


def _on_signal(signum: int, frame: object) -> None:
    kill_all()
    sys.exit(128 + signum)


def install_cleanup() -> None:
    atexit.register(kill_all)
    signal.signal(signal.SIGTERM, _on_signal)


# --------------------------------------------------------------------------------------------
# /proc readings


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rss_kib(pid: int) -> int:
    """Resident set size of one process, KiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ns(pid: int) -> int:
    """CPU time of all the threads of one process, ns (from schedstat: exact, not clock ticks)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except OSError:
        pass
    return total


# --------------------------------------------------------------------------------------------
# the variants


@dataclass(frozen=True)
class Client:
    """A runtime client under test: how to start it with a handler."""

    name: str
    argv: Callable[[str], list[str]]
    module: str | None  # what must be importable for it to run (None: always there)
    import_probe: (
        str  # what `python -c` imports to time its imports alone (its `__main__` may run on import)
    )

    def missing(self) -> str | None:
        if self.module is None:
            return None
        try:
            if importlib.util.find_spec(self.module) is None:
                return f"`{self.module}` is not importable"
        except ModuleNotFoundError:
            return f"`{self.module}` is not importable"
        return None


CLIENTS: dict[str, Client] = {
    # started as rie and `bootstrap` start it (`-c`: `-m` would add runpy's imports)
    "runtime": Client(
        "runtime", lambda h: [PYTHON, "-c", RUNTIME_ENTRY, h], "runtime.loop", "import runtime.loop"
    ),
    "awslambdaric": Client(
        "awslambdaric",
        lambda h: [PYTHON, "-m", "awslambdaric", h],
        "awslambdaric.__main__",
        "import awslambdaric.__main__",
    ),
    "floor": Client(
        "floor", lambda h: [PYTHON, str(FLOOR_RUNTIME), h], None, "import json, socket, time"
    ),
}


@dataclass
class Emulator:
    """One emulator process (rie, the floor emulator or the Go emulator) with one runtime client."""

    kind: str  # "rie" | "floor" | "go"
    client: str
    handler: str = "noop.handler"
    max_concurrency: int | None = None
    peer_rie: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"
    port: int = 0
    log: Any = None
    started_ns: int = 0
    listening_ns: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()  # more rie flags (e.g. the HTTP front's)
    task_root: Path = HANDLERS
    # the source tree rie and runtime are imported from (`-m` and `-c` put the working directory
    # first on sys.path): another checkout measures the code before a change in the same run
    tree: Path = REPO

    @property
    def label(self) -> str:
        return f"{self.kind}+{self.client}"

    def command(self) -> list[str]:
        client_cmd = CLIENTS[self.client].argv(self.handler)
        if self.kind == "go":
            assert self.peer_rie is not None
            self.port = free_port()
            return [
                self.peer_rie,
                "--runtime-interface-emulator-address",
                f"127.0.0.1:{self.port}",
                "--runtime-api-address",
                f"127.0.0.1:{free_port()}",
                *client_cmd,
            ]
        module = "rie" if self.kind == "rie" else "benchmarks.floor_server"
        cmd = [
            PYTHON,
            "-m",
            module,
            "--runtime-interface-emulator-address",
            "127.0.0.1:0",
            "--runtime-api-address",
            "127.0.0.1:0",
            "--task-root",
            str(self.task_root),
            "--handler",
            self.handler,
        ]
        if self.max_concurrency is not None:
            cmd += ["--max-concurrency", str(self.max_concurrency)]
        return [*cmd, *self.extra_args, "--", *client_cmd]

    def start(self, pipe: bool = False, timeout: float = 30.0) -> Emulator:
        """Start and wait until the Invoke API listens. `pipe`: read stdout through a pipe (cold start
        timing; the caller must not let it fill), else into a temporary file (no reader needed)."""
        env = dict(os.environ)
        env.pop("AWS_LAMBDA_RUNTIME_API", None)
        env.update(_HANDLER=self.handler, LAMBDA_TASK_ROOT=str(self.task_root), **self.extra_env)
        if self.tree != REPO:  # the runtimes too (rie starts them in the task root)
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(self.tree), env.get("PYTHONPATH")])
            )
        cmd = self.command()
        cwd = str(self.task_root) if self.kind == "go" else str(self.tree)
        if pipe:
            out: Any = subprocess.PIPE
        else:
            self.log = tempfile.TemporaryFile()  # noqa: SIM115  (lives as long as the process)
            out = self.log
        self.started_ns = time.perf_counter_ns()
        self.proc = spawn(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        if self.kind == "go":
            while not _connectable(self.port):
                self._check_alive(deadline)
                time.sleep(0.0005)
        elif pipe:
            assert self.proc.stdout is not None
            fd, seen = self.proc.stdout.fileno(), b""
            while not (m := LISTEN_RE.search(seen)):
                self._check_alive(deadline)
                if select.select([fd], [], [], 0.05)[0]:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        self._check_alive(0)
                    seen += chunk
            self.port = int(m.group(2))
        else:
            while not (m := LISTEN_RE.search(self._log_text())):
                self._check_alive(deadline)
                time.sleep(0.005)
            self.port = int(m.group(2))
        self.listening_ns = time.perf_counter_ns()
        return self

    def _log_text(self) -> bytes:
        if self.log is None:
            return b""
        self.log.seek(0)
        return bytes(self.log.read())

    def _check_alive(self, deadline: float) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None or time.monotonic() > deadline:
            text = self._log_text().decode(errors="replace")[-2000:]
            self.stop()
            raise RuntimeError(f"{self.label} did not start (exit {self.proc.returncode}):\n{text}")

    def stop(self) -> None:
        if self.proc is not None:
            # as a user stops it (SIGTERM): an emulator cleans up its environments on the way out
            kill(self.proc, graceful=True)
        if self.log is not None:
            self.log.close()
            self.log = None

    def runtime_pids(self) -> list[int]:
        assert self.proc is not None
        return descendants(self.proc.pid)


def compile_sources() -> str | None:
    """Byte-compile rie, runtime and the benchmarks, as a regular install has them: with an
    editable install and PYTHONDONTWRITEBYTECODE set, every start would compile them from source
    (40-60 ms of rie's start-up here) and the cold-start figures would measure the compiler."""
    import compileall

    ok = all(
        compileall.compile_dir(str(REPO / name), quiet=2)
        for name in ("rie", "runtime", "benchmarks")
    )
    if not ok:
        return "some sources could not be byte-compiled: their start-up figures include compiling"
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return (
            "PYTHONDONTWRITEBYTECODE is set: rie, runtime and benchmarks were byte-compiled first "
            "(as an install would), so that start-up figures do not include compiling them"
        )
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _connectable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.connect(("127.0.0.1", port))
            return True
        except OSError:
            return False


def peer_rie_problem(path: str | None) -> str | None:
    if not path:
        return "the official Go emulator was not given (pass --peer-rie PATH to its aws-lambda-rie binary)"
    found = shutil.which(path) or (path if os.access(path, os.X_OK) else None)
    if not found:
        return f"--peer-rie {path}: not an executable file"
    return None


# --------------------------------------------------------------------------------------------
# the load generator


class InvokeClient:
    """A blocking HTTP/1.1 keep-alive client for the Invoke API: one socket, no framework."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None
        self.buf = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = sock, b""
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def invoke(self, body: bytes, path: str = INVOKE_PATH) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        for attempt in (0, 1):
            sock = self.sock or self._connect()
            try:
                if len(body) < 65536:
                    sock.sendall(head + body)
                else:
                    sock.sendall(head)
                    sock.sendall(body)
                return self._read()
            except (ConnectionError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _recv(self) -> bytes:
        assert self.sock is not None
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionError("connection closed")
        return chunk

    def _read(self) -> tuple[int, bytes]:
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf += self._recv()
        lines = buf[:end].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        buf = buf[end + 4 :]
        close = headers.get(b"connection", b"").lower() == b"close"
        if b"content-length" in headers:
            need = int(headers[b"content-length"])
            parts, have = [buf], len(buf)
            while have < need:
                chunk = self._recv()
                parts.append(chunk)
                have += len(chunk)
            buf = b"".join(parts)
            body, self.buf = buf[:need], buf[need:]
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            out = []
            while True:
                while (eol := buf.find(b"\r\n")) < 0:
                    buf += self._recv()
                size = int(buf[:eol].split(b";")[0], 16)
                buf = buf[eol + 2 :]
                while len(buf) < size + 2:
                    buf += self._recv()
                if size == 0:
                    break
                out.append(buf[:size])
                buf = buf[size + 2 :]
            body, self.buf = b"".join(out), buf[2:]
        else:
            parts = [buf]
            with contextlib.suppress(ConnectionError):
                while True:
                    parts.append(self._recv())
            body, close = b"".join(parts), True
        if close:
            self.close()
        return status, body


def timed_invokes(
    client: InvokeClient,
    count: int,
    body: bytes,
    budget_s: float = TIME_LIMIT_S,
    path: str = INVOKE_PATH,
) -> list[int]:
    """`count` invokes (POSTs to `path`) one after the other (bounded by `budget_s`); each round
    trip in ns."""
    out = []
    stop = time.perf_counter_ns() + int(budget_s * 1e9)
    clock = time.perf_counter_ns
    for _ in range(count):
        t0 = clock()
        status, reply = client.invoke(body, path)
        t1 = clock()
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {reply[:300]!r}")
        out.append(t1 - t0)
        if t1 > stop:
            break
    return out


# --------------------------------------------------------------------------------------------
# statistics


def percentile(samples: Sequence[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize_us(samples_ns: Sequence[int]) -> dict[str, float]:
    us = [s / 1000 for s in samples_ns]
    if not us:
        return {"n": 0, "median_us": 0.0, "p99_us": 0.0, "mean_us": 0.0, "min_us": 0.0}
    return {
        "n": len(us),
        "median_us": round(statistics.median(us), 1),
        "p99_us": round(percentile(us, 0.99), 1),
        "mean_us": round(statistics.fmean(us), 1),
        "min_us": round(min(us), 1),
    }


def summarize_ms(samples_ns: Sequence[int]) -> dict[str, float]:
    ms = [s / 1e6 for s in samples_ns]
    if not ms:
        return {"n": 0, "median_ms": 0.0, "p99_ms": 0.0, "min_ms": 0.0}
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "min_ms": round(min(ms), 2),
    }


def pair_ratios(rounds_a: Sequence[float], rounds_b: Sequence[float]) -> dict[str, Any]:
    """Round-by-round ratios a/b of two interleaved variants (each value: that round's median)."""
    ratios = [a / b for a, b in zip(rounds_a, rounds_b, strict=False) if b > 0]
    if not ratios:
        return {"median": 0.0, "min": 0.0, "max": 0.0, "rounds": 0}
    return {
        "median": round(statistics.median(ratios), 3),
        "min": round(min(ratios), 3),
        "max": round(max(ratios), 3),
        "rounds": len(ratios),
    }


def interleave(
    runners: dict[str, Callable[[], list[int]]], rounds: int, budget_s: float
) -> tuple[dict[str, list[int]], dict[str, list[float]]]:
    """Run every variant's batch once per round, rotating the order (A B C, B C A, ...).
    Returns every sample per variant and each round's median per variant."""
    samples: dict[str, list[int]] = {name: [] for name in runners}
    medians: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    stop = time.monotonic() + budget_s
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            batch = runners[name]()
            samples[name].extend(batch)
            medians[name].append(statistics.median(batch) if batch else 0.0)
        if time.monotonic() > stop:
            break
    return samples, medians
