"""One execution environment: a runtime process group behind its own Runtime API endpoint.

Invariants:
- at most one runtime process at a time; a reset kills its whole process group before anything
  else starts, and the next invocation assigned to a cold environment starts a fresh init;
- an invocation assigned here is answered exactly once, whatever the runtime does: it responds,
  posts an error, times out, exits, fails its init or the environment retires;
- the runtime can only reach invocations of this environment: ids are looked up here alone;
- with extensions (rie/sandbox/extensions.py, rules in rie/model/phases.py), init ends and the next invocation
  starts only when the runtime and every extension are back in `next`; a reset or retirement
  shuts them down (SHUTDOWN, then kill) along with the runtime.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from rie.model.errors import InvalidRequestID, InvalidStateTransition
from rie.model.invocation import Invocation, State, error_body
from rie.observe import logs
from rie.observe.metrics import Metrics
from rie.sandbox import namespace
from rie.sandbox.limits import MB, Quotas, quotas
from rie.sandbox.supervisor import (
    MemoryCgroup,
    Process,
    cgroup_name,
    describe_exit,
    spawn,
    tmpdir_prefix,
)
from rie.settings.config import RUNTIME_ENTRY, Config

if TYPE_CHECKING:
    from rie.sandbox.extensions import ExtensionHost

log = logging.getLogger("rie")

_RECENT_IDS = 64  # finished ids remembered so a late answer gets 403, not 400
_INIT_ERROR_GRACE_S = 1.0  # a runtime that posted init/error gets this long to exit by itself
_MEMORY_SAMPLE_S = 0.05


class EnvState(enum.Enum):
    COLD = "cold"  # no process
    INITIALIZING = "initializing"  # process started, no `next` yet
    READY = "ready"  # initialised: serving or waiting for invocations
    RESETTING = "resetting"  # its process group is being killed
    RETIRED = "retired"


class Endpoint(Protocol):
    """The Runtime API endpoint an environment's runtime talks to (bound by the HTTP layer)."""

    port: int

    @property
    def address(self) -> str:
        """host:port as bound, for AWS_LAMBDA_RUNTIME_API (an IPv6 host in brackets)."""
        ...

    async def close(self) -> None: ...


EndpointFactory = Callable[["Environment"], Awaitable[Endpoint]]


# variables rie sets for the runtime: never the user's channel (rie/sandbox/namespace.py)
_PLATFORM_VARIABLES = (
    "AWS_LAMBDA_RUNTIME_API",
    "TMPDIR",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "_HANDLER",
    "AWS_LAMBDA_EXEC_WRAPPER",
)


