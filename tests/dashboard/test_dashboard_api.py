"""The dashboard's own HTTP API without a browser: a real rie, a real SSE stream read from a socket.

Nothing is recorded while no page is open (the totals still count); with one open, an invocation
held by an extension after its answer still shows its whole log (REPORT included, once the
extension is done); the stream ends with rie's shutdown.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from rie.testing import LambdaFunction

HERE = Path(__file__).resolve().parent
FIX = HERE / "fixtures"
SH_EXT = HERE.parent / "rie" / "fixtures" / "extensions" / "sh-ext"
WAIT_S = 30.0


class Stream:
    """An open page, as far as rie can tell: GET /api/stream, its events parsed as they come."""

    def __init__(self, url: str) -> None:
        host, _, port = url.removeprefix("http://").rstrip("/").rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=WAIT_S)
        self.sock.sendall(f"GET /api/stream HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        self.events: list[tuple[str, Any]] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self.events.append(("closed", None))
                    self._cond.notify_all()
                    return
                buf += data
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    fields = dict(
                        line.split(": ", 1)
                        for line in block.decode().splitlines()
                        if line.startswith(("event: ", "data: "))
                    )
                    if "event" in fields:
                        self.events.append((fields["event"], json.loads(fields["data"])))
                self._cond.notify_all()

    def wait_for(self, pred: Any) -> Any:
        """The first event (name, doc) for which pred holds, waiting for it (bounded)."""
        with self._cond:
            found = self._cond.wait_for(
                lambda: next((e for e in self.events if pred(*e)), None), WAIT_S
            )
        assert found, self.events[-5:]
        return found

    def row_of(self, request_id: str) -> list[Any]:
        def has(name: str, doc: Any) -> bool:
            rows = (doc or {}).get("rows", []) if name in ("snapshot", "batch") else []
            return any(r[3] == request_id for r in rows)

        _, doc = self.wait_for(has)
        return next(r for r in doc["rows"] if r[3] == request_id)

    def close(self) -> None:
        self.sock.close()
        self._thread.join(5)


def get_json(url: str, path: str) -> Any:
    host, _, port = url.removeprefix("http://").rstrip("/").rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=WAIT_S)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200, response.read()
        return json.loads(response.read())
    finally:
        conn.close()


def test_nothing_is_recorded_while_no_page_is_open() -> None:
    args = ["--task-root", str(FIX), "--handler", "app.handler", "--dashboard", "127.0.0.1:0"]
    with LambdaFunction(args) as fn:
        url = fn.wait_for_log(r"dashboard at (http://\S+)").group(1)
        unseen = fn.invoke({"say": "unseen"}).request_id
        page = Stream(url)
        try:
            _, snapshot = page.wait_for(lambda name, doc: name == "snapshot")
            assert snapshot["rows"] == []  # recorded only while a page is open...
            [totals] = snapshot["totals"].values()
            assert totals["invocations"] == 1  # ...counted always
            seen = fn.invoke({"say": "seen"}).request_id
            row = page.row_of(seen)
            assert row[5] == "success" and row[9] is None  # warm: no init duration
            assert all(r[3] != unseen for _, d in page.events for r in (d or {}).get("rows", []))
        finally:
            page.close()
        fn.stop()
        assert fn.logs.count("Traceback") == 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="the sh extension needs curl")
def test_an_invocation_held_by_an_extension_shows_its_whole_log(tmp_path: Path) -> None:
    exts = tmp_path / "extensions"
    exts.mkdir()
    shutil.copy(SH_EXT, exts / "sh-ext")
    gate = tmp_path / "gate"
    args = [
        "--task-root", str(FIX), "--handler", "app.handler", "--extensions-dir", str(exts),
        "--env", f"EXT_GATE={gate}", "--dashboard", "127.0.0.1:0",
    ]  # fmt: skip
    with LambdaFunction(args) as fn:
        url = fn.wait_for_log(r"dashboard at (http://\S+)").group(1)
        page = Stream(url)
        try:
            page.wait_for(lambda name, doc: name == "snapshot")
            rid = fn.invoke({"say": "held"}).request_id  # answered; the extension still works
            fn.wait_for_log(rf"\[sh-ext\] invoke {rid}")
            (tmp_path / f"gate.{rid}").touch()
            row = page.row_of(rid)  # recorded at its REPORT, once the extension is done
            detail = get_json(url, f"/api/invocations/{row[0]}")
        finally:
            page.close()
    log = detail["log"]
    assert log.index(f"START RequestId: {rid}") < log.index("handling held")
    assert log.index("handling held") < log.index(f"END RequestId: {rid}")
    assert log.index(f"END RequestId: {rid}") < log.index(f"REPORT RequestId: {rid}")
    assert json.loads(detail["answer"])["ok"] is True
