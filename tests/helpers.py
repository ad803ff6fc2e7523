"""What the suite needs beyond rie.testing (the users' harness, which starts every rie here):
raw HTTP replies, AssertionErrors with rie's output, finding every process a rie started, boto3
clients without retries, and the repository's paths."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from rie.testing import LambdaFunction
from rie.testing import Response as Reply

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
INVOKE_PATH = "/2015-03-31/functions/{name}/invocations"
MARKER_VAR = "PYRIE_TEST_MARKER"
# rie's pid -> the marker its environment carries (and so every process its runtimes start)
_MARKERS: dict[int, str] = {}


class RieProcess:
    """`python -m rie ARGS` started by rie.testing's LambdaFunction (the harness users' tests use),
    seen as the suite needs it: raw `Reply`s (errors are answers, not exceptions), AssertionError
    with rie's output when a line does not come or rie does not stop in time, and a marker
    variable in its environment by which `pids_in_session` finds every process it started.
    With a `port` and no `start()`, it only talks to a rie someone else started."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        # rie passes its environment on to runtimes, so this marks every process they start
        self.marker = uuid.uuid4().hex
        self.fn = LambdaFunction(
            args, cwd=cwd or REPO, environ={**(env or {}), MARKER_VAR: self.marker}
        )
        if port:
            self.fn.endpoint_url = f"http://{host}:{port}"

    def start(self, timeout: float = 15.0) -> RieProcess:
        try:
            self.fn.start(timeout)
        except RuntimeError as exc:
            raise AssertionError(str(exc)) from None
        assert self.proc is not None
        _MARKERS[self.proc.pid] = self.marker
        return self

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.fn.process

    @property
    def lines(self) -> list[str]:
        return self.fn.log_lines

    def output(self) -> str:
        return self.fn.logs

    def wait_for(
        self, pattern: str | re.Pattern[str], timeout: float = 10.0, start: int = 0
    ) -> re.Match[str]:
        """Wait for a line of output matching `pattern` (searched from line `start`)."""
        try:
            return self.fn.wait_for_log(pattern, timeout, start)
        except RuntimeError as exc:
            raise AssertionError(str(exc)) from None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Reply:
        return self.fn.request(method, path, body, headers, timeout=timeout)

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
        return self.fn.endpoint_url

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.endpoint).port or 0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        code = self.fn.stop(sig, timeout)
        if self.fn.killed:
            raise AssertionError("rie did not exit within the grace period:\n" + self.output())
        assert code is not None
        return code

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
