"""Lambda Managed Instances: N invocations at once, served by N forked worker processes.

Owns the parent's part when `AWS_LAMBDA_MAX_CONCURRENCY=N`: fork the workers before anything
is initialised (each imports the handler and opens its own Runtime API connection, so nothing
opened at init is shared between processes), pass SIGTERM on to them, and exit when they have.
If one worker dies the others are stopped too, so the platform sees the runtime exit and
replaces the whole environment instead of serving on at reduced concurrency.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # `signal` would import enum
import os
import sys

TYPE_CHECKING = False  # `typing` costs milliseconds at start-up; annotations are never evaluated

if TYPE_CHECKING:
    from collections.abc import Callable

_SOCKET_ENV = "_LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET"


def _redirect_output(socket_path: str) -> None:
    # each worker gets its own log stream from the platform's fd provider socket
    import _socket

    for fd in (1, 2):
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.connect(socket_path)
        os.dup2(sock.fileno(), fd)
        sock.close()


def _worker(serve: Callable[[], int]) -> int:
    socket_path = os.environ.get(_SOCKET_ENV)
    if socket_path:
        _redirect_output(socket_path)
    return serve()


def _status(wait_status: int) -> int:
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def run_workers(count: int, serve: Callable[[], int]) -> int:
    """Fork `count` workers, each running `serve` (one runtime loop) in its own process; the exit status is the first failing worker's."""
    if count < 1:
        sys.stderr.write(f"pyrie runtime: AWS_LAMBDA_MAX_CONCURRENCY must be >= 1, got {count}\n")
        return 2
    sys.stdout.flush()
    sys.stderr.flush()
    pids: list[int] = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _worker(serve)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        pids.append(pid)

    stopping = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p in pids:
            try:  # noqa: SIM105 (no contextlib on the start-up path)
                os.kill(p, signum)
            except ProcessLookupError:
                pass

    _signal.signal(_signal.SIGTERM, forward)
    _signal.signal(_signal.SIGINT, forward)
    result = 0
    alive = set(pids)
    while alive:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        alive.discard(pid)
        code = _status(status)
        if code and not result:
            result = code
            if not stopping:
                forward(_signal.SIGTERM, None)
    return 0 if stopping and result in (0, 128 + _signal.SIGTERM) else result
