"""The Runtime API client: one persistent HTTP/1.1 keep-alive connection over a raw socket.

Owns the wire and nothing else: request framing, response parsing (Content-Length, chunked,
read-to-close) and transparent reconnection when the server has closed the connection.
It imports `_socket` rather than `socket`, which would pull in `enum` and `selectors` and delay
the first `next`; `http.client` is avoided for the same reason and because it is slow per call.
"""

from __future__ import annotations

import _socket
import sys
from time import monotonic

TYPE_CHECKING = False  # `typing` costs milliseconds at start-up; annotations are never evaluated

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

API_PREFIX = "/2018-06-01/runtime"
_NEXT_PATH = API_PREFIX + "/invocation/next"
_USER_AGENT = "pyrie-runtime/0.1 (python/{}.{}.{})".format(*sys.version_info[:3])
_PEEK_FLAGS = _socket.MSG_PEEK | _socket.MSG_DONTWAIT
# Reads go into one reused buffer: recv(n) would allocate n bytes per call, and above
# malloc's mmap threshold that is an mmap/munmap pair and fresh page faults every time.
_RECV_SIZE = 65536
_IDLE_AFTER = 0.002  # seconds without an answer to `next` after which the runtime counts as idle
# A response this small is followed by the next `next` in the same write (HTTP/1.1 pipelining,
# which every Runtime API server handles, serially): the runtime then blocks once per invocation,
# waiting for its next event, instead of twice (for the 202, then for the event). Each block is a
# context switch, and on a busy machine a wake-up onto cold caches: that, not Python, was most of
# the runtime's CPU per invocation under load. Larger responses could be refused (413) and must
# then be followed by an error report, not by `next`: they go alone.
PIPELINE_MAX = 65536
# A connection used this recently is taken to be open, without a peek (a syscall) to check.
_FRESH_FOR = 1.0
_SO_RCVLOWAT: int = getattr(_socket, "SO_RCVLOWAT", 0)  # Linux and the BSDs have it


class ConnectionLost(ConnectionError):
    """The server closed the connection before a complete response arrived."""

    def __init__(self, got_bytes: bool) -> None:
        super().__init__("Runtime API closed the connection")
        self.got_bytes = got_bytes


