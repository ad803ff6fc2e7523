"""`rie --dashboard`: one web page, served by rie itself, that shows the functions live.

Owns the dashboard's aiohttp app: the page and its assets (static/, plain files in the package),
the pushes (Server-Sent Events, one batch every `PUSH_S`), the JSON the page asks for (an
invocation's log, event and answer; the sample events) and the invoke panel's calls.

Invariants:
- it records nothing while no page is open: the first page attaches the feed (rie/observe/feed.py)
  to every function's `Metrics`, the last one to leave detaches it;
- one batch is built and serialised per push, whichever the number of pages; a page that cannot
  keep up is dropped (its browser reconnects and gets a fresh snapshot), so memory stays bounded;
- every request whose `Host` is not this server's own, or whose `Origin` is not this page's, is
  refused with 403 before it is handled (DNS rebinding: the page can invoke functions).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from rie.api.invoke import new_ids
from rie.functions.registry import Function, Functions
from rie.model import samples
from rie.model.errors import ASYNC_PAYLOAD_LIMIT, SYNC_PAYLOAD_LIMIT, RieError
from rie.model.invocation import Invocation, Request
from rie.observe.feed import ALL, BODY_LIMIT, Feed
from rie.sandbox.environment import Environment, EnvState

log = logging.getLogger("rie")

STATIC = Path(__file__).parent / "static"
PUSH_S = 0.25
_CLIENT_BACKLOG = 64  # pushes a page may be behind before it is dropped
_SNAPSHOT_ROWS = 10_000
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def env_state(env: Environment) -> str:
    """cold, initializing, ready, busy or resetting, as the page shows it."""
    if env.state is EnvState.READY and (env.running or env.queued):
        return "busy"
    if env.state is EnvState.COLD and env.queued:
        return "initializing"  # its endpoint is being opened: the init starts at once
    return env.state.value


def describe_function(fn: Function) -> dict[str, Any]:
    c = fn.config
    return {
        "name": fn.name,
        "handler": c.handler,
        "runtime": c.runtime,
        "memory": c.memory_mb,
        "timeout": c.timeout_s,
        "maxConcurrency": c.max_concurrency,
        "perEnvironmentConcurrency": c.per_env_concurrency,
        "provisioned": c.provisioned,
        "routes": list(c.routes),
        "layers": list(c.layers),
        "extensions": [Path(p).name for p in c.extension_paths],
        "sandbox": getattr(c, "sandbox", None) or "process",
        "version": c.function_version,
    }


class AllowedHosts:
    """The `Host` values this server answers to, and the `Origin` its own page sends.

    DNS rebinding needs a name that the attacker's DNS points at this machine: a request is
    answered only if its `Host` is an address this server is bound to (any address when bound to
    every one; any loopback address when bound to loopback), `localhost`, the host named with
    --dashboard, or, bound to every address, the machine's own names."""

    def __init__(self, host: str, port: int) -> None:
        self.port = port
        self._host = host.lower()
        self._any = host in ("0.0.0.0", "::", "")
        self._loopback = _is_loopback(host)
        names = {"localhost", self._host}
        if self._any:
            with contextlib.suppress(OSError):
                names.add(socket.gethostname().lower())
                names.add(socket.getfqdn().lower())
        self._names = names

    def allows(self, host_header: str) -> bool:
        name, port = _split_host(host_header)
        if port != self.port:
            return False
        if name in self._names:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False  # a name of someone else's
        return self._any or (self._loopback and address.is_loopback)

    def origin_ok(self, origin: str, host_header: str) -> bool:
        """Its own page's requests carry `Origin: http://<the Host it was loaded from>`."""
        return origin.lower() == f"http://{host_header.strip().lower()}"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _split_host(value: str) -> tuple[str, int | None]:
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        name, sep, port_text = value.rpartition(":")
        if not sep:
            name, port_text = value, ""
    try:
        port = int(port_text) if port_text else 80
    except ValueError:
        return name, None
    return name, port


class Client:
    """One open page's push stream."""

    __slots__ = ("dropped", "queue")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(_CLIENT_BACKLOG)
        self.dropped = False

    def put(self, data: bytes) -> None:
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped = True  # it cannot keep up: its stream ends, the browser reconnects


