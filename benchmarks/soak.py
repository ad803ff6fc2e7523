"""`python -m benchmarks.soak [--invokes N] [--callers C]`: the fault soak.

Several callers invoke one emulator at once with a seeded mix of endings (success, an exception,
a timeout with `--timeout 1`, `os._exit`, SIGKILL of the runtime itself; some invocations also
leave a `setsid` child behind), with `--max-concurrency` equal to the number of callers, so no
invoke may be throttled. Then it checks and prints: every invoke answered exactly once with the
kind its event asked for, no 429, and after SIGTERM no process the functions started, no TMPDIR
and no memory cgroup left; then the same after a `kill -9` of a second emulator and the start of a
third. Meanwhile, under that load, rounds of 10 parallel cold starts of a strict sh + curl
runtime (AWS's tutorial runtime, which exits on any failed call) run against emulators of their
own: every one of those invocations must succeed. Exit status 0 when every check holds. Figures:
benchmarks/SOAK.md.

The pure pieces (the mix, the classification of a reply, finding leftovers) are shared with the
test suite's short soak (tests/scaling/test_fault_soak.py).
"""

from __future__ import annotations

import argparse
import collections
import glob
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HANDLERS = HERE / "handlers"
KINDS = {"ok": 70, "raise": 10, "timeout": 3, "exit": 8, "sigkill": 9}  # weights, in percent
SPAWN_SHARE = 0.1
MARKER = "PYRIE_SOAK_MARKER"
STRICT_SH = HANDLERS / "strict_curl_bootstrap.sh"
COLD_PARALLEL = 10  # cold starts per round
FAULT_FUNCTION = ["--task-root", str(HANDLERS), "--handler", "faults.handler"]
PATH = "/2015-03-31/functions/function/invocations"
_LISTEN = re.compile(rb"Invoke API listening on http://([\d.]+):(\d+)")


def mix(n: int, seed: int = 11) -> list[dict[str, object]]:
    """`n` events, seeded: each says how its invocation ends."""
    rng = random.Random(seed)
    kinds = rng.choices(list(KINDS), weights=list(KINDS.values()), k=n)
    return [
        {"n": i, "kind": kind, "spawn": rng.random() < SPAWN_SHARE} for i, kind in enumerate(kinds)
    ]


def classify(status: int, function_error: str | None, body: bytes) -> str:
    """The kind of ending a reply shows: one of KINDS, `throttled`, or `other: ...`."""
    if status == 429:
        return "throttled"
    if status != 200:
        return f"other: {status} {body[:200]!r}"
    if function_error is None:
        return "ok"
    try:
        error = json.loads(body)
    except ValueError:
        return f"other: {body[:200]!r}"
    error_type, message = error.get("errorType"), str(error.get("errorMessage"))
    if error_type == "ValueError":
        return "raise"
    if error_type == "Sandbox.Timedout":
        return "timeout"
    if error_type == "Runtime.ExitError" and "exit status 3" in message:
        return "exit"
    if error_type == "Runtime.ExitError" and "signal: killed" in message:
        return "sigkill"
    return f"other: {body[:200]!r}"


def leftover_paths(rie_pid: int) -> list[str]:
    """The TMPDIRs and memory cgroups emulator `rie_pid` made that still exist."""
    found = glob.glob(os.path.join(tempfile.gettempdir(), f"rie-{rie_pid}-*"))
    found += glob.glob(f"/sys/fs/cgroup/**/pyrie-{rie_pid}-*", recursive=True)
    return found


