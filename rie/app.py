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
from collections.abc import Mapping

from . import logs, runtime_api
from .config import Config
from .environment import Endpoint, Environment
from .httpserver import Runner, listen
from .invoke_api import Services, build_app
from .metrics import Metrics
from .pool import EventQueue, Pool
from .supervisor import MemoryCgroup

log = logging.getLogger("rie")


class Server:
    def __init__(self, config: Config, environ: Mapping[str, str]) -> None:
        self.config = config
        self.sink = logs.Sink()
        self.metrics = Metrics(config.memory_mb)
        self.pool = Pool(config, dict(environ), self.sink, self.metrics, self._bind_endpoint)
        self.events = EventQueue(self.pool, config, self.metrics, self.sink)
        self._runner: Runner | None = None
        self._http_runner: Runner | None = None
        self.http_port = 0
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
        await self.pool.start()  # provisioned environments are ready before the first caller
        self.events.start()
        app = build_app(Services(self.config, self.pool, self.events, self.metrics))
        addr = self.config.invoke_address
        self._runner, self.invoke_port = await listen(app, addr.host, addr.port, fallback=False)
        print(
            f"rie: Invoke API listening on http://{addr.host}:{self.invoke_port}",
            file=sys.stderr,
            flush=True,
        )
        if self.config.http_address is not None:
            await self._start_http(self.config.http_address.host, self.config.http_address.port)

    async def _start_http(self, host: str, port: int) -> None:
        from .http_front import HttpFront  # only when the front is asked for

        # the one function of today is the front's one target (it has .config and .pool)
        front = HttpFront((self,), self.metrics)
        try:
            self._http_runner, self.http_port = await listen(
                front.build_app(), host, port, fallback=False
            )
        except OSError as exc:
            raise OSError(
                exc.errno, f"{exc.strerror} (the HTTP front, --http {host}:{port})"
            ) from exc
        print(
            f"rie: HTTP front ({self.config.http_format}) listening on http://{host}:{self.http_port}",
            file=sys.stderr,
            flush=True,
        )

    async def stop(self) -> None:
        grace = self.config.shutdown_timeout_s
        # 1. stop accepting invocations: new connections are refused from here on
        for runner in (self._runner, self._http_runner):
            if runner is not None:
                for site in list(runner.sites):
                    await site.stop()
        # 2. Event invocations still waiting are written out; running ones get the grace period
        await self.events.close(grace)
        # 3. in-flight invocations get the grace period; then every runtime process group is
        #    terminated, then killed, and whatever was still running is answered with the error
        await self.pool.close(grace)
        # 4. answers are out: close the callers' connections
        for runner in (self._runner, self._http_runner):
            if runner is not None:
                await runner.cleanup()
        # 5. memory cgroups whose processes were still leaving when their environment stopped
        MemoryCgroup.remove_pending(within_s=1.0)
        self.sink.flush()
        print(self.metrics.summary(), file=sys.stderr, flush=True)


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