class Response:
    """A Runtime API answer: status, lower-cased headers and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"AWS_LAMBDA_RUNTIME_API must be host:port, got {address!r}")
    return host.strip("[]"), int(port)


class RuntimeClient:
    """Blocking client for the calls a runtime makes; safe to use from one thread only."""

    def __init__(self, address: str) -> None:
        self.host, self.port = _split_address(address)
        host_header = address.encode("idna" if not address.isascii() else "ascii")
        self._common = (
            b"Host: " + host_header + b"\r\nUser-Agent: " + _USER_AGENT.encode() + b"\r\n"
        )
        self._next_request = (
            b"GET " + _NEXT_PATH.encode() + b" HTTP/1.1\r\n" + self._common + b"\r\n"
        )
        self._sock: _socket.socket | None = None
        self._buf = bytearray()
        self._rbuf = bytearray(_RECV_SIZE)
        self._rview = memoryview(self._rbuf)
        self._fresh = False
        self._used_at = 0.0  # monotonic time of the last complete answer
        self._ack_len = 0  # bytes of the last 2xx answer to a response sent with a `next`
        self._lowat = 1  # the socket's receive low-water mark (see _first_bytes)
        self._last_len = 0  # bytes of the last answer read (0: not framed by Content-Length)
        self._next_sent = False  # a `next` went out behind the last response, not yet read

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> _socket.socket:
        self.close()
        # bytes, not str: a str host would load the idna codec
        infos = _socket.getaddrinfo(self.host.encode(), self.port, 0, _socket.SOCK_STREAM)
        err: OSError | None = None
        for family, kind, proto, _name, addr in infos:
            sock = _socket.socket(family, kind, proto)
            try:
                sock.connect(addr)
            except OSError as e:
                sock.close()
                err = e
                continue
            if family in (_socket.AF_INET, _socket.AF_INET6):
                # requests are written in one piece; Nagle would only add latency
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            self._sock = sock
            self._fresh = True
            self._lowat = 1
            return sock
        raise err or OSError(f"cannot connect to {self.host}:{self.port}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf.clear()
        self._next_sent = False

    def _usable_socket(self) -> _socket.socket:
        sock = self._sock
        if sock is None or self._next_sent:
            # a `next` sent ahead and not read must not be taken for this request's answer
            return self._connect()
        self._fresh = False
        # A server may close an idle keep-alive connection at any time; noticing it before
        # writing costs one non-blocking peek and avoids resending a request after a failure.
        # A connection that answered a moment ago is not worth the syscall.
        if not self._buf and monotonic() - self._used_at > _FRESH_FOR:
            try:
                if sock.recv(1, _PEEK_FLAGS) == b"":
                    return self._connect()
            except BlockingIOError:
                pass
            except OSError:
                return self._connect()
        return sock

    # -- requests -----------------------------------------------------------------------------

    def request(
        self,
        head: bytes,
        body: bytes = b"",
        on_idle: Callable[[], None] | None = None,
        then: bytes = b"",
        on_sent: Callable[[], None] | None = None,
    ) -> Response:
        """Send one request (`head` is the complete request head) and read its response.

        A connection that turns out to be closed is replaced and the request sent once more,
        but only when the old one produced no response byte at all, so nothing is sent twice
        to a server that had started answering. `on_idle` runs if the answer takes longer than
        a couple of milliseconds to start arriving (the runtime is then idle, waiting).
        `then` is a complete request sent in the same write, whose answer is left unread
        (only `next` is ever sent so): the wait for this answer then lasts until the first
        byte of that one comes too (see `_first_bytes`). `on_sent` runs once the request is
        written, before the wait."""
        for attempt in (0, 1):
            sock = self._usable_socket()
            fresh = self._fresh
            try:
                if then:
                    sock.sendall(head + body + then)
                elif len(body) < 65536:
                    sock.sendall(head + body)
                else:
                    sock.sendall(head)
                    sock.sendall(body)
            except OSError:
                # the server may have answered early (413) before closing its side
                try:
                    return self._read_response(sock)
                except (OSError, ConnectionLost):
                    self.close()
                    if fresh or attempt:
                        raise
                    continue
            if on_sent is not None:
                on_sent()
            try:
                if not self._buf:
                    if then and self._ack_len and _SO_RCVLOWAT:
                        self._first_bytes(sock, self._ack_len + 1, on_idle)
                    elif on_idle is not None:
                        self._wait_readable(sock, on_idle)
                on_idle = None
                answer = self._read_response(sock)
            except ConnectionLost as e:
                self.close()
                if fresh or attempt or e.got_bytes:
                    raise
            except OSError:
                self.close()
                if fresh or attempt:
                    raise
            else:
                self._used_at = monotonic()
                # a connection the answer closed took the pipelined request down with it
                self._next_sent = bool(then) and self._sock is not None
                if then and 200 <= answer.status < 300:
                    self._ack_len = self._last_len
                return answer
        raise AssertionError("unreachable")

    def _first_bytes(
        self, sock: _socket.socket, lowat: int, on_idle: Callable[[], None] | None
    ) -> None:
        """Wait until `lowat` bytes have come (or the connection ended).

        Behind a response goes `next`: the server answers the response at once (the 202) and
        `next` only when the next invocation comes. Were the runtime woken by the 202 alone,
        it would block again at once for the event: two wake-ups per invocation, each a
        context switch onto cold caches. With the receive low-water mark just above the
        length of the usual 202, the kernel wakes it once, when the event starts arriving.
        An answer of another length costs at worst the second wake-up (a longer one) or is
        read with the event (a shorter one); a signal or the connection's end wakes it too.
        The mark stays set for the next invocation's wait (no syscall while the 202's length
        holds); every other read puts it back to 1 first (`_plain`)."""
        if self._lowat != lowat:
            sock.setsockopt(_socket.SOL_SOCKET, _SO_RCVLOWAT, lowat)
            self._lowat = lowat
        if on_idle is not None:
            self._wait_readable(sock, on_idle, keep_lowat=True)
        if not self._buf:
            self._fill(sock, False, keep_lowat=True)

    def _plain(self, sock: _socket.socket) -> None:
        """A read that wants whatever has come: the low-water mark back to 1."""
        sock.setsockopt(_socket.SOL_SOCKET, _SO_RCVLOWAT, 1)
        self._lowat = 1

    def _wait_readable(
        self, sock: _socket.socket, on_idle: Callable[[], None], keep_lowat: bool = False
    ) -> None:
        if self._lowat != 1 and not keep_lowat:
            self._plain(sock)
        sock.settimeout(_IDLE_AFTER)
        try:
            n = sock.recv_into(self._rbuf)
        except TimeoutError:
            n = -1
        finally:
            sock.settimeout(None)
        if n > 0:
            self._buf += self._rview[:n]
        elif n < 0:
            on_idle()
        # n == 0 (closed) is noticed again, and handled, by the read that follows

    def _fill(self, sock: _socket.socket, got: bool, keep_lowat: bool = False) -> None:
        if self._lowat != 1 and not keep_lowat:
            self._plain(sock)
        n = sock.recv_into(self._rbuf)
        if not n:
            raise ConnectionLost(got)
        self._buf += self._rview[:n]

    def _read_response(self, sock: _socket.socket) -> Response:
        buf = self._buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            self._fill(sock, bool(buf))
        lines = buf[:end].decode("utf-8", "replace").split("\r\n")
        del buf[: end + 4]
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()

        length = headers.get("content-length")
        self._last_len = 0
        if length is not None:
            n = int(length)
            self._last_len = end + 4 + n
            if n > _RECV_SIZE and len(buf) < n:
                body = self._read_large(sock, n)
            else:
                while len(buf) < n:
                    self._fill(sock, True)
                body = bytes(buf[:n])
                del buf[:n]
        elif headers.get("transfer-encoding", "").lower().endswith("chunked"):
            body = self._read_chunked(sock)
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            # no framing: the body runs until the server closes the connection
            if self._lowat != 1:
                self._plain(sock)
            while n := sock.recv_into(self._rbuf):
                buf += self._rview[:n]
            body = bytes(buf)
            buf.clear()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers, body)

    def _read_large(self, sock: _socket.socket, n: int) -> bytes:
        # a big event (up to 6 MB) is read straight into its final buffer
        if self._lowat != 1:
            self._plain(sock)
        body = bytearray(n)
        view = memoryview(body)
        have = len(self._buf)
        view[:have] = self._buf
        self._buf.clear()
        while have < n:
            got = sock.recv_into(view[have:])
            if not got:
                raise ConnectionLost(True)
            have += got
        return bytes(body)

    def _read_chunked(self, sock: _socket.socket) -> bytes:
        buf = self._buf
        parts: list[bytes] = []
        while True:
            while (eol := buf.find(b"\r\n")) < 0:
                self._fill(sock, True)
            size = int(bytes(buf[:eol]).split(b";", 1)[0].strip() or b"0", 16)
            del buf[: eol + 2]
            if size == 0:
                # skip trailers up to the empty line that ends the message
                while True:
                    while (eol := buf.find(b"\r\n")) < 0:
                        self._fill(sock, True)
                    line = bytes(buf[:eol])
                    del buf[: eol + 2]
                    if not line:
                        return b"".join(parts)
            while len(buf) < size + 2:
                self._fill(sock, True)
            parts.append(bytes(buf[:size]))
            del buf[: size + 2]

    # -- the Runtime API ----------------------------------------------------------------------

    def next(self, on_idle: Callable[[], None] | None = None) -> Response:
        """Block until the next invocation arrives (`GET /runtime/invocation/next`).

        `on_idle` runs (once) if none is waiting, before blocking for it. When the last
        response took a `next` with it, its answer is read, and only if the connection failed
        before a byte of it came is `next` asked again, on a new connection."""
        sock = self._sock
        if self._next_sent and sock is not None:
            self._next_sent = False
            try:
                if on_idle is not None and not self._buf:
                    self._wait_readable(sock, on_idle)
                    on_idle = None
                answer = self._read_response(sock)
                self._used_at = monotonic()
                return answer
            except ConnectionLost as e:
                self.close()
                if e.got_bytes:
                    raise
            except OSError:
                self.close()
        return self.request(self._next_request, b"", on_idle)

    def _post_head(self, path: str, length: int, extra: str) -> bytes:
        return (
            b"POST "
            + path.encode("utf-8", "surrogateescape")
            + b" HTTP/1.1\r\n"
            + self._common
            + extra.encode("latin-1", "replace")
            + b"Content-Length: %d\r\n\r\n" % length
        )

    def post_response(
        self,
        request_id: str,
        body: bytes,
        content_type: str,
        extra: str = "",
        then_next: bool = False,
        on_idle: Callable[[], None] | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> Response:
        """`POST /runtime/invocation/{id}/response`; `extra` holds more header lines.
        `then_next`: a small response takes the next `next` with it (read by `next()`), and
        this call returns when the 202 and the first bytes of the next invocation have come;
        `on_sent` runs when the request is written, before that wait."""
        path = f"{API_PREFIX}/invocation/{request_id}/response"
        head = self._post_head(path, len(body), f"Content-Type: {content_type}\r\n{extra}")
        if then_next and len(body) <= PIPELINE_MAX:
            return self.request(head, body, on_idle, then=self._next_request, on_sent=on_sent)
        return self.request(head, body)

    def post_response_stream(
        self,
        request_id: str,
        content_type: str,
        chunks: Iterator[bytes],
        describe_error: Callable[[Exception], tuple[str, bytes]],
        extra: str = "",
    ) -> Response:
        """A streamed `POST /runtime/invocation/{id}/response`: each chunk is sent as it comes.

        An exception raised by `chunks` ends the body with the error trailers (its type and its
        base64 body, from `describe_error`), which is how a stream reports a late error."""
        import binascii

        path = f"{API_PREFIX}/invocation/{request_id}/response"
        head = (
            b"POST "
            + path.encode("utf-8", "surrogateescape")
            + b" HTTP/1.1\r\n"
            + self._common
            + extra.encode("latin-1", "replace")
            + f"Content-Type: {content_type}\r\n".encode("latin-1", "replace")
            + b"Lambda-Runtime-Function-Response-Mode: streaming\r\n"
            + b"Transfer-Encoding: chunked\r\n"
            + b"Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n"
            + b"\r\n"
        )
        sock = self._usable_socket()
        try:
            sock.sendall(head)
            trailers = b""
            try:
                for chunk in chunks:
                    if chunk:  # an empty chunk would end the body
                        sock.sendall(b"%x\r\n" % len(chunk))
                        sock.sendall(chunk)
                        sock.sendall(b"\r\n")
            except Exception as e:
                error_type, body = describe_error(e)
                trailers = (
                    b"Lambda-Runtime-Function-Error-Type: "
                    + error_type.encode("ascii", "replace")
                    + b"\r\nLambda-Runtime-Function-Error-Body: "
                    + binascii.b2a_base64(body, newline=False)
                    + b"\r\n"
                )
            sock.sendall(b"0\r\n" + trailers + b"\r\n")
        except OSError:
            # the server may have refused the stream (413) and closed: its answer says why
            try:
                return self._read_response(sock)
            except (OSError, ConnectionLost):
                self.close()
                raise
        return self._read_response(sock)

    def post_error(
        self, request_id: str, body: bytes, error_type: str, xray_cause: str, extra: str = ""
    ) -> Response:
        """`POST /runtime/invocation/{id}/error` with the error type and X-Ray cause headers."""
        path = f"{API_PREFIX}/invocation/{request_id}/error"
        extra += f"Content-Type: application/json\r\nLambda-Runtime-Function-Error-Type: {error_type}\r\n"
        if xray_cause:
            extra += f"Lambda-Runtime-Function-XRay-Error-Cause: {xray_cause}\r\n"
        return self.request(self._post_head(path, len(body), extra), body)

    def post_init_error(self, body: bytes, error_type: str) -> Response:
        """`POST /runtime/init/error`; the caller exits afterwards."""
        path = f"{API_PREFIX}/init/error"
        extra = f"Content-Type: application/json\r\nLambda-Runtime-Function-Error-Type: {error_type}\r\n"
        return self.request(self._post_head(path, len(body), extra), body)
