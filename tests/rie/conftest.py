"""Shared pieces of the rie end-to-end tests: fixture paths, the scripted runtime, REPORT parsing."""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import RieProcess, rie

HERE = Path(__file__).resolve().parent
FIX = HERE / "fixtures"
PY = sys.executable
SCRIPTED = FIX / "scripted.py"
CURL_SH = FIX / "curl_bootstrap.sh"
NODE_JS = FIX / "node_bootstrap.js"
HANDLERS = FIX / "handlers"
BASE = "/2018-06-01/runtime"

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TRACE = re.compile(r"^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0$")


def scripted(*flags: str, env: dict[str, str] | None = None) -> RieProcess:
    """rie around the scripted Python runtime."""
    return rie(*flags, "--", PY, str(SCRIPTED), env=env)


def ric(handler: str, *flags: str, env: dict[str, str] | None = None) -> RieProcess:
    """rie around `python -m awslambdaric HANDLER`, with the fixture handlers as task root."""
    return rie(
        "--task-root", str(HANDLERS), *flags, "--", PY, "-m", "awslambdaric", handler, env=env
    )


def curl_sh(*flags: str, env: dict[str, str] | None = None) -> RieProcess:
    return rie(*flags, "--", str(CURL_SH), env=env)


def do(r: RieProcess, *actions: dict[str, object], **kw: object):  # type: ignore[no-untyped-def]
    """Invoke the scripted runtime with a list of actions."""
    return r.invoke({"do": list(actions)}, **kw)  # type: ignore[arg-type]


def report(r: RieProcess, request_id: str, timeout: float = 15.0) -> dict[str, str]:
    """The REPORT line of `request_id` as {field: value} (plus "line")."""
    m = r.wait_for(rf"REPORT RequestId: {re.escape(request_id)}\t.*", timeout)
    fields: dict[str, str] = {"line": m.group(0)}
    for part in m.group(0).split("\t")[1:]:
        if part:
            key, _, value = part.partition(": ")
            fields[key] = value
    return fields


def ms(value: str) -> float:
    assert value.endswith(" ms"), value
    return float(value[:-3])


def mb(value: str) -> int:
    assert value.endswith(" MB"), value
    return int(value[:-3])


def raw_request(host: str, port: int, data: bytes, half_close: bool = True, timeout: float = 15):
    """Send raw bytes, optionally half-close, read until the peer closes: (status, body)."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1."), out[:200]
    return int(head.split(b" ")[1]), head.decode("latin-1"), body


def wait_until(pred, timeout: float = 15.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def good_invoke(r: RieProcess, **kw: object) -> None:
    """After a bad request: an ordinary invoke still succeeds."""
    reply = r.invoke({"still": "works"}, **kw)  # type: ignore[arg-type]
    assert reply.status == 200, (reply.status, reply.body)
    assert reply.header("X-Amz-Function-Error") is None, reply.body
    body = reply.json()
    assert isinstance(body, dict)
    # an echo (sh), the scripted runtime's report, or a handler that wraps the event
    assert (
        body.get("still") == "works"
        or body.get("event") == {"still": "works"}
        or body.get("next", {}).get("body") == json.dumps({"still": "works"})
    ), body


@pytest.fixture(scope="module")
def sr() -> Iterator[RieProcess]:
    """One scripted-runtime rie for a module (timeout 5 s)."""
    with scripted("--timeout", "5") as r:
        yield r
