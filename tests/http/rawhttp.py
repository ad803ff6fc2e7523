"""A raw-socket HTTP/1.1 client for the front's tests: it sends bytes exactly as given and reads
exactly one answer (by Content-Length, chunks, or to the close), so that any byte an answer
leaves behind shows up as a wrong next answer on the same connection."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ",".join(values) if values else None


class Malformed(Exception):
    """The bytes received are not a well-formed HTTP/1.1 answer."""


class Conn:
    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.buf = b""

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._more():
                raise Malformed(f"the connection closed inside a line: {self.buf[:200]!r}")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._more():
                raise Malformed(f"the connection closed {n - len(self.buf)} bytes short")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def closed(self) -> bool:
        """Whether the server has closed the connection (and sent nothing more)."""
        self.sock.settimeout(10)
        try:
            return not self._more() and not self.buf
        except (ConnectionResetError, TimeoutError):
            return False

    def read(self, head_request: bool = False) -> Answer:
        """One answer; 1xx interim answers are returned as such (read again for the final)."""
        while b"\r\n\r\n" not in self.buf:
            if not self._more():
                raise Malformed(f"the connection closed inside a head: {self.buf[:200]!r}")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or not rest[:3].isdigit():
            raise Malformed(f"bad status line {lines[0]!r}")
        status = int(rest[:3])
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or b"\r" in line or b"\n" in line:
                raise Malformed(f"bad header line {line!r}")
            headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        ans = Answer(status, headers, b"", head)
        names = [k.lower() for k, _ in headers]
        if names.count("content-length") > 1:
            raise Malformed("several Content-Length headers")
        if "content-length" in names and "transfer-encoding" in names:
            raise Malformed("Content-Length with Transfer-Encoding")
        if status < 200 or status in (204, 304) or head_request:
            return ans
        te = ans.header("transfer-encoding")
        if te is not None:
            if te.lower() != "chunked":
                raise Malformed(f"Transfer-Encoding {te!r}")
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exactly(size)
                if self._exactly(2) != b"\r\n":
                    raise Malformed("a chunk not ended by CRLF")
            ans.body = body
        elif ans.header("content-length") is not None:
            ans.body = self._exactly(int(ans.header("content-length") or "0"))
        else:
            while self._more():
                pass
            ans.body, self.buf = self.buf, b""
        return ans


def request(
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> bytes:
    """A well-formed request's bytes."""
    all_headers = {"Host": "localhost", "Content-Length": str(len(body)), **(headers or {})}
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in all_headers.items()
    )
    return head.encode("utf-8") + b"\r\n" + body
