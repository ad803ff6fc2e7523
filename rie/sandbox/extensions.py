"""One environment's extensions: their processes, the Extensions / Telemetry / Logs API calls,
and the events (INVOKE, SHUTDOWN) they wait for in `next`.

The rules (who may register, who is in `next`, when a phase is over) live in `phases.Phases`;
this module does the I/O around them: it starts each external extension as a process group of its
own with the function's environment, answers the API calls of one environment's endpoint, hands
each waiting extension its event, and tells its owner (the environment) when the parties it waits
for are all back in `next` or when an extension has failed.

Invariants:
- every extension process started here is killed (its whole group) before `shutdown` returns;
- an event goes to an extension exactly once: to its waiting `next`, or to its next call of it;
- nothing here runs unless the function has extensions: an environment without them never makes
  an `ExtensionHost` until something calls `register`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Protocol

from rie.model.errors import RieError, RouteMethodNotAllowed, RouteNotFound
from rie.model.invocation import Invocation
from rie.model.phases import (
    EVENT_INVOKE,
    EVENT_SHUTDOWN,
    ExtensionApiError,
    ExtState,
    Phase,
    Phases,
)
from rie.observe import telemetry
from rie.observe.logs import LineBuffer, billed_ms
from rie.sandbox.namespace import LAMBDA_OPT, Plan
from rie.sandbox.supervisor import MemoryCgroup, Process, spawn

log = logging.getLogger("rie")

EXTENSION_BASE = "/2020-01-01/extension/"
TELEMETRY_PATH = "/2022-07-01/telemetry"
LOGS_PATH = "/2020-08-15/logs"
PREFIXES = (EXTENSION_BASE, TELEMETRY_PATH, LOGS_PATH)

H_ID = "lambda-extension-identifier"
H_NAME = "lambda-extension-name"
H_FEATURE = "lambda-extension-accept-feature"
H_ERROR_TYPE = "lambda-extension-function-error-type"

# (status, extra headers, body): how an answer is handed back to the HTTP layer
Reply = Callable[[int, Mapping[str, str], bytes], None]
_ACCEPTED = b'{"status":"OK"}'


def _event_headers(ext_id: str) -> dict[str, str]:
    return {
        "Lambda-Extension-Identifier": ext_id,
        "Lambda-Extension-Event-Identifier": str(uuid.uuid4()),
    }


class Owner(Protocol):
    """What the host needs of its environment."""

    def extensions_ready(self) -> None: ...  # every extension waits in `next` again

    def extension_failed(self, error_type: str, message: str) -> None: ...

    def extension_out_of_memory(self) -> None: ...  # the kernel's OOM killer ended one


def find_extensions(directories: Sequence[str]) -> list[str]:
    """Executables in the extension directories, in order; a name seen twice is taken once."""
    found: dict[str, str] = {}
    for directory in directories:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            if name not in found and os.path.isfile(path) and os.access(path, os.X_OK):
                found[name] = path
    return list(found.values())


def _at_opt(path: str, plan: Plan | None) -> str:
    """Where an extension of a layer runs from: /opt/extensions/NAME where the layers are merged
    at /opt (rie/sandbox/namespace.py), as on Lambda; else its own path."""
    if plan is None or not plan.opt_layers:
        return path
    directory = os.path.realpath(os.path.dirname(path))
    if any(directory == os.path.join(layer, "extensions") for layer in plan.opt_layers):
        return os.path.join(LAMBDA_OPT, "extensions", os.path.basename(path))
    return path


_SANDBOX_HOSTS = ("sandbox.localdomain", "sandbox")
# the host-name hint is looked into once per emulator, by a task of its own (the environment
# that saw the crash may be torn down before the names are resolved)
_hint: asyncio.Task[None] | None = None


def _hint_sandbox_host() -> None:
    """After an extension crashed: if the sandbox's host names do not resolve here, say so once.
    Many extensions (AWS's samples among them) listen on `sandbox.localdomain` or `sandbox`,
    which exist only inside Lambda; on a developer machine binding them fails, and the extension
    dies without the reason being plain. Resolved only after a crash, off the hot path."""
    global _hint
    if _hint is None:
        _hint = asyncio.ensure_future(_check_sandbox_hosts())


async def _check_sandbox_hosts() -> None:
    loop = asyncio.get_running_loop()
    missing = []
    for name in _SANDBOX_HOSTS:
        try:
            await asyncio.wait_for(loop.getaddrinfo(name, None), 2.0)
        except (OSError, TimeoutError):
            missing.append(name)
    if missing:
        log.warning(
            "%s %s not resolve on this machine: an extension that listens on %s cannot start "
            "here; add `127.0.0.1 sandbox.localdomain sandbox` to /etc/hosts (see the README)",
            " and ".join(missing),
            "does" if len(missing) == 1 else "do",
            "it" if len(missing) == 1 else "them",
        )


class ExtensionHost:
    def __init__(
        self,
        owner: Owner,
        paths: Sequence[str],
        function: Mapping[str, str],  # functionName, functionVersion, handler, accountId
        sink_write: Callable[[bytes], None],
        json_logs: bool = False,
        cgroup_prefix: str | None = None,
        cgroup_parent: MemoryCgroup | None = None,
        fs_plan: Callable[[Sequence[str], Mapping[str, str]], Plan | None] | None = None,
    ) -> None:
        self._owner = owner
        self.paths = list(paths)
        self._function = dict(function)
        self._sink_write = sink_write
        # each extension gets a memory cgroup: <prefix>-ext<n>, or inside the environment's group
        # (whose limits the runtime and its extensions share, as on Lambda): <prefix>/ext<n>
        self._cgroup_prefix = cgroup_prefix
        self._cgroup_parent = cgroup_parent
        self._fs_plan = (
            fs_plan  # the environment's /tmp and read-only code, shared with the runtime
        )
        self._lines: dict[str, LineBuffer] = {}  # each extension's output, in whole lines
        self.phases = Phases(frozenset(os.path.basename(p) for p in self.paths))
        self.telemetry = telemetry.Telemetry(json_logs)
        self.processes: dict[str, Process] = {}
        self._waiting: dict[str, Reply] = {}  # extension id -> its waiting `next`
        # extension id -> events it has not fetched yet, oldest first
        self._pending: dict[str, collections.deque[bytes]] = {}
        self._registered: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self._finish_shutdown: asyncio.Future[None] | None = None

    # --- processes -------------------------------------------------------------------------

    async def start(self, env: Mapping[str, str], cwd: str) -> None:
        """Start every external extension (in parallel) and wait until each has registered or
        died; the caller bounds the wait with the init timeout."""
        loop = asyncio.get_running_loop()
        self._registered = loop.create_future()
        for n, path in enumerate(self.paths):
            name = os.path.basename(path)
            lines = self._lines[name] = LineBuffer()
            cgroup = None
            if self._cgroup_prefix:
                sep = "/" if self._cgroup_parent is not None else "-"
                cgroup = f"{self._cgroup_prefix}{sep}ext{n}"
            plan = self._fs_plan([path], env) if self._fs_plan is not None else None
            try:
                process = await spawn(
                    [_at_opt(path, plan)],
                    env,
                    cwd,
                    functools.partial(self._output, lines),
                    cgroup_name=cgroup,
                    cgroup_parent=self._cgroup_parent,
                    fs=plan,
                )
            except OSError as exc:
                self._sink_write(
                    f"EXTENSION\tName: {name}\tState: LaunchError\tError: {exc}\n".encode()
                )
                self._owner.extension_failed(
                    "Extension.LaunchError", f"cannot start {name}: {exc.strerror}"
                )
                return
            self.processes[name] = process
            self._spawn_task(self._watch(name, process))
        self._check_registered()
        await asyncio.shield(self._registered)

    def _spawn_task(self, coro: Coroutine[object, object, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _output(self, lines: LineBuffer, data: bytes) -> None:
        """An extension's output: to the function's log in whole lines (never cut into the
        runtime's), and to telemetry as `extension` records."""
        data = lines.feed(data)
        if data:
            self._sink_write(data)
            if self.telemetry.active:
                self.telemetry.output("extension", data)

    def _end_output(self, name: str) -> None:
        lines = self._lines.get(name)
        if lines is not None:
            self._output(lines, lines.flush())

    def _check_registered(self) -> None:
        fut = self._registered
        if fut is None or fut.done():
            return
        for name, process in self.processes.items():
            if self.phases.by_name(name) is None and process.returncode is None:
                return
        fut.set_result(None)

    async def _watch(self, name: str, process: Process) -> None:
        code = await process.exited
        process.drain_output()
        self._end_output(name)
        process.kill_everything()  # whatever it started goes with it
        # its group's own OOM counter, read before the group goes
        oom = code == -signal.SIGKILL and process.oom_killed()
        process.release()
        if self.stopping:
            return
        ext = self.phases.exited(name)
        self._check_registered()
        if self.phases.phase is Phase.SHUTDOWN:
            self._shutdown_progress()
            return
        if oom:
            # the environment's memory ran out (its extensions share it with the runtime)
            self._owner.extension_out_of_memory()
            return
        what = "exit status" if code >= 0 else "signal"
        self._sink_write(
            f"EXTENSION\tName: {name}\tState: Crash\tError: {what} {abs(code)}\n".encode()
        )
        error_type = "Extension.Crash"
        if ext is not None and ext.error_type:
            error_type = ext.error_type
        _hint_sandbox_host()
        self._owner.extension_failed(error_type, f"Extension {name} exited: {what} {abs(code)}")

    async def shutdown(
        self, reason: str, runtime: Process | None, runtime_grace_s: float
    ) -> int | None:
        """SHUTDOWN to subscribed extensions with a deadline, SIGTERM to the runtime, then
        SIGKILL to whatever is left; every process here is gone when this returns (or is
        cancelled: then they are killed at once)."""
        try:
            return await self._shutdown(reason, runtime, runtime_grace_s)
        except asyncio.CancelledError:
            self.stopping = True
            for process in [*self.processes.values(), *([runtime] if runtime else [])]:
                process.kill_everything()
            raise

    async def _shutdown(
        self, reason: str, runtime: Process | None, runtime_grace_s: float
    ) -> int | None:
        phases = self.phases
        first = phases.phase is not Phase.SHUTDOWN
        phases.start_shutdown()
        budget_ms = phases.shutdown_ms
        deadline_ms = int(time.time() * 1000) + budget_ms
        self._finish_shutdown = asyncio.get_running_loop().create_future()
        if first:
            # the last telemetry batch reaches its extension before SHUTDOWN does
            await self.telemetry.flush(timeout_s=budget_ms / 1000 / 2 or 0.5)
            payload = json.dumps(
                {"eventType": EVENT_SHUTDOWN, "shutdownReason": reason, "deadlineMs": deadline_ms}
            ).encode()
            for ext in phases.subscribers(EVENT_SHUTDOWN):
                self._send_event(ext.id, payload)
        runtime_stop = None
        if runtime is not None:
            runtime_stop = asyncio.ensure_future(runtime.stop(max(runtime_grace_s, 0.0)))
        self._shutdown_progress()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._finish_shutdown), budget_ms / 1000)
        code = None
        if runtime_stop is not None:
            code = await runtime_stop
        await self.stop_processes()
        await self.telemetry.close(timeout_s=0.5)
        return code

    def _shutdown_progress(self) -> None:
        fut = self._finish_shutdown
        if fut is not None and not fut.done() and self.phases.shutdown_done():
            fut.set_result(None)

    async def stop_processes(self) -> None:
        self.stopping = True
        processes = list(self.processes.items())
        self.processes.clear()
        # killed before their waiting `next` is let go of: an extension that calls `next` again
        # after SHUTDOWN (AWS's Logs API sample does) is stopped there, as on Lambda, rather
        # than woken by a closed connection to print a traceback into the function's log
        for _, process in processes:
            process.kill_everything()
        for reply in self._waiting.values():
            with contextlib.suppress(Exception):
                reply(0, {}, b"")  # status 0: close the connection without an answer
        self._waiting.clear()
        await asyncio.gather(*(p.stop(0) for _, p in processes))
        for name, _ in processes:
            self._end_output(name)
        for task in list(self._tasks):
            task.cancel()

    def memory_used_bytes(self) -> int:
        """The extensions' part of the environment's memory (their processes' peaks)."""
        return sum(p.memory_used_bytes() for p in self.processes.values())

    # --- what the environment tells ---------------------------------------------------------

    @property
    def init_done(self) -> bool:
        return self.phases.init_done

    @property
    def busy(self) -> bool:
        return self.phases.busy

    def end_init(
        self, init_type: str | None = None, runtime_ms: float = 0.0, init_ms: float = 0.0
    ) -> None:
        """Init is over (reported as a success when `init_type` is given)."""
        self.phases.start_invoke()
        if init_type is not None:
            self.platform_init_done(init_type, "success", runtime_ms, init_ms, None)
        self.telemetry.end_init()

    # --- platform events, as the environment reports them (the same figures as its log) ------

    def platform_init_start(self, init_type: str, instance_id: str, memory_mb: int) -> None:
        f = self._function
        self.telemetry.emit(
            telemetry.init_start(
                init_type, f["functionName"], f["functionVersion"], instance_id, memory_mb
            )
        )

    def platform_init_done(
        self,
        init_type: str,
        status: str,
        runtime_ms: float,
        init_ms: float,
        error_type: str | None,
    ) -> None:
        if not self.telemetry.active:
            return
        started = time.time() - runtime_ms / 1000
        self.telemetry.emit(
            telemetry.init_runtime_done(init_type, status, started, runtime_ms, error_type)
        )
        self.telemetry.emit(telemetry.init_report(init_type, status, init_ms, error_type))

    def platform_start(self, inv: Invocation, version: str) -> None:
        if self.telemetry.active:
            self.telemetry.emit(telemetry.start(inv.request_id, version, inv.request.trace_id))

    def platform_runtime_done(self, inv: Invocation) -> None:
        if not self.telemetry.active:
            return
        self.telemetry.end_of_output()  # the invocation's lines come before its runtimeDone
        outcome = inv.outcome
        self.telemetry.emit(
            telemetry.runtime_done(
                inv.request_id,
                telemetry.status_of(inv.state.value),
                time.time() - inv.duration_ms / 1000,
                inv.duration_ms,
                len(outcome.body) if outcome else 0,
                outcome.error_type if outcome else None,
                inv.request.trace_id,
            )
        )

    def platform_report(
        self,
        inv: Invocation,
        duration_ms: float,
        memory_mb: int,
        max_memory_mb: int,
        status: str | None,
    ) -> None:
        if not self.telemetry.active:
            return
        self.telemetry.emit(
            telemetry.report(
                inv.request_id,
                status or telemetry.status_of(inv.state.value),
                duration_ms,
                billed_ms(duration_ms),
                memory_mb,
                max_memory_mb,
                inv.init_duration_ms,
                inv.outcome.error_type if inv.outcome else None,
                inv.request.trace_id,
            )
        )

    def invoke(self, request_id: str, deadline_ms: int, arn: str, trace_id: str) -> bool:
        """INVOKE to every subscribed extension; True if any is now working on it."""
        subscribers = self.phases.subscribers(EVENT_INVOKE)
        if not subscribers:
            return False
        payload = json.dumps(
            {
                "eventType": EVENT_INVOKE,
                "deadlineMs": deadline_ms,
                "requestId": request_id,
                "invokedFunctionArn": arn,
                "tracing": {"type": "X-Amzn-Trace-Id", "value": trace_id},
            }
        ).encode()
        for ext in subscribers:
            self._send_event(ext.id, payload)
        return True

    def _send_event(self, ext_id: str, payload: bytes) -> None:
        ext = self.phases.extensions[ext_id]
        if ext.state is ExtState.RUNNING:
            # still busy with the last event: it gets this one at its next `next`
            self._pending.setdefault(ext_id, collections.deque()).append(payload)
            return
        if ext.state is not ExtState.READY:
            return
        self.phases.deliver(ext)
        reply = self._waiting.pop(ext_id, None)
        if reply is not None:
            reply(200, _event_headers(ext_id), payload)
        else:
            # its `next` connection dropped: it gets the event at its next call
            self._pending.setdefault(ext_id, collections.deque()).append(payload)

    # --- the API calls ---------------------------------------------------------------------

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, reply: Reply
    ) -> Callable[[], None] | None:
        """Answer one call of the Extensions, Telemetry or Logs API through `reply` (now, or
        later for `next`). Returns a function to call if the caller hangs up while waiting."""
        try:
            return self._handle(method, path, headers, body, reply)
        except RieError as error:
            reply(error.status, {}, error.body())
            return None

    def _handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, reply: Reply
    ) -> Callable[[], None] | None:
        phases = self.phases
        if path in (TELEMETRY_PATH, TELEMETRY_PATH + "/", LOGS_PATH, LOGS_PATH + "/"):
            if method != "PUT":
                raise RouteMethodNotAllowed(f"Method {method} not allowed")
            self._subscribe(path.startswith(LOGS_PATH), headers, body)
            reply(200, {}, b'"OK"')
            return None
        action = path[len(EXTENSION_BASE) :]
        allowed = {
            "register": "POST",
            "event/next": "GET",
            "init/error": "POST",
            "exit/error": "POST",
        }
        if action not in allowed:
            raise RouteNotFound()
        if method != allowed[action]:
            raise RouteMethodNotAllowed(f"Method {method} not allowed")
        if action == "register":
            self._register(headers, body, reply)
            return None
        if action == "event/next":
            ext = phases.lookup(headers.get(H_ID))
            first = ext.state is ExtState.REGISTERED
            phases.next(ext.id)
            ext_id = ext.id
            if first:
                self.telemetry.emit(telemetry.extension(ext.name, "Ready", ext.events))
            queue = self._pending.get(ext_id)
            payload = queue.popleft() if queue else None
            if payload is not None:
                phases.deliver(ext)
                reply(200, _event_headers(ext_id), payload)
                return None
            old = self._waiting.pop(ext_id, None)
            if old is not None:
                old(0, {}, b"")
            self._waiting[ext_id] = reply
            self._progress()

            def cancel() -> None:
                if self._waiting.get(ext_id) is reply:
                    del self._waiting[ext_id]

            return cancel
        error_type = headers.get(H_ERROR_TYPE)
        if action == "init/error":
            ext = phases.init_error(headers.get(H_ID), error_type)
            reply(202, {}, _ACCEPTED)
            self._sink_write(
                f"EXTENSION\tName: {ext.name}\tState: InitError\tError Type: {error_type}\n".encode()
            )
            self._owner.extension_failed(
                "Extension.InitError", f"Extension {ext.name} reported an init error: {error_type}"
            )
            return None
        ext = phases.exit_error(headers.get(H_ID), error_type)
        reply(202, {}, _ACCEPTED)
        self._sink_write(
            f"EXTENSION\tName: {ext.name}\tState: ExitError\tError Type: {error_type}\n".encode()
        )
        self._owner.extension_failed(
            "Extension.ExitError", f"Extension {ext.name} reported an exit error: {error_type}"
        )
        return None

    def _register(self, headers: Mapping[str, str], body: bytes, reply: Reply) -> None:
        try:
            doc = json.loads(body or b"{}")
        except (ValueError, RecursionError):  # nested too deep for the parser is not JSON here
            raise ExtensionApiError("InvalidRequestFormat", "request body is not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("events", []), list):
            raise ExtensionApiError("InvalidRequestFormat", 'expected {"events": [...]}')
        ext = self.phases.register(headers.get(H_NAME), doc.get("events", []))
        answer = {
            "functionName": self._function["functionName"],
            "functionVersion": self._function["functionVersion"],
            "handler": self._function["handler"],
        }
        if "accountId" in headers.get(H_FEATURE, ""):
            answer["accountId"] = self._function["accountId"]
        reply(200, {"Lambda-Extension-Identifier": ext.id}, json.dumps(answer).encode())
        self._check_registered()

    def _subscribe(self, logs_api: bool, headers: Mapping[str, str], body: bytes) -> None:
        ext = self.phases.lookup(headers.get(H_ID))
        request = telemetry.parse_subscription(body, logs_api=logs_api)
        key = ("logs:" if logs_api else "telemetry:") + ext.id
        self.telemetry.subscribe(key, ext.name, request)
        self.telemetry.emit(telemetry.telemetry_subscription(ext.name, request.types))

    def _progress(self) -> None:
        if self.phases.phase is Phase.SHUTDOWN:
            self._shutdown_progress()
        elif self.phases.init_done and not self.phases.busy:
            self._owner.extensions_ready()
