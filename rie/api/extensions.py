"""The Extensions, Telemetry and Logs APIs as routes on an environment's endpoint (rie/http/protocol.py).

A thin adapter: the calls are answered by the environment's `ExtensionHost` (rie/sandbox/extensions.py),
which is imported only when one of these paths is called, so a function without extensions pays
nothing for them. `event/next` is a long poll: the connection is parked until the extension's
event comes, or let go of if the extension hangs up first.

Invariant: every call gets exactly one answer (now, or once parked), unless its caller has gone;
a body is refused unread past `BODY_LIMIT`.
"""

from __future__ import annotations

from collections.abc import Mapping

from rie.http.protocol import Connection, Request, Router
from rie.model.errors import RequestEntityTooLarge, RieError
from rie.sandbox.environment import Environment

EXTENSION_BASE = "/2020-01-01/extension/"
TELEMETRY_PATH = "/2022-07-01/telemetry"
LOGS_PATH = "/2020-08-15/logs"
# an Extensions API request is a small JSON document: anything larger is refused unread
BODY_LIMIT = 64 * 1024


class ExtensionsRoute:
    __slots__ = ("env",)

    def __init__(self, env: Environment) -> None:
        self.env = env

    def check(self, conn: Connection, req: Request) -> RieError | None:
        req.limit = BODY_LIMIT  # methods, identifiers and states are the host's to check
        return None

    def handle(self, conn: Connection, req: Request) -> None:
        answered = False

        def reply(status: int, headers: Mapping[str, str], body: bytes) -> None:
            nonlocal answered
            answered = True
            if not conn.connected:
                return
            if status == 0:  # the extension is being stopped: no answer
                conn.abort()
                return
            extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            conn.send(status, body, close=not req.keep_alive, headers=extra)

        cancel = self.env.extension_api().handle(
            req.method, req.path, req.headers, bytes(req.body), reply
        )
        if not answered:
            conn.park(req, cancel or _nothing)

    def too_large(self, req: Request, limit: int) -> RieError:
        return RequestEntityTooLarge(f"Exceeded maximum allowed payload size ({limit} bytes).")


def _nothing() -> None:
    pass


def mount(env: Environment, router: Router) -> None:
    """Serve the three APIs on `env`'s endpoint, beside its Runtime API."""
    route = ExtensionsRoute(env)
    router.add_prefix(EXTENSION_BASE, route)
    for path in (TELEMETRY_PATH, LOGS_PATH):
        router.add(path, route)
        router.add(path + "/", route)
