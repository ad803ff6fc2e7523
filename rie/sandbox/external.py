"""An environment whose runtime rie does not start (`--external-runtime`): a runtime in a
container, under a debugger in an IDE, or any other process connects to the environment's Runtime
API and calls `next`.

What differs from an environment rie spawns, and why (docs/containers.md says it to users):
- nothing is started: the environment binds its endpoint at start-up, prints where the runtime
  should point AWS_LAMBDA_RUNTIME_API and with which variables (or writes them to a file), and
  waits for a `next`; external extensions are not started either;
- nothing is killed: rie cannot stop a process it does not own. A timeout answers the caller
  (Sandbox.Timedout) and keeps the environment: the runtime's late answer is refused (403) and
  its next `next` gets the next invocation. A runtime whose init failed (init/error) is let go of
  after the usual grace; the environment then waits for a runtime to connect again;
- a runtime that disconnects (a debugger restart) is simply waited for: an invocation that is
  running when it comes back is handed to it again (the official emulator's rule for a second
  `next`); an invocation no runtime takes within its timeout is answered Sandbox.Timedout;
- Init Duration counts from the runtime's first call (its `next` or init/error): rie cannot see
  it start, so the figure only marks the cold start; Max Memory Used is 0 MB (not measured);
- the runtime's own output stays where it runs: rie's log has the platform lines only; rie's
  sandbox (`--sandbox`: memory, CPU, /tmp) is not applied to it.

The pool gives such a function one environment (max concurrency 1), never retired for idleness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from rie.model.invocation import Invocation
from rie.observe import logs
from rie.sandbox.environment import EndpointFactory, Environment, EnvState
from rie.sandbox.supervisor import Process

log = logging.getLogger("rie")

# what belongs to where the runtime runs (its image or project sets them), unless the function's
# own variables name them
_WHERE_IT_RUNS = ("LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR")
_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class ExternalRuntime(Process):
    """Stands where a started runtime's `Process` stands, for a runtime rie did not start: it
    has no pid, output or memory figure of rie's, and stopping it only lets go of it."""

    def __init__(self) -> None:  # (no process to adopt: Process.__init__ is not called)
        self.pid = 0
        self.started_at = time.perf_counter()
        self.contacted = False  # the runtime has made its first call since it was attached
        self._gone: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.exited = asyncio.ensure_future(self._wait())

    async def _wait(self) -> int:
        return await self._gone

    @property
    def returncode(self) -> int | None:
        return self._gone.result() if self._gone.done() else None

    def drain_output(self) -> None:
        pass  # its output is not rie's

    def signal_group(self, sig: int) -> None:
        pass

    def kill_everything(self) -> None:
        """Let go of it: the environment sees it as gone (and waits for a runtime again)."""
        if not self._gone.done():
            self._gone.set_result(0)

    async def stop(self, grace_s: float) -> int:
        self.kill_everything()
        return await self.exited

    def release(self) -> None:
        pass

    def oom_killed(self) -> bool:
        return False

    def memory_used_bytes(self) -> int:
        return 0  # rie cannot measure a process it does not run (it may be in a container)


