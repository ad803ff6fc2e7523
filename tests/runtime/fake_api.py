"""A recording Runtime API server for tests: serves queued events to `next`, records every request.

It runs in-process on a thread (port 0) and speaks HTTP/1.1 keep-alive like Lambda's own
endpoint, so the runtime under test can be any real process: ours or awslambdaric.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HANDLERS = REPO / "tests" / "fixtures" / "handlers"
PYTHON = sys.executable
MAX_RESPONSE = 6291556
PREFIX = "/2018-06-01"


@dataclass
class Recorded:
    """One request the runtime made."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    conn: int

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Event:
    """One invocation waiting to be handed to the runtime."""

    body: bytes
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    content_type: str | None = "application/json"
    trace_id: str | None = (
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    )
    client_context: str | None = None
    cognito_identity: str | None = None
    tenant_id: str | None = None
    deadline_ms: int | None = None
    arn: str = "arn:aws:lambda:us-east-1:012345678912:function:test_function"
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Recorded | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    # one handler per connection; numbered, because id() of a closed connection's socket may be
    # reused by the next one
    _numbers = itertools.count(1)

    def setup(self) -> None:
        super().setup()
        self.connection_number = next(self._numbers)

    def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr log
        pass

    def _reply(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.server.api.close_after_reply:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if self.server.api.drop_after_post and self.command == "POST":
            # close the idle keep-alive connection without warning, as a proxy timing out would
            self.close_connection = True

    def _record(self, body: bytes) -> Recorded:
        rec = Recorded(
            self.command,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            body,
            time.monotonic(),
            self.connection_number,
        )
        with self.server.api.lock:
            self.server.api.requests.append(rec)
        return rec

    def do_GET(self) -> None:
        api = self.server.api
        rec = self._record(b"")
        if self.path != PREFIX + "/runtime/invocation/next":
            self._reply(404, b'{"errorMessage":"not found"}')
            return
        with api.lock:
            scripted = api.next_answers.pop(0) if api.next_answers else None
        if scripted is not None:
            self._reply(*scripted)  # an answer that is not an invocation
            return
        with api.lock:
            api.waiting += 1
            api.cond.notify_all()
        try:
            while True:
                try:
                    ev = api.events.get(timeout=0.05)
                    break
                except queue.Empty:
                    if api.stopping.is_set():
                        self.close_connection = True
                        return
        finally:
            with api.lock:
                api.waiting -= 1
                api.cond.notify_all()
        rec.headers["x-served-request-id"] = ev.request_id
        api.active[ev.request_id] = ev
        headers = {
            "Lambda-Runtime-Aws-Request-Id": ev.request_id,
            "Lambda-Runtime-Deadline-Ms": str(ev.deadline_ms or int(time.time() * 1000) + 300_000),
            "Lambda-Runtime-Invoked-Function-Arn": ev.arn,
        }
        if ev.trace_id is not None:
            headers["Lambda-Runtime-Trace-Id"] = ev.trace_id
        if ev.client_context is not None:
            headers["Lambda-Runtime-Client-Context"] = ev.client_context
        if ev.cognito_identity is not None:
            headers["Lambda-Runtime-Cognito-Identity"] = ev.cognito_identity
        if ev.tenant_id is not None:
            headers["Lambda-Runtime-Aws-Tenant-Id"] = ev.tenant_id
        self.send_response(200)
        if ev.content_type is not None:
            self.send_header("Content-Type", ev.content_type)
        for k, v in headers.items():
            self.send_header(k, v)
        if api.chunked_next:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = len(ev.body) // 2
            for part in (ev.body[:half], ev.body[half:]):
                if part:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(ev.body)))
            if api.close_after_reply:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(ev.body)
        self.wfile.flush()

    def do_POST(self) -> None:
        api = self.server.api
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rec = self._record(body)
        parts = self.path[len(PREFIX) :].split("/")
        if self.path == PREFIX + "/runtime/init/error":
            api.init_errors.append(rec)
            self._reply(202, b'{"status":"OK"}')
            return
        # /runtime/invocation/{id}/{response|error}
        if len(parts) == 5 and parts[2] == "invocation" and parts[4] in ("response", "error"):
            ev = api.active.get(parts[3])
            if ev is None:
                self._reply(
                    400, b'{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}'
                )
                return
            if parts[4] == "response" and length > MAX_RESPONSE:
                self._reply(
                    413,
                    b'{"errorMessage":"Exceeded maximum allowed payload size (6291556 bytes).",'
                    b'"errorType":"RequestEntityTooLarge"}',
                )
                return
            del api.active[parts[3]]
            ev.outcome = rec
            self._reply(202, b'{"status":"OK"}')
            ev.done.set()
            return
        self._reply(404, b'{"errorMessage":"not found"}')


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: FakeRuntimeApi