def marked_processes(marker: str) -> list[int]:
    """Living processes (not zombies) whose environment carries `MARKER=marker`."""
    want = f"{MARKER}={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            if stat[stat.rindex(b")") + 2 :].startswith(b"Z"):
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                if want in f.read().split(b"\0"):
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def wait_for(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@dataclass
class Emulator:
    """`python -m rie` around the fault handler, its output collected."""

    flags: list[str]
    function: list[str] = field(default_factory=lambda: list(FAULT_FUNCTION))
    env: dict[str, str] = field(default_factory=dict)
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    output: bytearray = field(default_factory=bytearray)

    def start(self) -> Emulator:
        env = {**os.environ, **self.env, MARKER: self.marker}
        env.pop("AWS_LAMBDA_RUNTIME_API", None)
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "rie",
                "--runtime-interface-emulator-address", "127.0.0.1:0",
                "--runtime-api-address", "127.0.0.1:0",
                *self.flags, *self.function,
            ],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        listening = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output += line
                m = _LISTEN.search(line)
                if m:
                    self.port = int(m.group(2))
                    listening.set()
            listening.set()

        threading.Thread(target=read, daemon=True).start()
        if not listening.wait(30) or not self.port:
            raise RuntimeError("rie did not start:\n" + self.output.decode(errors="replace"))
        return self

    def invoke(self, event: dict[str, object]) -> tuple[str, str | None]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("POST", PATH, body=json.dumps(event))
            resp = conn.getresponse()
            body = resp.read()
            kind = classify(resp.status, resp.getheader("X-Amz-Function-Error"), body)
            if kind == "ok" and json.loads(body) != {"n": event["n"]}:
                kind = f"other: wrong answer {body[:200]!r}"
            return kind, resp.getheader("X-Amzn-RequestId")
        finally:
            conn.close()

    def reports(self) -> collections.Counter[str]:
        text = self.output.decode(errors="replace")
        return collections.Counter(re.findall(r"^REPORT RequestId: (\S+)", text, re.M))

    def stop(self, sig: int = signal.SIGTERM) -> float:
        """Signal rie and wait for it to exit: the seconds that took."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        return time.monotonic() - started


@dataclass
class Figures:
    invokes: int = 0
    callers: int = 0
    seconds: float = 0.0
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    wrong: list[str] = field(default_factory=list)
    throttled: int = 0
    duplicate_ids: int = 0
    reports_not_once: int = 0
    shutdown_s: float = 0.0
    left_after_sigterm: list[str] = field(default_factory=list)
    left_after_kill9: list[str] = field(default_factory=list)
    cold_rounds: int = 0
    cold_starts: int = 0  # invocations that had an Init Duration
    cold_failed: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return not (
            self.cold_failed
            or self.wrong
            or self.throttled
            or self.duplicate_ids
            or self.reports_not_once
            or self.left_after_sigterm
            or self.left_after_kill9
        )


def soak(invokes: int, callers: int, shutdown_timeout: float = 5.0) -> Figures:
    """Run the mix through one emulator, then stop it with SIGTERM and look for leftovers."""
    figures = Figures(invokes=invokes, callers=callers)
    events = mix(invokes)
    rie = Emulator(
        ["--timeout", "1", "--max-concurrency", str(callers),
         "--shutdown-timeout", str(shutdown_timeout)]
    ).start()  # fmt: skip
    assert rie.proc is not None
    started = time.monotonic()
    load_done = threading.Event()
    cold = threading.Thread(target=cold_start_rounds, args=(figures, load_done), daemon=True)
    cold.start()
    try:
        with ThreadPoolExecutor(callers) as ex:
            results = list(ex.map(rie.invoke, events))
    finally:
        load_done.set()
        if rie.proc.poll() is None and sys.exc_info()[0] is not None:
            rie.stop(signal.SIGKILL)
    figures.seconds = time.monotonic() - started
    cold.join(120)
    ids = []
    for event, (kind, request_id) in zip(events, results, strict=True):
        figures.kinds[kind] += 1
        figures.throttled += kind == "throttled"
        if kind != event["kind"]:
            figures.wrong.append(f"{event}: {kind}")
        if request_id:
            ids.append(request_id)
    figures.duplicate_ids = len(ids) - len(set(ids))
    wait_for(lambda: len(rie.reports()) >= len(ids), 30)
    reports = rie.reports()
    figures.reports_not_once = sum(1 for i in ids if reports[i] != 1)
    figures.shutdown_s = rie.stop()
    wait_for(lambda: not marked_processes(rie.marker), 10)
    figures.left_after_sigterm = [f"pid {p}" for p in marked_processes(rie.marker)]
    figures.left_after_sigterm += leftover_paths(rie.proc.pid)
    figures.left_after_kill9 = kill9_and_restart(callers)
    return figures


def cold_start_rounds(figures: Figures, load_done: threading.Event) -> None:
    """Rounds of COLD_PARALLEL parallel invokes, each round against a new emulator around the
    strict sh + curl runtime (its answers take a moment, so they overlap: cold starts), until the
    load is over (one round at least). Any failed invocation is recorded."""
    while not load_done.is_set() or figures.cold_rounds == 0:
        rie = Emulator(
            ["--max-concurrency", str(COLD_PARALLEL)],
            function=["--", str(STRICT_SH)],
            env={"ANSWER_DELAY": "0.3"},
        ).start()
        try:
            with ThreadPoolExecutor(COLD_PARALLEL) as ex:
                events = [{"n": i} for i in range(COLD_PARALLEL)]
                results = list(ex.map(rie.invoke, events))
            for event, (kind, _) in zip(events, results, strict=True):
                if kind != "ok":
                    figures.cold_failed.append(f"round {figures.cold_rounds}: {event}: {kind}")
        except Exception as exc:  # a refused connection is a failed invocation too
            figures.cold_failed.append(f"round {figures.cold_rounds}: {exc!r}")
        finally:
            rie.stop()
        figures.cold_rounds += 1
        figures.cold_starts += rie.output.count(b"Init Duration")


def kill9_and_restart(callers: int) -> list[str]:
    """Leave runtimes and `setsid` children behind by SIGKILLing rie, start another one: what
    the first left must be gone once the second is up."""
    first = Emulator(["--timeout", "1", "--max-concurrency", str(callers)]).start()
    assert first.proc is not None
    try:
        with ThreadPoolExecutor(callers) as ex:
            events = [{"n": i, "kind": "ok", "spawn": True} for i in range(callers)]
            list(ex.map(first.invoke, events))
        assert marked_processes(first.marker), "the runtimes and their children are running"
    finally:
        first.stop(signal.SIGKILL)
    second = Emulator(["--timeout", "1"]).start()
    try:
        wait_for(lambda: not marked_processes(first.marker), 10)
        left = [f"pid {p}" for p in marked_processes(first.marker)]
        return left + leftover_paths(first.proc.pid)
    finally:
        second.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.splitlines()[0]
    )
    p.add_argument("--invokes", type=int, default=5000)
    p.add_argument("--callers", type=int, default=8)
    a = p.parse_args(argv)
    f = soak(a.invokes, a.callers)
    print(f"invokes: {f.invokes} by {f.callers} callers in {f.seconds:.1f} s "
          f"({f.invokes / f.seconds:.0f}/s)")  # fmt: skip
    for kind in [*KINDS, *sorted(k for k in f.kinds if k not in KINDS)]:
        print(f"  {kind}: {f.kinds[kind]}")
    print(f"answered with the kind asked for: {f.invokes - len(f.wrong)} of {f.invokes}")
    for wrong in f.wrong[:10]:
        print(f"  wrong: {wrong}")
    print(f"throttled (429) within the limit: {f.throttled}")
    print(f"duplicate request ids: {f.duplicate_ids}; REPORT lines not exactly one: "
          f"{f.reports_not_once}")  # fmt: skip
    print(f"cold-start rounds of {COLD_PARALLEL} (strict sh + curl runtime) under the load: "
          f"{f.cold_rounds}, {f.cold_starts} cold starts, failed invocations: "
          f"{len(f.cold_failed)} {f.cold_failed[:5]}")  # fmt: skip
    print(f"shutdown (SIGTERM to exit): {f.shutdown_s:.2f} s")
    print(f"left after SIGTERM: {len(f.left_after_sigterm)} {f.left_after_sigterm[:5]}")
    print(f"left after kill -9 and a new start: {len(f.left_after_kill9)} {f.left_after_kill9[:5]}")
    print("PASS" if f.ok() else "FAIL")
    return 0 if f.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