class ExternalEnvironment(Environment):
    """The one environment of an `--external-runtime` function."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # invocations waiting for the runtime's `next`, each with the end of its wait
        self._untaken: dict[str, asyncio.TimerHandle] = {}

    async def open(self, factory: EndpointFactory) -> bool:
        if not await super().open(factory):
            return False
        if self.config.extension_paths:
            log.warning(
                "rie starts no extensions beside an external runtime: %d ignored",
                len(self.config.extension_paths),
            )
        if self.state is EnvState.COLD:
            self._start()
        self._announce()
        return True

    async def warm(self) -> bool:
        """Nothing to warm: the runtime comes when it comes, and start-up does not wait for it."""
        if self.state is EnvState.COLD:
            self._start()
        return True

    @property
    def idle(self) -> bool:
        return False  # never retired for idleness: its runtime would lose its endpoint

    def announced_environment(self) -> dict[str, str]:
        """The variables the runtime should be started with: Lambda's and the function's own;
        not rie's own environment (which a runtime rie starts inherits), nor empty credentials
        (which would hide the ones where the runtime runs)."""
        assert self.endpoint is not None
        env = {"AWS_LAMBDA_RUNTIME_API": self.endpoint.address}
        env.update(self.config.runtime_environment({}))
        env["AWS_LAMBDA_LOG_STREAM_NAME"] = self.log_stream
        own = self.config.user_env
        for key in _WHERE_IT_RUNS:
            if key not in own:
                del env[key]
        for key in _CREDENTIALS:
            if not env.get(key):
                env.pop(key, None)
        return env

    def _announce(self) -> None:
        assert self.endpoint is not None
        address = self.endpoint.address
        env = self.announced_environment()
        path = self.config.external_runtime_env
        if path:
            try:
                _write_env_file(path, env)
                rest = f"with the variables in {path}"
            except OSError as exc:
                log.error("cannot write %s: %s", path, exc.strerror or exc)
                path = None
        if not path:
            import shlex  # only here, once

            pairs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
            rest = f"with: env {pairs}"
        print(
            f"rie: waiting for an external runtime on {address}: start it {rest}",
            file=sys.stderr,
            flush=True,
        )

    # --- attaching instead of spawning -------------------------------------------------------

    def _start(self) -> None:
        super()._start()
        # attached at once, not in a task: a runtime may be calling `next` already (one that
        # retries, or the next after a failed init), and must find its process there
        process = ExternalRuntime()
        self._init_started_at = process.started_at
        self.process = process
        self.init_count += 1
        self.peak_memory_bytes = 0
        # no init timer: a person may take minutes to start a debugger, and nothing could be
        # killed at its end anyway; an invocation waits for the runtime within its own timeout
        self._spawn_task(self._watch(process))

    async def _start_process(self) -> None:
        """Nothing to start (the runtime was attached in `_start`)."""

    def _contact(self) -> None:
        process = self.process
        if isinstance(process, ExternalRuntime) and not process.contacted:
            process.contacted = True
            if self.state is EnvState.INITIALIZING:
                process.started_at = self._init_started_at = time.perf_counter()

    def request_next(self, deliver: Callable[[Invocation], None]) -> Invocation | None:
        self._contact()
        return super().request_next(deliver)

    def init_error(self, error_type: str, body: bytes) -> None:
        self._contact()
        super().init_error(error_type, body)

    def _after_exit(self, process: Process, code: int, oom: bool = False) -> None:
        """Let go of (after a failed init): wait for a runtime to connect again."""
        super()._after_exit(process, code, oom)
        if self.state is EnvState.COLD:
            self._start()

    def _reset(self, reason: str = "failure") -> None:
        """Nothing to kill or restart: the runtime and the environment stay (its late answers
        are refused, as any answer to an invocation that is over); extensions are shut down."""
        if self.extensions is not None and self.state is EnvState.READY:
            self._stop_extensions(reason)

    async def retire(self, grace_s: float = 0.0) -> None:
        self.process = None  # not ours to stop
        for handle in self._untaken.values():
            handle.cancel()
        self._untaken.clear()
        await super().retire(grace_s)

    # --- invocations wait for the runtime within their timeout -----------------------------

    def assign(self, inv: Invocation, on_done: Callable[[Invocation], None]) -> None:
        super().assign(inv, on_done)
        if inv.dispatched_at is None and not inv.final:
            self._untaken[inv.request_id] = asyncio.get_running_loop().call_later(
                inv.timeout_s, self._not_taken, inv
            )

    def _dispatch(self, inv: Invocation) -> None:
        handle = self._untaken.pop(inv.request_id, None)
        if handle is not None:
            handle.cancel()
        super()._dispatch(inv)

    def _not_taken(self, inv: Invocation) -> None:
        self._untaken.pop(inv.request_id, None)
        if inv.dispatched_at is not None or inv.final:
            return
        address = self.endpoint.address if self.endpoint is not None else "?"
        log.warning(
            "invocation %s: no runtime called next on %s within its timeout",
            inv.request_id,
            address,
        )
        self._platform_line(logs.timeout_line(inv.request_id, inv.timeout_s), (inv.request_id,))
        inv.time_out()


def _write_env_file(path: str, env: dict[str, str]) -> None:
    """KEY=VALUE lines (docker's --env-file, VS Code's envFile), replaced whole: a reader never
    sees half a file. Only the owner may read it (the function's variables may be secrets)."""
    lines = []
    for key, value in env.items():
        if "\n" in value or "\r" in value:
            log.warning("%s: %s holds a line break: left out (KEY=VALUE lines only)", path, key)
            continue
        lines.append(f"{key}={value}\n")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".rie-env-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(lines)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
