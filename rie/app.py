"""Wiring, start-up and ordered shutdown of one emulator.

`Server` only orchestrates: it builds one `Function` (pool and Event queue) per config and the
Invoke API in front of them, starts them in order, and on SIGTERM/SIGINT stops them in the reverse
order, each step bounded in time, so that every accepted invocation of every function is answered
and no runtime process outlives the emulator. Settings of the emulator itself (addresses, log
level, shutdown grace) are the first config's.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rie.api import extensions as extensions_api
from rie.api import runtime as runtime_api
from rie.functions.registry import Function, Functions
from rie.observe import logs
from rie.sandbox.environment import Endpoint, Environment
from rie.sandbox.supervisor import MemoryCgroup, sweep_leftovers
from rie.settings.config import Config

if TYPE_CHECKING:  # aiohttp is imported only for the dashboard (`--dashboard`)
    from rie.api.invoke import InvokeApi
    from rie.fronts.dashboard import Dashboard
    from rie.http.aiohttp_server import Runner
    from rie.http.protocol import Server as HttpServer
    from rie.settings.layers import Layers

log = logging.getLogger("rie")

DEFAULT_EXTENSIONS_DIR = "/opt/extensions"


class Server:
    def __init__(
        self,
        configs: Config | Sequence[Config],
        environ: Mapping[str, str],
        *,
        own_process: bool = False,
    ) -> None:
        """`own_process`: the emulator is alone in its process (the `rie` command)."""
        self._own_process = own_process
        configs = [configs] if isinstance(configs, Config) else list(configs)
        self.layers: list[Layers] = []
        # each function's layers and extensions, and the variables its layers add
        try:
            prepared = [self._with_layers(config, environ) for config in configs]
        except ValueError:
            for layers in self.layers:
                layers.cleanup()
            raise
        configs = [config for config, _ in prepared]
        self.config = configs[0]
        self.sink = logs.Sink()
        several = len(configs) > 1
        self.functions = Functions(
            [
                Function(
                    config,
                    fn_environ,
                    self.sink,
                    self._bind_endpoint,
                    log_prefix=f"[{config.function_name}] " if several else "",
                )
                for config, fn_environ in prepared
            ]
        )
        self._invoke_api: InvokeApi | None = None
        self._watching: asyncio.Task[None] | None = None
        self._stop_watching = asyncio.Event()
        self._http_server: HttpServer | None = None
        self.http_port = 0
        self._dashboard_runner: Runner | None = None
        self.dashboard: Dashboard | None = None
        self.dashboard_port = 0
        self._first_endpoint_taken = False
        self.invoke_port = 0

    def _with_layers(
        self, config: Config, environ: Mapping[str, str]
    ) -> tuple[Config, Mapping[str, str]]:
        """A function's layers, unpacked once for all its environments, what they add to its
        variables, and the external extensions its environments start."""
        extensions_dir = config.extensions_dir
        if extensions_dir is None and os.path.isdir(DEFAULT_EXTENSIONS_DIR):
            extensions_dir = DEFAULT_EXTENSIONS_DIR
        if not config.layers and extensions_dir is None:
            return config, environ
        from rie.model.phases import MAX_EXTENSIONS
        from rie.sandbox.extensions import find_extensions
        from rie.settings.layers import Layers

        layers = Layers.prepare(config.layers)
        self.layers.append(layers)
        environ = {**environ, **layers.environment(environ)}
        dirs = [*([extensions_dir] if extensions_dir else []), *layers.extension_dirs()]
        paths = find_extensions(dirs)
        if len(paths) > MAX_EXTENSIONS:
            log.warning("%d extensions found: Lambda starts at most %d", len(paths), MAX_EXTENSIONS)
        return dataclasses.replace(config, extension_paths=tuple(paths)), environ

    async def _bind_endpoint(self, env: Environment) -> Endpoint:
        # the first environment gets the configured Runtime API address (9001 by default, as the
        # official emulator); the others take free loopback ports
        port = 0
        if not self._first_endpoint_taken:
            self._first_endpoint_taken = True
            port = self.config.runtime_api_address.port
        return await runtime_api.bind(
            env, self.config.runtime_api_address.host, port, mounts=(extensions_api.mount,)
        )

    async def start(self) -> None:
        # what an emulator killed outright left (processes, cgroups, TMPDIRs) goes first
        sweep_leftovers()
        from rie.sandbox.policy import summary

        for fn in self.functions:
            # what the sandbox enforces here and what not (and why): never silent
            print(summary(fn.config), file=sys.stderr, flush=True)
        # provisioned environments of every function are ready before the first caller
        await asyncio.gather(*(fn.start() for fn in self.functions))
        from rie.api import invoke as invoke_api

        if any(fn.config.watch for fn in self.functions):
            from rie.dev import reload  # watchfiles only with --watch

            self._watching = asyncio.ensure_future(
                reload.watch(self.functions.all, self._stop_watching)
            )
        addr = self.config.invoke_address
        api = invoke_api.server(
            self.functions, self.config.request_head_timeout_s, self.config.keepalive_timeout_s
        )
        await api.start(addr.host, addr.port, fallback=False)
        self._invoke_api, self.invoke_port = api, api.port
        print(
            f"rie: Invoke API listening on http://{addr.host}:{self.invoke_port}",
            file=sys.stderr,
            flush=True,
        )
        if self.config.http_address is not None:
            await self._start_http(self.config.http_address.host, self.config.http_address.port)
        if self.config.dashboard_address is not None:
            await self._start_dashboard(
                self.config.dashboard_address.host, self.config.dashboard_address.port
            )

    async def _start_dashboard(self, host: str, port: int) -> None:
        from rie.fronts.dashboard import AllowedHosts, Dashboard  # only with --dashboard
        from rie.http.aiohttp_server import listen

        allowed = AllowedHosts(host, port)
        self.dashboard = Dashboard(self.functions, allowed)
        try:
            self._dashboard_runner, self.dashboard_port = await listen(
                self.dashboard.build_app(),
                host,
                port,
                fallback=False,
                head_timeout_s=self.config.request_head_timeout_s,
                keepalive_timeout_s=self.config.keepalive_timeout_s,
                shutdown_timeout=_shares(self.config.shutdown_timeout_s)[1],
            )
        except OSError as exc:
            raise OSError(
                exc.errno, f"{exc.strerror} (the dashboard, --dashboard {host}:{port})"
            ) from exc
        # the Host check needs the port: with port 0 it is known once bound (and no request is
        # handled before this line: nothing was awaited since the socket started listening)
        allowed.port = self.dashboard_port
        shown = f"[{host}]" if ":" in host else host
        print(
            f"rie: dashboard at http://{shown}:{self.dashboard_port}/",
            file=sys.stderr,
            flush=True,
        )

    async def _start_http(self, host: str, port: int) -> None:
        from rie.fronts.http_front import HttpFront  # only when the front is asked for

        # every function is a target (routes pick one); each counts its own answers. Those given
        # to no function are the only function's, or with several, counted apart
        functions = self.functions.all
        unrouted = functions[0].metrics if len(functions) == 1 else self.functions.unrouted
        front = HttpFront(functions, unrouted)
        server = front.server(self.config.request_head_timeout_s, self.config.keepalive_timeout_s)
        try:
            await server.start(host, port, fallback=False)
        except OSError as exc:
            raise OSError(
                exc.errno, f"{exc.strerror} (the HTTP front, --http {host}:{port})"
            ) from exc
        self._http_server, self.http_port = server, server.port
        formats = sorted({fn.config.http_format for fn in functions})
        print(
            f"rie: HTTP front ({', '.join(formats)}) listening on http://{host}:{self.http_port}",
            file=sys.stderr,
            flush=True,
        )
        if len(functions) > 1:
            for line in front.describe():
                print(f"rie:   {line}", file=sys.stderr, flush=True)

    async def stop(self) -> None:
        # --shutdown-timeout bounds the whole of it: in-flight work gets what is left of it once
        # the last steps' shares (terminating runtimes, closing connections) are set aside
        grace = self.config.shutdown_timeout_s
        deadline = time.monotonic() + grace
        term_s, close_s = _shares(grace)
        # 1. stop accepting invocations: new connections are refused from here on; stop watching
        for api in (self._invoke_api, self._http_server):
            if api is not None:
                api.stop_listening()
        if self._dashboard_runner is not None:
            for site in list(self._dashboard_runner.sites):
                await site.stop()
        if self.dashboard is not None:
            await self.dashboard.close()  # its pages' streams end: they would hold the shutdown
        if self._watching is not None:
            self._stop_watching.set()
            try:
                await asyncio.wait_for(
                    self._watching, max(0.05, min(2.0, deadline - time.monotonic()))
                )
            except (TimeoutError, asyncio.CancelledError):
                pass
            except Exception as exc:  # the watcher's failure must not stop the shutdown
                log.warning("file watcher: %s", exc)
        # 2. Event invocations queued or waiting for a retry are written out; running ones go on
        for fn in self.functions:
            fn.events.stop_intake()
        # 3. in-flight invocations run until `term_s` before the end of the grace; then every
        #    runtime process group is terminated, then killed, and whatever was still running is
        #    answered with the error (events: an on-failure record)
        await asyncio.gather(*(fn.pool.close(deadline - close_s, term_s) for fn in self.functions))
        # 4. the Event workers record the outcomes of what they ran
        within_s = max(0.05, deadline - time.monotonic())
        await asyncio.gather(*(fn.events.close(within_s=within_s) for fn in self.functions))
        # 5. answers are out: close the callers' connections (by the time they are closed every
        #    invocation is answered: this only bounds a caller that is slow to read its answer)
        for api in (self._invoke_api, self._http_server):
            if api is not None:
                await api.shutdown(close_s)
        if self._dashboard_runner is not None:
            await self._dashboard_runner.cleanup()
        # 6. memory cgroups whose processes were still leaving when their environment stopped
        MemoryCgroup.remove_pending(within_s=max(0.05, deadline - time.monotonic()))
        for layers in self.layers:
            layers.cleanup()
        self.sink.flush()
        several = len(self.functions) > 1
        for fn in self.functions:
            print(fn.metrics.summary(fn.name if several else ""), file=sys.stderr, flush=True)


def _shares(grace_s: float) -> tuple[float, float]:
    """The parts of the shutdown grace set aside for terminating runtimes (SIGTERM to SIGKILL)
    and for closing connections, out of a grace of `grace_s`."""
    term_s = min(0.5, grace_s / 4)
    return term_s, min(0.25, grace_s / 8)


async def serve(
    configs: Config | Sequence[Config], environ: Mapping[str, str], own_process: bool = False
) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        server = Server(configs, environ, own_process=own_process)
    except ValueError as exc:  # a layer that cannot be unpacked
        log.error("%s", exc)
        return 2
    try:
        await server.start()
    except OSError as exc:
        log.error("cannot listen on %s: %s", server.config.invoke_address, exc.strerror or exc)
        await server.stop()
        return 1
    await stopping.wait()
    log.info("shutting down")
    await server.stop()
    return 0


_LEFTOVER_S = 1.0  # after the ordered shutdown: what is still running gets this long at most


def run(configs: Config | Sequence[Config], environ: Mapping[str, str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT, then exit promptly.

    `asyncio.run` would wait without bound for leftover tasks to take their cancellation and for
    the default executor's threads (a runtime being started, say): after the ordered shutdown has
    answered everything and stopped every process, whatever is left gets `_LEFTOVER_S`, and a
    thread that still has not ended is left behind by a hard exit rather than waited for."""
    environ = os.environ if environ is None else environ
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        code = loop.run_until_complete(serve(configs, environ, own_process=True))
        loop.run_until_complete(_cancel_leftovers(_LEFTOVER_S))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()  # the default executor is shut down without waiting for its threads
    deadline = time.monotonic() + _LEFTOVER_S
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("a worker thread did not end (%s): exiting without it", thread.name)
                atexit._run_exitfuncs()  # what --zip and layers unpacked is still removed
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
    return code


async def _cancel_leftovers(within_s: float) -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=within_s)