class FakeRuntimeApi:
    """`with FakeRuntimeApi() as api:` then `api.address` for AWS_LAMBDA_RUNTIME_API."""

    def __init__(
        self,
        *,
        close_after_reply: bool = False,
        drop_after_post: bool = False,
        chunked_next: bool = False,
        next_answers: list[tuple[int, bytes]] | None = None,
    ) -> None:
        self.close_after_reply = close_after_reply
        self.drop_after_post = drop_after_post
        self.chunked_next = chunked_next
        # (status, body) answered to the first `next` calls instead of an invocation
        self.next_answers = list(next_answers or [])
        self.events: queue.Queue[Event] = queue.Queue()
        self.active: dict[str, Event] = {}
        self.requests: list[Recorded] = []
        self.init_errors: list[Recorded] = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.waiting = 0
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.api = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def __enter__(self) -> FakeRuntimeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def push(self, payload: object = None, *, raw: bytes | None = None, **kw: Any) -> Event:
        body = raw if raw is not None else json.dumps(payload).encode()
        ev = Event(body, **kw)
        self.events.put(ev)
        return ev

    def wait_waiting(self, n: int, timeout: float = 10.0) -> None:
        """Wait until `n` `next` calls are outstanding at once."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.waiting < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"only {self.waiting} next calls outstanding, wanted {n}")
                self.cond.wait(left)

    def posts(self) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST"]


@dataclass
class Run:
    """A finished runtime process: what the Runtime API saw and what it printed."""

    requests: list[Recorded]
    posts: list[Recorded]
    init_errors: list[Recorded]
    events: list[Event]
    stdout: str
    returncode: int | None


def runtime_cmd(kind: str, handler: str) -> list[str]:
    if kind == "ours":
        return [PYTHON, "-m", "runtime", handler]
    return [PYTHON, "-m", "awslambdaric", handler]


def child_env(api: FakeRuntimeApi, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "_LAMBDA", "_X_AMZN"))}
    env.update(
        {
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "LAMBDA_TASK_ROOT": str(HANDLERS),
            "AWS_LAMBDA_FUNCTION_NAME": "test_function",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/test_function",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]abcdef",
            "AWS_REGION": "us-east-1",
            "PYTHONPATH": str(HANDLERS),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    env.update(extra or {})
    return env


def start(
    kind: str, handler: str, api: FakeRuntimeApi, env: dict[str, str] | None = None, **kw: Any
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        runtime_cmd(kind, handler),
        cwd=HANDLERS,
        env=child_env(api, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kw,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=timeout)
    return out.decode("utf-8", "replace")


def run(
    kind: str,
    handler: str,
    events: list[dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
    *,
    expect_exit: bool = False,
    timeout: float = 10.0,
    api_options: dict[str, Any] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> Run:
    """Run `handler` under runtime `kind` ("ours" or "ric") for the given events, then stop it.

    Each item of `events` holds keyword arguments for `FakeRuntimeApi.push`. With `expect_exit`
    the process is expected to end by itself (an init error)."""
    with FakeRuntimeApi(**(api_options or {})) as api:
        pushed = [api.push(**e) for e in events or []]
        proc = start(kind, handler, api, env, pass_fds=pass_fds)
        try:
            if expect_exit:
                proc.wait(timeout)
            else:
                for ev in pushed:
                    if not ev.done.wait(timeout):
                        raise AssertionError(f"{kind}: invocation {ev.request_id} not answered")
                # let the runtime come back to `next`, so trailing output is flushed
                api.wait_waiting(1, timeout)
        finally:
            out = stop(proc)
        return Run(
            list(api.requests), api.posts(), list(api.init_errors), pushed, out, proc.returncode
        )
