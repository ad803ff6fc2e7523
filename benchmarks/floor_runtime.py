"""The floor runtime client: the least a Python runtime loop can cost.

One blocking keep-alive socket, stdlib `json`, no framework, no logging, no threads. It speaks just
enough of the Runtime API for the benchmarks (next, response, error) and is run as a plain script
(`python benchmarks/floor_runtime.py HANDLER`), not with `-m`, so that it does not pay for `runpy`
or for importing the `benchmarks` package: the start-up figure it gives is the floor too.
It is a measuring stick, not a product: no init errors, no context beyond the request id and deadline.
"""

import json
import os
import socket
import sys
import time


class Context:
    __slots__ = ("aws_request_id", "deadline_ms", "invoked_function_arn")

    def __init__(self, request_id: str, deadline_ms: str, arn: str) -> None:
        self.aws_request_id = request_id
        self.deadline_ms = int(deadline_ms or 0)
        self.invoked_function_arn = arn

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


def _read_response(sock: socket.socket, buf: bytes) -> tuple[dict[str, str], bytes, bytes]:
    """Read one HTTP/1.1 response (Content-Length or chunked); return headers, body, leftover bytes."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("Runtime API closed the connection")
        buf += chunk
    lines = buf[:end].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    buf = buf[end + 4 :]
    length = headers.get("content-length")
    if length is not None:
        need = int(length)
        if len(buf) < need:
            parts = [buf]
            have = len(buf)
            while have < need:
                chunk = sock.recv(max(65536, need - have))
                if not chunk:
                    raise ConnectionError("Runtime API closed the connection")
                parts.append(chunk)
                have += len(chunk)
            buf = b"".join(parts)
        return headers, buf[:need], buf[need:]
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = []
        while True:
            while b"\r\n" not in buf:
                buf += sock.recv(65536)
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("Runtime API closed the connection")
                buf += chunk
            if size == 0:
                # no trailers expected from an emulator
                return headers, b"".join(body), buf[2:]
            body.append(buf[:size])
            buf = buf[size + 2 :]
    return headers, b"", buf


def main() -> None:
    host, _, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rpartition(":")
    handler_name = sys.argv[1] if len(sys.argv) > 1 else os.environ["_HANDLER"]
    sys.path.insert(0, os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd())
    module_name, _, function_name = handler_name.rpartition(".")
    module = __import__(module_name.replace("/", "."), fromlist=["_"])
    handler = getattr(module, function_name)

    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    hostb = host.encode()
    next_request = (
        b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: " + hostb + b"\r\n\r\n"
    )
    loads, dumps = json.loads, json.dumps
    buf = b""
    while True:
        sock.sendall(next_request)
        headers, body, buf = _read_response(sock, buf)
        request_id = headers["lambda-runtime-aws-request-id"]
        context = Context(
            request_id,
            headers.get("lambda-runtime-deadline-ms", "0"),
            headers.get("lambda-runtime-invoked-function-arn", ""),
        )
        try:
            result = dumps(handler(loads(body) if body else None, context)).encode()
            kind = b"/response"
        except Exception as e:
            result = dumps({"errorMessage": str(e), "errorType": type(e).__name__}).encode()
            kind = b"/error"
        head = (
            b"POST /2018-06-01/runtime/invocation/"
            + request_id.encode()
            + kind
            + b" HTTP/1.1\r\nHost: "
            + hostb
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(result)).encode()
            + b"\r\n\r\n"
        )
        if len(result) < 65536:
            sock.sendall(head + result)
        else:
            sock.sendall(head)
            sock.sendall(result)
        _, _, buf = _read_response(sock, buf)


if __name__ == "__main__":
    try:
        main()
    except (ConnectionError, KeyboardInterrupt):
        sys.exit(0)