class Environment:
    def __init__(
        self,
        env_id: int,
        config: Config,
        base_env: Mapping[str, str],
        sink: logs.Sink,
        metrics: Metrics,
        on_slot_free: Callable[[Environment], None],
        provisioned: bool = False,
    ) -> None:
        self.id = env_id
        self.config = config
        self.provisioned = provisioned
        self.capacity = config.per_env_concurrency
        self.state = EnvState.COLD
        self.log_stream = (
            time.strftime("%Y/%m/%d/", time.gmtime())
            + f"[{config.function_version}]{uuid.uuid4().hex}"
        )
        self.tmpdir = tempfile.mkdtemp(prefix=tmpdir_prefix(config.function_name, env_id))
        # Lambda's limits for this memory size (rie/sandbox/limits.py); None: --sandbox off
        self.limits: Quotas | None = (
            quotas(config.memory_mb, os.cpu_count() or 1, config.ephemeral_storage_mb)
            if config.sandbox == "lambda"
            else None
        )
        # its own /tmp and read-only code (rie/sandbox/namespace.py), where the machine allows
        self.fs_mode = namespace.mode() if self.limits is not None else None
        self._fs_active = False  # this init's processes get the mounts
        # this init's cgroup under the sandbox: Lambda's limits, shared by the runtime and its
        # extensions (each in a group of its own inside it); None: each process its own
        self._group: MemoryCgroup | None = None
        self._extension_oom = False  # an extension was OOM-killed: the runtime's end says so
        self.endpoint: Endpoint | None = None
        self.process: Process | None = None
        self.queued: collections.deque[Invocation] = collections.deque()
        self.running: dict[str, Invocation] = {}
        self.last_used = time.monotonic()
        self.init_count = 0
        self.invocations = 0  # reported here, as the dashboard shows them
        self.peak_memory_bytes = 0
        self._memory_sampled_at = 0.0
        self._base_env = base_env
        self._sink = sink
        self._metrics = metrics
        self._on_slot_free = on_slot_free
        self._recent: collections.OrderedDict[str, Invocation] = collections.OrderedDict()
        # runtimes waiting in `next`: each is handed its invocation through this callback
        self._waiters: collections.deque[Callable[[Invocation], None]] = collections.deque()
        self._done_callbacks: dict[str, Callable[[Invocation], None]] = {}
        self._tails: dict[str, logs.Tail] = {}
        self._lines = logs.LineBuffer()  # the runtime's output, in whole lines
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._init_timer: asyncio.TimerHandle | None = None
        self._init_error: tuple[str, bytes] | None = None
        self._init_duration_ms: float | None = None  # measured, waiting for the first dispatch
        self._suppressed_init = False  # the init is a retry inside the invoke's own time
        self._warm: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # extensions (rie/sandbox/extensions.py): made per init when the function has any, or when an
        # internal one registers; None otherwise, so nothing of it runs for a plain function
        self.extensions: ExtensionHost | None = None
        # answered invocations whose REPORT waits for the extensions, each with its deadline
        self._held: dict[str, tuple[Invocation, asyncio.TimerHandle]] = {}
        self._init_started_at = 0.0
        # what the runtime did before its process was recorded: the spawn finishes off the loop,
        # and a quick runtime can be in `next` (or have posted its init error) before that
        self._next_before_recorded = False
        self._init_error_before_recorded = False
        self._stopping_extensions: asyncio.Task[int | None] | None = None
        self._closing_host: ExtensionHost | None = None  # shutting down, still answering

    # --- capacity, as the pool sees it -----------------------------------------------------

    @property
    def used_slots(self) -> int:
        return len(self.queued) + len(self.running)

    @property
    def free_slots(self) -> int:
        if self.state in (EnvState.RETIRED, EnvState.RESETTING) or self._held:
            return 0
        return self.capacity - len(self.queued) - len(self.running)  # asked of every env per pick

    @property
    def idle(self) -> bool:
        return (
            self.used_slots == 0
            and not self._held
            and self.state in (EnvState.COLD, EnvState.READY)
        )

    # --- life of the environment -----------------------------------------------------------

    async def open(self, factory: EndpointFactory) -> bool:
        """Bind this environment's Runtime API endpoint; start the runtime if work is waiting.

        If no endpoint can be had, whatever was assigned here is answered with the error and the
        environment retires (False)."""
        try:
            self.endpoint = await factory(self)
        except OSError as exc:
            log.error("environment %d: cannot open its Runtime API: %s", self.id, exc)
            self.state = EnvState.RETIRED
            self._fail_queued("Runtime.Unknown", f"the Runtime API could not listen: {exc}")
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            return False
        if self.queued and self.state is EnvState.COLD:
            self._start()
        return True

    def assign(self, inv: Invocation, on_done: Callable[[Invocation], None]) -> None:
        """Take an invocation (the pool has checked there is a free slot)."""
        self.last_used = time.monotonic()
        self._done_callbacks[inv.request_id] = on_done
        inv.on_final = self._finished
        if inv.request.want_tail:
            self._tails[inv.request_id] = logs.Tail()
        if self._metrics.feed is not None:  # a dashboard is open: it shows each one's log
            self._tails[inv.request_id] = logs.Tail(logs.LOG_LIMIT)
        self.queued.append(inv)
        if self.state is EnvState.COLD and self.endpoint is not None:
            self._start()
        else:
            self._hand_to_waiters()

    async def warm(self) -> bool:
        """Initialise ahead of any invocation (eager init, provisioned concurrency)."""
        if self.state is EnvState.COLD:
            self._start()
        if self._warm is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._warm)
        return self.state is EnvState.READY

    async def retire(self, grace_s: float = 0.0) -> None:
        """Stop the runtime (SIGTERM, then SIGKILL after `grace_s`), fail what is left, let go."""
        self.state = EnvState.RETIRED
        process, self.process = self.process, None
        host, self.extensions = self.extensions, None
        if self._stopping_extensions is not None:
            # the extensions of a reset are still being shut down: that ends within its deadline
            with contextlib.suppress(Exception):
                await self._stopping_extensions
        self._release_held()
        if host is not None:
            code = await self._shutdown_host(host, "spindown", process, grace_s)
            if process is not None:
                self.peak_memory_bytes = max(self.peak_memory_bytes, process.memory_used_bytes())
            if code is not None:
                self._fail_all(
                    "Runtime.ExitError", f"Runtime exited with error: {describe_exit(code)}"
                )
        elif process is not None:
            code = await process.stop(grace_s)
            self.peak_memory_bytes = max(self.peak_memory_bytes, process.memory_used_bytes())
            self._flush_partial()
            self._fail_all("Runtime.ExitError", f"Runtime exited with error: {describe_exit(code)}")
        self._fail_all(
            "Runtime.ExitError", "Runtime exited with error: the environment was shut down"
        )
        for task in list(self._tasks):
            task.cancel()
        if self.endpoint is not None:
            await self.endpoint.close()
        self._release_group()
        namespace.release_tmp(self.tmpdir)
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def _spawn_task(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start(self) -> None:
        self.state = EnvState.INITIALIZING
        self._init_error = None
        self._next_before_recorded = self._init_error_before_recorded = False
        loop = asyncio.get_running_loop()
        if self._warm is None or self._warm.done():
            self._warm = loop.create_future()
        self._spawn_task(self._start_process())

    def runtime_environment(self) -> dict[str, str]:
        assert self.endpoint is not None
        env = self.config.runtime_environment(self._base_env)
        env["AWS_LAMBDA_RUNTIME_API"] = self.endpoint.address
        env["AWS_LAMBDA_LOG_STREAM_NAME"] = self.log_stream
        env["TMPDIR"] = namespace.SANDBOX_TMP if self._fs_active else self.tmpdir
        if self._fs_active and env.get("LAMBDA_TASK_ROOT") == self.config.task_root:
            # the code is at Lambda's path too (rie/sandbox/namespace.py)
            env["LAMBDA_TASK_ROOT"] = namespace.LAMBDA_TASK_ROOT
        if self.provisioned:
            env["AWS_LAMBDA_INITIALIZATION_TYPE"] = "provisioned-concurrency"
        return env

    def fs_plan(self, command: Sequence[str], env: Mapping[str, str]) -> namespace.Plan | None:
        """The mounts a process of this environment gets: its /tmp, the code read-only, what it
        runs from kept reachable, and the paths under /tmp its variables name kept writable
        (None: no namespace here)."""
        if not self._fs_active or self.limits is None:
            return None
        config = self.config
        code = (config.task_root, *config.layers, *map(os.path.dirname, config.extension_paths))
        return namespace.plan(
            self.tmpdir if self.fs_mode == "root" else None,
            readonly=code,
            reachable=namespace.reachable_paths(command, env),
            cwd=config.task_root,
            tmp_bytes=self.limits.ephemeral_bytes,
            task_root=config.task_root,
            writable=namespace.channel_paths(env, _PLATFORM_VARIABLES),
            layers=config.layers,
        )

    async def _start_extensions(self) -> bool:
        """Start the external extensions and wait for their registration (Lambda starts the
        runtime after that); False if the init failed meanwhile."""
        host = self._make_host(self.config.extension_paths)
        try:
            await asyncio.wait_for(
                host.start(self.runtime_environment(), self.config.task_root),
                self.config.init_timeout_s,
            )
        except TimeoutError:
            self._init_error = (
                "Extension.InitError",
                b'{"errorType":"Extension.InitError","errorMessage":"extensions did not register in time"}',
            )
        if self.extensions is not host or self.state is not EnvState.INITIALIZING:
            return False
        if self._init_error is not None:
            self._fail_init_without_runtime()
            return False
        return True

    def _make_host(self, paths: tuple[str, ...]) -> ExtensionHost:
        from rie.sandbox.extensions import ExtensionHost

        host = ExtensionHost(
            self,
            paths,
            {
                "functionName": self.config.function_name,
                "functionVersion": self.config.function_version,
                "handler": self.config.handler,
                "accountId": self.config.account_id,
            },
            self._sink.write,
            cgroup_prefix=cgroup_name(self.id, self.init_count + 1),
            cgroup_parent=self._group,
            fs_plan=self.fs_plan,
            json_logs=self.config.runtime_environment(self._base_env)
            .get("AWS_LAMBDA_LOG_FORMAT", "")
            .upper()
            == "JSON",
        )
        self.extensions = host
        host.platform_init_start(self._init_type, self.log_stream, self.config.memory_mb)
        return host

    @property
    def _init_type(self) -> str:
        return "provisioned-concurrency" if self.provisioned else "on-demand"

    def extension_api(self) -> ExtensionHost:
        """The host that answers this environment's Extensions API calls: the one of this init
        (or of the one shutting down). With none, one is made: kept if the environment is in its
        init (an internal extension registers from inside the runtime's process), else only to
        answer this call (registration is closed, no identifier is known)."""
        host = self.extensions or self._closing_host
        if host is not None:
            return host
        host = self._make_host(())
        if self.state is not EnvState.INITIALIZING:
            self.extensions = None
            host.end_init()
        return host

    def _fail_init_without_runtime(self) -> None:
        """An extension failed the init before the runtime was started."""
        assert self._init_error is not None
        error_type, body = self._init_error
        self._init_error = None
        self._waiters.clear()
        init_ms = (time.perf_counter() - self._init_started_at) * 1000
        self._emit_init_failed("error", error_type, init_ms)
        self._platform_line(logs.init_report_line(init_ms, "error", error_type))
        for inv in list(self.queued):
            inv.init_duration_ms = init_ms
            inv.fail(error_type, body=body)
        self.state = EnvState.COLD
        self._stop_extensions("failure")
        self._settle_warm()

    def _stop_extensions(self, reason: str, process: Process | None = None) -> None:
        self._end_held()
        host, self.extensions = self.extensions, None
        if host is not None:
            self._stopping_extensions = asyncio.ensure_future(
                self._shutdown_host(host, reason, process, 0.0)
            )

    async def _shutdown_host(
        self, host: ExtensionHost, reason: str, process: Process | None, grace_s: float
    ) -> int | None:
        """Shut the extensions down; meanwhile they still reach their host on this endpoint."""
        self._closing_host = host
        try:
            return await host.shutdown(reason, process, grace_s)
        finally:
            if self._closing_host is host:
                self._closing_host = None

    async def _start_process(self) -> None:
        self._init_started_at = time.perf_counter()
        if self._stopping_extensions is not None:
            # the extensions of the last init are gone before new ones start
            with contextlib.suppress(Exception):
                await self._stopping_extensions
            self._stopping_extensions = None
        if self.fs_mode == "root" and self.limits is not None:
            # a fresh environment's /tmp is empty, as after a reset on Lambda
            self._fs_active = namespace.fresh_tmp(self.tmpdir, self.limits.ephemeral_bytes)
        else:
            self._fs_active = self.fs_mode == "userns"  # each process mounts its own
        name = cgroup_name(self.id, self.init_count + 1)
        await self._new_group(name)
        self._extension_oom = False
        if self.config.extension_paths and not await self._start_extensions():
            return
        command = self.config.command
        env = self.runtime_environment()
        wrapper = env.get("AWS_LAMBDA_EXEC_WRAPPER")
        if wrapper and command[1:3] == ("-c", RUNTIME_ENTRY):
            # as Lambda's managed runtimes do: the wrapper script gets the runtime's command
            command = (wrapper, *command)
        try:
            process = await spawn(
                command,
                env,
                self.config.task_root,
                self._output,
                cgroup_name=f"{name}/runtime" if self._group is not None else name,
                limits=self.limits,
                fs=self.fs_plan(command, env),
                cgroup_parent=self._group,
            )
        except (OSError, ValueError) as exc:  # ValueError: what execve cannot pass (a NUL)
            log.error("environment %d: cannot start %s: %s", self.id, command[0], exc)
            self.state = EnvState.COLD
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            self._fail_queued("Runtime.InvalidEntrypoint", f"fork/exec {command[0]}: {reason}")
            self._settle_warm()
            return
        if self.state is not EnvState.INITIALIZING or (
            self._init_error is not None and not self._init_error_before_recorded
        ):
            # retired while spawning, or an extension failed the init meanwhile
            self._waiters.clear()  # a `next` of this runtime goes with it
            await process.stop(0)
            if self.state is EnvState.INITIALIZING:
                self._fail_init_without_runtime()
            return
        self.process = process
        self.init_count += 1
        self.peak_memory_bytes = 0  # a fresh process is a fresh sandbox, as after a Lambda reset
        self._memory_sampled_at = 0.0
        limit = self.config.timeout_s if self._suppressed_init else self.config.init_timeout_s
        # one limit for the whole init: what the extensions took of it is gone
        limit = max(0.0, limit - (time.perf_counter() - self._init_started_at))
        self._init_timer = asyncio.get_running_loop().call_later(
            limit, self._init_timed_out, process
        )
        self._spawn_task(self._watch(process))
        if self._init_error_before_recorded:
            self._kill_after_init_error(process)
        elif self._next_before_recorded:
            self._runtime_in_next()

    async def _new_group(self, name: str) -> None:
        """This init's cgroup, in place of the last one's (whose processes are gone by now)."""
        self._release_group()
        if self.limits is not None and MemoryCgroup.base() is not None:
            loop = asyncio.get_running_loop()
            # off the loop, as a runtime's own group is made: a few writes into /sys
            making = loop.run_in_executor(None, MemoryCgroup.create_shared, name, self.limits)
            try:
                group = await asyncio.shield(making)
            except asyncio.CancelledError:  # retired meanwhile: the group goes once it is made
                making.add_done_callback(self._release_made)
                raise
            if self.state is EnvState.RETIRED:
                self._release_group(group)
            else:
                self._group = group

    def _release_made(self, making: asyncio.Future[MemoryCgroup | None]) -> None:
        if not making.cancelled() and making.exception() is None:
            self._release_group(making.result())

    def _release_group(self, group: MemoryCgroup | None = None) -> None:
        """Let go of this init's group (or `group`): removed once its processes have left it."""
        if group is None:
            group, self._group = self._group, None
        if group is not None and not group.remove():
            MemoryCgroup.pending.add(group)  # removed once empty, at the latest at shutdown
            loop = asyncio.get_running_loop()
            for delay in (0.05, 0.25, 1.0, 5.0):
                loop.call_later(delay, group.remove)

    async def _watch(self, process: Process) -> None:
        code = await process.exited
        if self.process is process:
            self._exited(process, code)

    def _settle_warm(self) -> None:
        if self._warm is not None and not self._warm.done():
            self._warm.set_result(None)

    # --- the runtime's side (called by the Runtime API handlers) ---------------------------

    def request_next(self, deliver: Callable[[Invocation], None]) -> Invocation | None:
        """The runtime asks for its next invocation: returned at once if one is waiting, else
        handed to `deliver` when one comes (until `cancel_next`)."""
        if self.state is EnvState.INITIALIZING and self._init_error is None:
            self._waiters.append(deliver)
            if self.process is None:
                # its process is not recorded yet (the spawn returns off the loop, and may return
                # after the runtime's first call): the init ends once it is
                self._next_before_recorded = True
            else:
                self._runtime_in_next()
            return None
        if self._init_error is not None or self.state is not EnvState.READY:
            # a runtime that reported a failed init, or one being reset, gets nothing more
            return None
        if self.capacity == 1 and self.running:
            # the official emulator's behaviour: a second `next` gets the active event again
            return next(iter(self.running.values()))
        if self.queued:
            inv = self.queued.popleft()
            self._dispatch(inv)
            return inv
        self._waiters.append(deliver)
        return None

    def _runtime_in_next(self) -> None:
        """The runtime of this init is in `next` (its `deliver` waits): the init ends, unless the
        extensions are still initialising (then it ends when they are in `next` too)."""
        host = self.extensions
        if host is not None and not host.init_done:
            host.phases.runtime_in_next = True
            return
        self._init_finished()
        self._hand_to_waiters()

    def cancel_next(self, deliver: Callable[[Invocation], None]) -> None:
        """A runtime waiting in `next` has gone: it must not be handed an invocation."""
        if deliver in self._waiters:
            self._waiters.remove(deliver)

    def _hand_to_waiters(self) -> None:
        while self.queued and self._waiters:
            deliver = self._waiters.popleft()
            alive = getattr(deliver, "alive", None)
            if alive is not None and not alive():
                continue  # hung up: its end of input is yet to be read (then cancel_next)
            inv = self.queued.popleft()
            self._dispatch(inv)
            deliver(inv)

    def lookup(self, request_id: str, target: State) -> Invocation:
        """The running invocation with this id; 403 if it is already over here, 400 if unknown."""
        inv = self.running.get(request_id)
        if inv is not None:
            return inv
        inv = self._recent.get(request_id)
        if inv is not None:
            raise InvalidStateTransition(inv.state.value, target.value)
        raise InvalidRequestID()

    def init_error(self, error_type: str, body: bytes) -> None:
        if self.state is not EnvState.INITIALIZING or self._init_error is not None:
            source = "InitError" if self._init_error is not None else "Ready"
            raise InvalidStateTransition(source, "InitError")
        self._init_error = (error_type, body)
        if self.process is None:
            self._init_error_before_recorded = True  # killed once recorded
        else:
            self._kill_after_init_error(self.process)

    def _kill_after_init_error(self, process: Process) -> None:
        # a moment to flush its logs and exit by itself
        asyncio.get_running_loop().call_later(_INIT_ERROR_GRACE_S, self._kill_if_current, process)

    # --- inner workings --------------------------------------------------------------------

    def _init_finished(self) -> None:
        assert self.process is not None
        if self._init_timer is not None:
            self._init_timer.cancel()
            self._init_timer = None
        self.state = EnvState.READY
        started = min(self.process.started_at, self._init_started_at or self.process.started_at)
        init_ms = (time.perf_counter() - started) * 1000
        host = self.extensions
        if host is not None:
            runtime_ms = (time.perf_counter() - self.process.started_at) * 1000
            host.end_init(self._init_type, runtime_ms, init_ms)
        self._metrics.init_done(init_ms, self.provisioned)
        # provisioned environments are initialised outside any invocation: Lambda reports no
        # Init Duration for them
        self._init_duration_ms = None if self.provisioned and not self._suppressed_init else init_ms
        self._suppressed_init = False
        self._settle_warm()

    def _dispatch(self, inv: Invocation) -> None:
        inv.dispatch()
        if self._init_duration_ms is not None:
            inv.init_duration_ms, self._init_duration_ms = self._init_duration_ms, None
        self.running[inv.request_id] = inv
        self._timers[inv.request_id] = asyncio.get_running_loop().call_later(
            inv.timeout_s, self._timed_out, inv
        )
        self._platform_line(
            logs.start_line(inv.request_id, self.config.function_version), (inv.request_id,)
        )
        host = self.extensions
        if host is not None:
            host.platform_start(inv, self.config.function_version)
            host.invoke(
                inv.request_id,
                inv.deadline_ms,
                inv.request.invoked_function_arn,
                inv.request.trace_id,
            )

    def _output(self, data: bytes) -> None:
        """The runtime's output, passed on in whole lines only."""
        data = self._lines.feed(data)
        if data:
            self._emit(data)

    def _flush_partial(self) -> None:
        """End the runtime's unfinished line, so that a platform line stands on its own."""
        data = self._lines.flush()
        if data:
            self._emit(data)

    def _emit(self, data: bytes) -> None:
        self._sink.write(data)
        host = self.extensions
        if host is not None and host.telemetry.active:
            host.telemetry.output("function", data)
        if self._tails:
            owners = self.running or {inv.request_id: inv for inv in self.queued}
            for request_id in owners:
                tail = self._tails.get(request_id)
                if tail is not None:
                    tail.append(data)

    def _platform_line(self, line: str, request_ids: tuple[str, ...] | None = None) -> None:
        """A line of the platform's own (START, END, REPORT, INIT_REPORT, a timeout): always a
        line of its own, and in the tails of `request_ids` (default: those waiting or running)."""
        self._flush_partial()
        data = line.encode()
        self._sink.write(data)
        if self._tails:
            if request_ids is None:
                request_ids = (*self.running, *(inv.request_id for inv in self.queued))
            for request_id in request_ids:
                tail = self._tails.get(request_id)
                if tail is not None:
                    tail.append(data)

    def _finished(self, inv: Invocation) -> None:
        """Every invocation of this environment ends here, exactly once."""
        timer = self._timers.pop(inv.request_id, None)
        if timer is not None:
            timer.cancel()
        process = self.process
        if process is not None:
            # everything it printed before it answered is in the pipe: it is this invocation's,
            # so it is read while the invocation still owns the output
            process.drain_output()
            self._sample_memory(process, inv)
        if inv.dispatched_at is None:
            # never reached the runtime (a failed init): Lambda still logs START for it
            self._platform_line(
                logs.start_line(inv.request_id, self.config.function_version), (inv.request_id,)
            )
        self._flush_partial()
        if self.running.pop(inv.request_id, None) is None and inv in self.queued:
            self.queued.remove(inv)  # it ended before the runtime fetched it
        self._recent[inv.request_id] = inv
        if len(self._recent) > _RECENT_IDS:
            self._recent.popitem(last=False)
        host = self.extensions
        if host is not None and inv.dispatched_at is not None:
            host.platform_runtime_done(inv)
            if host.busy and inv.state in (State.RESPONDED, State.ERRORED):
                # the caller has its answer now; the environment waits for the extensions, and
                # the REPORT (with their time) comes when they are back in `next`
                self._hold(inv)
                return
        self._report(inv)

    def _report(
        self, inv: Invocation, duration_ms: float | None = None, status: str | None = None
    ) -> None:
        """END and REPORT of an invocation; the caller is answered here unless it already was.
        `status`: REPORT's Status when the platform ended the invoke phase after the response
        (extensions past the deadline)."""
        held_ms, duration_ms = duration_ms, inv.duration_ms if duration_ms is None else duration_ms
        max_memory_mb = -(-self.peak_memory_bytes // (1024 * 1024))
        self._flush_partial()  # (a held invocation's REPORT comes after the runtime went on)
        text = logs.end_line(inv.request_id) + logs.report_line(
            inv.request_id,
            duration_ms,
            self.config.memory_mb,
            max_memory_mb,
            inv.init_duration_ms,
            status or inv.report_status,
            inv.outcome.error_type if inv.outcome else None,
        )
        data = text.encode()
        self._sink.write(data)
        # out before the caller's answer (one write with START and the output, gathered since),
        # so that whoever reads the log once answered finds the whole invocation there
        self._sink.flush()
        tail = self._tails.pop(inv.request_id, None)
        if tail is not None:
            tail.append(data)
            inv.tail = tail.value()
        self.last_used = time.monotonic()
        self.invocations += 1
        self._metrics.invocation_done(inv, held_ms)
        feed = self._metrics.feed
        if feed is not None:
            error_type = inv.outcome.error_type if inv.outcome else None
            log_text = tail.whole() if tail is not None else data
            cut = tail is not None and tail.cut
            feed.reported(inv, self.id, duration_ms, max_memory_mb, error_type, log_text, cut)
        host = self.extensions
        if host is not None and inv.dispatched_at is not None:
            host.platform_report(inv, duration_ms, self.config.memory_mb, max_memory_mb, status)
        callback = self._done_callbacks.pop(inv.request_id, None)
        if callback is not None:
            callback(inv)
        if self.state is not EnvState.RETIRED:
            self._on_slot_free(self)

    def _hold(self, inv: Invocation) -> None:
        """The caller has its answer; the invocation's REPORT (and the environment's next
        invocation) wait until the extensions are back in `next`, or its deadline."""
        # (with a dashboard open, the tail stays until the REPORT, which it shows too)
        tail = self._tails.get(inv.request_id)
        if self._metrics.feed is None:
            self._tails.pop(inv.request_id, None)
        if tail is not None:
            inv.tail = tail.value()
        left_s = max(0.0, inv.deadline_ms / 1000 - time.time())
        timer = asyncio.get_running_loop().call_later(left_s, self._held_timed_out, inv)
        self._held[inv.request_id] = (inv, timer)
        callback = self._done_callbacks.pop(inv.request_id, None)
        if callback is not None:
            callback(inv)

    def _release_held(self, timed_out: str | None = None) -> None:
        """The extensions are done with the held invocations (or gone): their REPORTs (the one
        whose deadline passed, `timed_out`, with `Status: timeout`), then the environment takes
        its next invocation."""
        held, self._held = self._held, {}
        for request_id, (inv, timer) in held.items():
            timer.cancel()
            assert inv.dispatched_at is not None
            status = "timeout" if request_id == timed_out else None
            self._report(inv, (time.perf_counter() - inv.dispatched_at) * 1000, status)
        if held:
            self._hand_to_waiters()

    def _held_timed_out(self, inv: Invocation) -> None:
        if inv.request_id not in self._held:
            return
        self._platform_line(logs.timeout_line(inv.request_id, inv.timeout_s), ())
        self._end_held(inv.request_id)
        self._reset("timeout")

    def _end_held(self, timed_out: str | None = None) -> None:
        """Report the held invocations because the environment is being reset: the slots they
        free must not take new work meanwhile."""
        if not self._held:
            return
        state, self.state = self.state, EnvState.RESETTING
        self._release_held(timed_out)
        self.state = state

    # --- what the extensions tell (rie/sandbox/extensions.py) ---------------------------------------

    def extensions_ready(self) -> None:
        """Every extension waits in `next`: init may end, or the held invocation is over."""
        if self.state is EnvState.INITIALIZING:
            host = self.extensions
            if host is not None and host.phases.runtime_in_next and self._init_error is None:
                self._init_finished()
                self._hand_to_waiters()
        elif self._held:
            self._release_held()

    def extension_failed(self, error_type: str, message: str) -> None:
        """An extension crashed or reported an error: the init fails, or the environment is reset."""
        body = error_body(error_type, message)
        if self.state is EnvState.INITIALIZING:
            if self._init_error is None:
                self._init_error = (error_type, body)
            if self.process is not None:
                self.process.kill_everything()  # its exit fails the init with this error
            return
        if self.state is not EnvState.READY:
            return
        self._end_held()
        for inv in list(self.running.values()):
            inv.fail(error_type, body=body)
        self._reset("failure")

    def extension_out_of_memory(self) -> None:
        """The kernel's OOM killer ended an extension: the environment's memory, which the
        runtime shares, ran out. As on Lambda, that is `Runtime.OutOfMemory` (the invocation,
        or the init, fails with it) and the environment is reset."""
        if self.state is EnvState.INITIALIZING and self.process is None:
            if self._init_error is None:  # the extensions' start fails the init with it
                message = f"Runtime exited with error: {describe_exit(-signal.SIGKILL)}"
                self._init_error = (
                    "Runtime.OutOfMemory",
                    error_body("Runtime.OutOfMemory", message),
                )
            return
        if self.process is not None and self.state in (EnvState.INITIALIZING, EnvState.READY):
            self._extension_oom = True
            self.process.kill_everything()  # its exit reports the OOM and resets

    def _sample_memory(self, process: Process, inv: Invocation) -> None:
        # Reading /proc costs a few files per sample. The peak (VmHWM) only grows, so a burst of
        # short invocations can share one sample; anything that ran long enough to grow much is
        # measured afresh, and a stale figure is caught up by the next sample anyway.
        now = time.monotonic()
        if now - self._memory_sampled_at < _MEMORY_SAMPLE_S and inv.duration_ms < 5:
            return
        self._memory_sampled_at = now
        used = process.memory_used_bytes()
        host = self.extensions
        if host is not None:
            used += host.memory_used_bytes()  # Lambda's figure is the whole sandbox's
        self.peak_memory_bytes = max(self.peak_memory_bytes, used)

    def _timed_out(self, inv: Invocation) -> None:
        if inv.state not in (State.RUNNING, State.STREAMING):
            return
        process = self.process
        if process is not None:
            # what it printed until now is this invocation's, and so is its memory
            process.drain_output()
            self.peak_memory_bytes = max(self.peak_memory_bytes, process.memory_used_bytes())
        self._platform_line(logs.timeout_line(inv.request_id, inv.timeout_s), (inv.request_id,))
        # reset first, answer second: the slot the invocation frees must not be handed back to
        # an environment that is being torn down (the pool replaces it instead)
        self._reset("timeout")
        inv.time_out()

    def _init_timed_out(self, process: Process) -> None:
        if self.process is not process or self.state is not EnvState.INITIALIZING:
            return
        init_ms = (time.perf_counter() - process.started_at) * 1000
        self._emit_init_failed("timeout", "Sandbox.Timedout", init_ms)
        self._platform_line(logs.init_report_line(init_ms, "timeout"))
        if self._suppressed_init:
            # the retried init used up the invocation's own time
            for inv in list(self.queued):
                inv.time_out()
            self._suppressed_init = False
        elif self.queued:
            # Lambda retries a timed-out init inside the invocation, with the function's timeout
            self._suppressed_init = True
        self._reset("timeout")

    def _emit_init_failed(self, status: str, error_type: str, init_ms: float) -> None:
        host = self.extensions
        if host is not None:
            host.platform_init_done(self._init_type, status, init_ms, init_ms, error_type)

    def _kill_if_current(self, process: Process) -> None:
        if self.process is process:
            process.kill_everything()

    def _reset(self, reason: str = "failure") -> None:
        """Kill the process group; start again at once if work (or provisioning) is waiting.
        With extensions: SHUTDOWN (`reason`) to them first, SIGTERM to the runtime, then kill."""
        process, self.process = self.process, None
        if process is None or self.state is EnvState.RETIRED:
            if process is None and self.extensions is not None and self.state is EnvState.READY:
                self._stop_extensions(reason)
            return
        self.state = EnvState.RESETTING
        self._spawn_task(self._finish_reset(process, reason))

    async def _finish_reset(self, process: Process, reason: str) -> None:
        self._release_held()  # its REPORT first; the state (RESETTING) takes no new work
        host, self.extensions = self.extensions, None
        if host is not None:
            code = await self._shutdown_host(host, reason, process, host.phases.shutdown_ms / 1000)
            if code is None:
                code = await process.exited
        else:
            code = await process.stop(0)
        self.peak_memory_bytes = max(self.peak_memory_bytes, process.memory_used_bytes())
        self._after_exit(process, code)

    def _exited(self, process: Process, code: int) -> None:
        """The runtime exited by itself."""
        self.process = None
        process.drain_output()
        process.kill_everything()  # whatever it left behind (group and cgroup) goes with it
        # a memory cgroup still knows the peak of a process that is gone
        self.peak_memory_bytes = max(self.peak_memory_bytes, process.memory_used_bytes())
        # the cgroup's own OOM counter tells the kernel's kill from anyone else's SIGKILL; the
        # memory an extension ran out of is the runtime's too (killed for it: see below)
        oom = code == -signal.SIGKILL and (process.oom_killed() or self._extension_oom)
        process.release()
        self._after_exit(process, code, oom)

    def _after_exit(self, process: Process, code: int, oom: bool = False) -> None:
        if self.state is EnvState.RETIRED:
            return
        self._flush_partial()
        failed_init = self.state is EnvState.INITIALIZING
        self._waiters.clear()  # their connections go with the process
        if self._init_timer is not None:
            self._init_timer.cancel()
            self._init_timer = None
        reason = f"Runtime exited with error: {describe_exit(code)}"
        exit_type = "Runtime.ExitError"
        if oom:
            # as Lambda: the sandbox used all its memory (REPORT's Max Memory Used is the size)
            exit_type = "Runtime.OutOfMemory"
            self.peak_memory_bytes = self.config.memory_mb * MB
        if self.state is EnvState.INITIALIZING:
            init_ms = (time.perf_counter() - process.started_at) * 1000
            if oom:
                self._init_error = None  # what it said before the kill is not why it ended
            self._emit_init_failed(
                "error", self._init_error[0] if self._init_error else exit_type, init_ms
            )
            if self._init_error is not None:
                error_type, body = self._init_error
                self._platform_line(logs.init_report_line(init_ms, "error", error_type))
                for inv in list(self.queued):
                    inv.init_duration_ms = init_ms
                    inv.fail(error_type, body=body)
            else:
                self._platform_line(logs.init_report_line(init_ms, "error", exit_type))
                for inv in list(self.queued):
                    inv.init_duration_ms = init_ms
                    inv.fail(exit_type, reason)
            self._init_error = None
        for inv in list(self.running.values()):
            # Lambda's log lines for a runtime that ended during the invocation (an exit, a
            # signal, the OOM killer), before END and REPORT
            self._platform_line(
                f"RequestId: {inv.request_id} Error: {reason}\n{exit_type}\n", (inv.request_id,)
            )
            inv.fail(exit_type, reason)
        if self.extensions is not None:
            self._stop_extensions("failure")
        self.state = EnvState.COLD
        self._settle_warm()
        # a provisioned environment is made ready again, unless its init is what fails (then it
        # inits on demand, so that a broken function does not restart in a loop)
        if self.queued or self._suppressed_init or (self.provisioned and not failed_init):
            self._start()
        self._on_slot_free(self)  # usable again (or, if the pool replaced it, to retire)

    def _fail_queued(self, error_type: str, message: str) -> None:
        for inv in list(self.queued):
            inv.fail(error_type, message)

    def _fail_all(self, error_type: str, message: str) -> None:
        self._fail_queued(error_type, message)
        for inv in list(self.running.values()):
            inv.fail(error_type, message)
