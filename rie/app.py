"""Wiring, start-up and ordered shutdown of one emulator.

`Server` only orchestrates: it builds the pool, the Event queue and the Invoke API, starts them in
order, and on SIGTERM/SIGINT stops them in the reverse order, each step bounded in time, so that
every accepted invocation is answered and no runtime process outlives the emulator.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping

from . import logs, runtime_api
from .config import Config
from .environment import Endpoint, Environment
from .httpserver import Runner, listen
from .invoke_api import Services, build_app
from .metrics import Metrics
from .pool import EventQueue, Pool
from .supervisor import MemoryCgroup, sweep_leftovers

log = logging.getLogger("rie")


class Server:
    def __init__(self, config: Config, environ: Mapping[str, str]) -> None:
        self.config = config
        self.sink = logs.Sink()
        self.metrics = Metrics(config.memory_mb)
        self.pool = Pool(config, dict(environ), self.sink, self.metrics, self._bind_endpoint)
        self.events = EventQueue(self.pool, config, self.metrics, self.sink)
        self._runner: Runner | None = None
        self._first_endpoint_taken = False
        self.invoke_port = 0

    async def _bind_endpoint(self, env: Environment) -> Endpoint:
        # the first environment gets the configured Runtime API address (9001 by default, as the
        # official emulator); the others take free loopback ports
        port = 0
        if not self._first_endpoint_taken:
            self._first_endpoint_taken = True
            port = self.config.runtime_api_address.port
        return await runtime_api.bind(env, self.config.runtime_api_address.host, port)

    async def start(self) -> None:
        # what an emulator killed outright left (processes, cgroups, TMPDIRs) goes first
        sweep_leftovers()
        await self.pool.start()  # provisioned environments are ready before the first caller
        self.events.start()
        app = build_app(Services(self.config, self.pool, self.events, self.metrics))
        addr = self.config.invoke_address
        self._runner, self.invoke_port = await listen(
            app,
            addr.host,
            addr.port,
            fallback=False,
            # by the time connections are closed every invocation is answered: this only bounds
            # a caller that is slow to read its answer
            shutdown_timeout=_shares(self.config.shutdown_timeout_s)[1],
        )
        print(
            f"rie: Invoke API listening on http://{addr.host}:{self.invoke_port}",
            file=sys.stderr,
            flush=True,
        )

    async def stop(self) -> None:
        # --shutdown-timeout bounds the whole of it: in-flight work gets what is left of it once
        # the last steps' shares (terminating runtimes, closing connections) are set aside
        grace = self.config.shutdown_timeout_s
        deadline = time.monotonic() + grace
        term_s, close_s = _shares(grace)
        # 1. stop accepting invocations: new connections are refused from here on
        if self._runner is not None:
            for site in list(self._runner.sites):
                await site.stop()
        # 2. Event invocations queued or waiting for a retry are written out; running ones go on
        self.events.stop_intake()
        # 3. in-flight invocations run until `term_s` before the end of the grace; then every
        #    runtime process group is terminated, then killed, and whatever was still running is
        #    answered with the error (events: an on-failure record)
        await self.pool.close(deadline - close_s, term_s)
        # 4. the Event workers record the outcomes of what they ran
        await self.events.close(within_s=max(0.05, deadline - time.monotonic()))
        # 5. answers are out: close the callers' connections
        if self._runner is not None:
            await self._runner.cleanup()
        # 6. memory cgroups whose processes were still leaving when their environment stopped
        MemoryCgroup.remove_pending(within_s=max(0.05, deadline - time.monotonic()))
        self.sink.flush()
        print(self.metrics.summary(), file=sys.stderr, flush=True)


def _shares(grace_s: float) -> tuple[float, float]:
    """The parts of the shutdown grace set aside for terminating runtimes (SIGTERM to SIGKILL)
    and for closing connections, out of a grace of `grace_s`."""
    term_s = min(0.5, grace_s / 4)
    return term_s, min(0.25, grace_s / 8)


async def serve(config: Config, environ: Mapping[str, str]) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    server = Server(config, environ)
    try:
        await server.start()
    except OSError as exc:
        log.error("cannot listen on %s: %s", config.invoke_address, exc.strerror or exc)
        await server.stop()
        return 1
    await stopping.wait()
    log.info("shutting down")
    await server.stop()
    return 0


def run(config: Config, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(config, environ))
    return uvloop.run(serve(config, environ))
