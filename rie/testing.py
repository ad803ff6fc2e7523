"""Run a real rie from a test: `LambdaFunction` starts `python -m rie` on free ports, invokes it over
HTTP and stops it; the pytest plugin's `lambda_function` fixture is a thin factory around it.

Standard library only, imported only when a test uses it. Invariants: the emulator listens on ports
the kernel picked (read back from its own start-up line), so tests can run in parallel; `stop()`
always leaves no process behind (SIGTERM, then SIGKILL of its process group after a bound).
pyrie's own test suite starts rie through this class too (tests/helpers.py adds only what users
do not need), so what users run is what the suite proves.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

_INVOKE_LINE = re.compile(r"Invoke API listening on (http://\S+)")
# the HTTP front's start-up line: any other "listening on http://..." line of rie's
_HTTP_LINE = re.compile(r"^rie: (?!Invoke API).*listening on (http://\S+)")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0

PathLike = str | os.PathLike[str]


class InvokeError(Exception):
    """The Invoke API refused the call (unknown function, throttled, ...): AWS's error type, the
    status and the message."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"{status} {error_type}: {message}")
        self.status, self.error_type, self.message = status, error_type, message


@dataclass
class Response:
    """An HTTP answer as it came: status, headers (names lower-cased) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class InvokeResult:
    payload: object  # the decoded JSON result (or error), bytes when it is not JSON
    function_error: str | None  # "Unhandled" when the function failed
    log: str  # the invocation's log (its last 4 KB: START, output, END, REPORT)
    request_id: str
    status: int
    raw: bytes


class LambdaFunction:
    """A running rie serving one or more functions, started by `start()`.

    `args` are rie's command line (`rie_arguments()` builds one from keywords); `environ` adds
    variables to rie's own environment, which its runtimes inherit (the function's own variables
    are `--env` flags instead)."""

    def __init__(
        self,
        args: Sequence[str],
        cwd: PathLike | None = None,
        name: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ):
        self.args = list(args)
        self.cwd = cwd
        self.name = name or "function"
        self.environ = dict(environ or {})
        self.endpoint_url = ""
        self.killed = False  # stop() had to SIGKILL rie: it did not exit within its grace
        self._http_url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lines: list[str] = []
        self._partial = b""  # the start of a line whose end has not been read yet
        self._eof = False  # the reader saw the end of rie's output
        self._cond = threading.Condition()
        # held while bytes are taken from rie's stdout and until they are lines: whoever holds it
        # sees every byte rie wrote before (see _catch_up)
        self._read_lock = threading.Lock()

    # --- life -------------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT_S) -> LambdaFunction:
        """Start rie and wait (up to `timeout` seconds) until it listens."""
        env = dict(os.environ)
        env.pop("AWS_LAMBDA_RUNTIME_API", None)
        env.update(self.environ)
        cmd = [
            sys.executable, "-m", "rie",
            "--runtime-interface-emulator-address", "127.0.0.1:0",
            "--runtime-api-address", "127.0.0.1:0",
            *self.args,
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            cmd,
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self.endpoint_url = self.wait_for_log(_INVOKE_LINE, timeout).group(1)
            if "--http" in self.args:
                self._http_url = self.wait_for_log(_HTTP_LINE, timeout).group(1)
        except BaseException:
            self.stop()
            raise
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        with self._proc.stdout as out:
            fd = out.fileno()
            os.set_blocking(fd, False)
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while True:
                poller.poll()  # readable, or rie closed its end
                with self._read_lock:
                    if self._pump(fd):
                        return

    def _pump(self, fd: int) -> bool:
        """Turn what rie's stdout holds right now into lines; True once it has ended. Called with
        `_read_lock` held."""
        if self._eof:
            return True
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return False
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop() if data else b""
            if not data and lines[-1] == b"":  # the end: a last line without its newline stays
                lines.pop()
            with self._cond:
                self._lines.extend(raw.decode("utf-8", "replace") for raw in lines)
                self._eof = not data
                self._cond.notify_all()
            if not data:
                return True

    def _catch_up(self) -> None:
        """Read whatever rie has written and the reader thread has not taken yet, so a test that
        looks at the log right after an answer sees every line rie wrote before answering."""
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        with self._read_lock:
            if not self._eof and not proc.stdout.closed:
                self._pump(proc.stdout.fileno())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """`sig` (SIGTERM: rie answers what is in flight and stops its runtimes), then SIGKILL of
        its process group if it is still running after `timeout` seconds (`killed` says so).
        rie's exit status; None if it was never started."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # rie's last lines (its shutdown summary) are read to the end before stop() returns;
        # only rie holds its stdout, so the end comes as it exits: the bound is a guard
        with self._cond:
            self._cond.wait_for(lambda: self._eof, STOP_TIMEOUT_S)
        return proc.returncode

    def __enter__(self) -> LambdaFunction:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """rie's process (the leader of its own session), once started."""
        return self._proc

    # --- reading its log --------------------------------------------------------------------

    @property
    def logs(self) -> str:
        """Everything rie printed so far: the functions' log lines and rie's own."""
        self._catch_up()
        with self._cond:
            return "\n".join(self._lines)

    @property
    def log_lines(self) -> list[str]:
        """The lines rie printed so far (a copy); `len(fn.log_lines)` marks a point to wait from."""
        self._catch_up()
        with self._cond:
            return list(self._lines)

    def wait_for_log(
        self, pattern: str | re.Pattern[str], timeout: float = 10.0, start: int = 0
    ) -> re.Match[str]:
        """The first line of output matching `pattern` (from line `start` on), waiting up to
        `timeout` seconds for it. RuntimeError, with rie's output, when none comes."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        self._catch_up()
        with self._cond:
            while True:
                for line in self._lines[start:]:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    what = "rie exited" if self._eof else f"no line matched within {timeout:g} s"
                    raise RuntimeError(
                        f"{what} waiting for {rx.pattern!r}; rie's output:\n"
                        + "\n".join(self._lines)  # not self.logs: its lock comes before this one
                    )
                self._cond.wait(min(left, 0.5))

    # --- calling it -------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        if self._http_url is None:
            raise RuntimeError("no HTTP front: start the function with http=True")
        return self._http_url

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float = 60.0,
        url: str | None = None,
    ) -> Response:
        """One raw HTTP request to the Invoke API (or to `url`, e.g. `fn.http_url`), answered as it
        came, errors included: for what `invoke()` does not cover (`/metrics`, streamed invokes,
        malformed requests, the HTTP front)."""
        split = urlsplit(url or self.endpoint_url)
        conn = http.client.HTTPConnection(split.hostname or "", split.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)

    def invoke(
        self,
        event: object = None,
        *,
        raw: bytes | None = None,
        function: str | None = None,
        invocation_type: str = "RequestResponse",
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> InvokeResult:
        """Invoke a function (by default the one this rie was started for) with `event` as JSON
        (or `raw` bytes); the result, its log tail and request id. Raises InvokeError when the
        Invoke API refuses the call."""
        body = raw if raw is not None else json.dumps({} if event is None else event).encode()
        host, _, port = self.endpoint_url.removeprefix("http://").rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        all_headers = {
            "Content-Type": "application/json",
            "X-Amz-Invocation-Type": invocation_type,
            "X-Amz-Log-Type": "Tail",
            **(headers or {}),
        }
        name = quote(function or self.name, safe="")
        try:
            conn.request("POST", f"/2015-03-31/functions/{name}/invocations", body, all_headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status >= 300:
            try:
                message = str(json.loads(data).get("message", ""))
            except (ValueError, AttributeError):
                message = data.decode("utf-8", "replace")
            error_type = response.getheader("X-Amzn-ErrorType") or "Unknown"
            raise InvokeError(response.status, error_type, message)
        payload: object = data
        if data:
            try:
                payload = json.loads(data)
            except ValueError:
                payload = data
        elif response.status in (202, 204):
            payload = None
        tail = response.getheader("X-Amz-Log-Result")
        return InvokeResult(
            payload=payload,
            function_error=response.getheader("X-Amz-Function-Error"),
            log=base64.b64decode(tail).decode("utf-8", "replace") if tail else "",
            request_id=response.getheader("X-Amzn-RequestId") or "",
            status=response.status,
            raw=data,
        )


def rie_arguments(
    handler: str | None = None,
    task_root: PathLike | None = None,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 3,
    memory: int | None = None,
    sandbox: str | None = None,
    http: bool = False,
    template: PathLike | None = None,
    config: PathLike | None = None,
    zip: PathLike | None = None,
    command: Sequence[str] = (),
    args: Sequence[str] = (),
    base: Path | None = None,
) -> list[str]:
    """rie's command line for the factory's keywords; relative paths are taken from `base`."""

    def path(p: PathLike) -> str:
        resolved = Path(p)
        return str(resolved if resolved.is_absolute() or base is None else base / resolved)

    out: list[str] = []
    sources = [x for x in (template, config) if x is not None]
    if len(sources) > 1 or (sources and (handler or task_root or zip or command)):
        raise ValueError("give handler/task_root/zip/command, or template=, or config=")
    if template is not None:
        out += ["--template", path(template)]
    elif config is not None:
        out += ["--config", path(config)]
    else:
        if zip is not None:
            out += ["--zip", path(zip)]
        elif task_root is not None:
            out += ["--task-root", path(task_root)]
        if handler:
            out += ["--handler", handler]
    for key, value in (env or {}).items():
        out += ["--env", f"{key}={value}"]
    if timeout is not None:
        out += ["--timeout", str(timeout)]
    if memory is not None:
        out += ["--memory", str(memory)]
    if sandbox is not None:  # "lambda" or "off" (docs/resources.md); default: RIE_SANDBOX, lambda
        out += ["--sandbox", sandbox]
    if http:
        from rie.settings.config import build_parser

        if not any("--http" in action.option_strings for action in build_parser()._actions):
            raise RuntimeError(
                "http=True needs rie's HTTP front (`rie --http`), which this version of pyrie "
                "does not have"
            )
        out += ["--http", "127.0.0.1:0"]
    out += list(args)
    if command:
        out += ["--", *command]
    return out