class Dashboard:
    def __init__(self, functions: Functions, allowed: AllowedHosts) -> None:
        self.functions = functions
        self.feed = Feed()
        self.allowed = allowed
        self._clients: set[Client] = set()
        self._pusher: asyncio.Task[None] | None = None
        self._last_envs: bytes = b""

    # --- the app ----------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=7 * 1024 * 1024)
        r = app.router
        r.add_get("/", self._page)
        r.add_get("/static/{name}", self._asset)
        r.add_get("/api/stream", self._stream)
        r.add_get("/api/state", self._state)
        r.add_get("/api/invocations/{seq}", self._invocation)
        r.add_get("/api/samples", self._samples)
        r.add_get("/api/samples/{name}", self._sample)
        r.add_post("/api/invoke", self._invoke)
        app.on_shutdown.append(self._on_shutdown)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if not self.allowed.allows(host):
            return _refuse(f"Host {host!r} is not this dashboard's")
        origin = request.headers.get("Origin")
        if origin is not None and not self.allowed.origin_ok(origin, host):
            return _refuse(f"Origin {origin!r} is not this dashboard's")
        if request.method not in ("GET", "HEAD") and origin is None:
            # a browser always sends Origin with a POST; without one, Sec-Fetch-Site must say so
            site = request.headers.get("Sec-Fetch-Site")
            if site not in (None, "same-origin", "none"):
                return _refuse("a request from another site")
        response = await handler(request)
        if not response.prepared:
            response.headers.update(_SECURITY_HEADERS)
        return response

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.close()

    async def close(self) -> None:
        for client in list(self._clients):
            client.dropped = True
            client.put(b"")
        self._clients.clear()
        self._stop_recording()

    # --- the page ---------------------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return _file(STATIC / "index.html")

    async def _asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or path.suffix not in _CONTENT_TYPES:
            raise web.HTTPNotFound()
        if not path.is_file():
            raise web.HTTPNotFound()
        return _file(path)

    # --- what the page reads ---------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        feed = self.feed
        rows = [record.row for record in feed][-_SNAPSHOT_ROWS:]
        return {
            "functions": [describe_function(fn) for fn in self.functions],
            "environments": self._environments(),
            "totals": self._totals(),
            "rows": rows,
            "points": feed.points(),
            "now": time.time(),
            "limits": {"records": len(rows), "bodyLimit": BODY_LIMIT},
        }

    def _environments(self) -> dict[str, list[dict[str, Any]]]:
        return {
            fn.name: [
                {
                    "id": env.id,
                    "state": env_state(env),
                    "invocations": env.invocations,
                    "inits": env.init_count,
                    "running": len(env.running),
                    "provisioned": env.provisioned,
                    "logStream": env.log_stream,  # CloudWatch's log stream of this environment
                }
                for env in fn.pool.envs
            ]
            for fn in self.functions
        }

    def _totals(self) -> dict[str, dict[str, int]]:
        # the counters /metrics shows, kept whether or not a page is open
        return {
            fn.name: {
                "invocations": fn.metrics.invocations,
                "errors": fn.metrics.errors,
                "throttles": fn.metrics.throttles,
                "coldStarts": fn.metrics.cold_starts,
            }
            for fn in self.functions
        }

    async def _state(self, request: web.Request) -> web.StreamResponse:
        return _json(self.snapshot())

    async def _invocation(self, request: web.Request) -> web.StreamResponse:
        try:
            record = self.feed.get(int(request.match_info["seq"]))
        except ValueError:
            record = None
        if record is None:
            return _json({"message": "no such invocation (the ring keeps the last 10,000)"}, 404)
        return _json(record.detail())

    async def _samples(self, request: web.Request) -> web.StreamResponse:
        return _json([{"name": n, "description": d} for n, d in samples.describe()])

    async def _sample(self, request: web.Request) -> web.StreamResponse:
        try:
            event = samples.build(request.match_info["name"])
        except KeyError as exc:
            return _json({"message": str(exc.args[0])}, 404)
        return _json(event)

    # --- pushes ----------------------------------------------------------------------------

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
                **{k: v for k, v in _SECURITY_HEADERS.items() if k != "Cache-Control"},
            }
        )
        await response.prepare(request)
        client = Client()
        self._start_recording()
        self._clients.add(client)
        try:
            await response.write(_event("snapshot", orjson.dumps(self.snapshot())))
            while not client.dropped:
                data = await client.queue.get()
                if not data:
                    break
                await response.write(data)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(client)
            if not self._clients:
                self._stop_recording()
        return response

    def _start_recording(self) -> None:
        if not self.feed.attached:
            self.feed.attach((fn.name, fn.metrics) for fn in self.functions)
        if self._pusher is None or self._pusher.done():
            self._pusher = asyncio.ensure_future(self._push_loop())

    def _stop_recording(self) -> None:
        self.feed.detach()
        if self._pusher is not None:
            self._pusher.cancel()
            self._pusher = None

    async def _push_loop(self) -> None:
        while self._clients:
            await asyncio.sleep(PUSH_S)
            try:
                self.push()
            except Exception:  # a push that fails must not end the page's updates
                log.exception("dashboard: a push failed")

    def push(self) -> None:
        """One batch for every open page: new rows, environments, totals, changed chart points."""
        feed = self.feed
        now = time.time()
        total = 0
        for fn in self.functions:
            running = sum(len(env.running) for env in fn.pool.envs)
            total += running
            feed.concurrency(fn.name, running, now)
        feed.concurrency(ALL, total, now)
        batch: dict[str, Any] = {"now": now, "totals": self._totals()}
        rows = feed.take_new()
        if rows:
            batch["rows"] = [record.row for record in rows]
        envs = self._environments()
        envs_json = orjson.dumps(envs)
        if envs_json != self._last_envs:
            self._last_envs = envs_json
            batch["environments"] = envs
        points = feed.changed_points(now)
        if points:
            batch["points"] = points
        data = _event("batch", orjson.dumps(batch))
        for client in list(self._clients):
            client.put(data)
            if client.dropped:
                self._clients.discard(client)  # its stream ends; its browser reconnects

    # --- the invoke panel ------------------------------------------------------------------

    async def _invoke(self, request: web.Request) -> web.StreamResponse:
        try:
            doc = await request.json()
            name = str(doc["function"])
            kind = str(doc.get("type", "RequestResponse"))
            event = doc.get("event", "")
            # the event as typed (text), or already a JSON value
            payload = event.encode() if isinstance(event, str) else orjson.dumps(event)
        except (ValueError, KeyError, TypeError, AttributeError):
            return _json({"message": "expected {function, event, type}"}, 400)
        if kind not in ("RequestResponse", "Event"):
            return _json({"message": "type must be RequestResponse or Event"}, 400)
        payload = payload.strip() or b"{}"
        limit = SYNC_PAYLOAD_LIMIT if kind == "RequestResponse" else ASYNC_PAYLOAD_LIMIT
        if len(payload) > limit:
            return _json({"message": f"the event is over Lambda's {limit} bytes for {kind}"}, 413)
        try:
            json.loads(payload)
        except ValueError as exc:
            return _json({"message": f"the event is not JSON: {exc}"}, 400)
        fn = self.functions.get(name)
        if fn is None:
            return _json({"message": f"no function named {name!r}"}, 404)
        request_id, trace_id = new_ids()
        inv = Invocation(
            request_id,
            Request(
                payload=payload,
                trace_id=trace_id,
                invoked_function_arn=fn.config.function_arn,
                invocation_type=kind,
                want_tail=kind == "RequestResponse",
            ),
            fn.config.timeout_s,
        )
        if kind == "Event":
            fn.events.submit(inv)
            return _json({"requestId": request_id, "status": 202})
        try:
            await fn.pool.invoke(inv, fn.config.queue_timeout_s)
        except RieError as exc:
            return _json(
                {
                    "requestId": request_id,
                    "status": exc.status,
                    "errorType": exc.error_type,
                    "answer": exc.body().decode("utf-8", "replace"),
                }
            )
        outcome = inv.outcome
        assert outcome is not None
        body = outcome.body
        return _json(
            {
                "requestId": request_id,
                "status": 200,
                "functionError": "Unhandled" if outcome.function_error else None,
                "answer": body[:BODY_LIMIT].decode("utf-8", "replace"),
                "answerCut": len(body) > BODY_LIMIT,
                "log": inv.tail.decode("utf-8", "replace"),
            }
        )


def _event(name: str, data: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


def _refuse(message: str) -> web.Response:
    response = _json({"message": message}, 403)
    response.headers.update(_SECURITY_HEADERS)
    return response


def _file(path: Path) -> web.Response:
    return web.Response(
        body=path.read_bytes(),
        headers={"Content-Type": _CONTENT_TYPES[path.suffix], **_SECURITY_HEADERS},
    )
