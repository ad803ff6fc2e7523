"""Shared test harness: runs `python -m rie` as a real process on real ports and talks to it over HTTP."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
INVOKE_PATH = "/2015-03-31/functions/{name}/invocations"
_LISTEN_RE = re.compile(r"Invoke API listening on http://([\d.]+):(\d+)")
MARKER_VAR = "PYRIE_TEST_MARKER"
# rie's pid -> the marker its environment carries (and so every process its runtimes start)
_MARKERS: dict[int, str] = {}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class RieProcess:
    """`python -m rie ARGS` started in its own session; its stdout is collected line by line."""

    args: list[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    host: str = "127.0.0.1"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def start(self, timeout: float = 15.0) -> RieProcess:
        env = dict(os.environ)
        env.pop("AWS_LAMBDA_RUNTIME_API", None)
        env.update(self.env or {})
        # rie passes its environment on to runtimes, so this marks every process they start
        env[MARKER_VAR] = uuid.uuid4().hex
        cmd = [
            sys.executable, "-m", "rie",
            "--runtime-interface-emulator-address", "127.0.0.1:0",
            "--runtime-api-address", "127.0.0.1:0",
            *self.args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.cwd or REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _MARKERS[self.proc.pid] = env[MARKER_VAR]
        threading.Thread(target=self._read, daemon=True).start()
        m = self.wait_for(_LISTEN_RE, timeout)
        self.host, self.port = m.group(1), int(m.group(2))
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.lines.append("<EOF>")
            self._cond.notify_all()

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(
        self, pattern: str | re.Pattern[str], timeout: float = 10.0, start: int = 0
    ) -> re.Match[str]:
        """Wait for a line of output matching `pattern` (searched from line `start`)."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    m = rx.search(line)
                    if m:
                        return m
                if "<EOF>" in self.lines[-1:]:
                    raise AssertionError(
                        f"rie exited before printing {rx.pattern!r}:\n" + "\n".join(self.lines)
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no line matching {rx.pattern!r} in:\n" + "\n".join(self.lines)
                    )
                self._cond.wait(left)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Reply:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            data = resp.read()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def invoke(
        self,
        payload: object = None,
        *,
        raw: bytes | None = None,
        name: str = "function",
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Reply:
        body = (
            raw if raw is not None else json.dumps(payload if payload is not None else {}).encode()
        )
        return self.request("POST", INVOKE_PATH.format(name=name), body, headers, timeout)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                raise AssertionError(
                    "rie did not exit within the grace period:\n" + self.output()
                ) from None
        return self.proc.returncode

    def __enter__(self) -> RieProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rie(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> RieProcess:
    """A RieProcess to use as `with rie(...) as r:`."""
    return RieProcess(list(args), dict(env or {}), cwd)


def pids_in_session(sid: int) -> list[int]:
    """Every live process of the rie started as `sid`: its own session, and every process its
    runtimes started (each runtime has a session of its own, so they are found by the marker
    variable they inherit). Used to prove that no child outlives the emulator."""
    marker = f"{MARKER_VAR}={_MARKERS.get(sid, '-')}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":  # zombies are already dead
            continue
        if int(fields[3]) == sid:
            found.append(int(entry))
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def strip(lines: Iterable[str]) -> list[str]:
    return [line.rstrip() for line in lines]


def boto_client(r: RieProcess):  # type: ignore[no-untyped-def]
    """A boto3 Lambda client for this rie, without retries (so a 429 is seen as it is)."""
    import boto3
    import botocore.config

    return boto3.client(
        "lambda",
        endpoint_url=r.endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=botocore.config.Config(retries={"max_attempts": 0}, read_timeout=60),
    )
