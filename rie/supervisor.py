"""Starting, signalling and reaping one runtime process group, and measuring its memory.

Invariant: every process is started as the leader of its own session (so its process group holds
everything the function starts), and nothing leaves here without the group being killed: a reset or
a retirement kills the group, not just the leader, so no grandchild outlives its environment.
Output (stdout and stderr on one pipe, so their order is kept) goes to a callback as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence

_READ_SIZE = 65536


def describe_exit(returncode: int) -> str:
    """The wording Lambda uses: `exit status 3` or `signal: killed`."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.strsignal(-returncode) or f"signal {-returncode}"
    except ValueError:
        name = f"signal {-returncode}"
    return f"signal: {name[:1].lower()}{name[1:]}"


class Process:
    """A started runtime: its process group, its output pipe and its exit."""

    def __init__(
        self, proc: asyncio.subprocess.Process, read_fd: int, on_output: Callable[[bytes], None]
    ) -> None:
        self._proc = proc
        self.pid = proc.pid
        self.started_at = time.perf_counter()
        self._read_fd: int | None = read_fd
        self._on_output = on_output
        self._loop = asyncio.get_running_loop()
        os.set_blocking(read_fd, False)
        self._loop.add_reader(read_fd, self._readable)
        self.exited: asyncio.Task[int] = self._loop.create_task(proc.wait())

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def _readable(self) -> None:
        fd = self._read_fd
        if fd is None:
            return
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._on_output(data)
        else:
            self._close_output()

    def drain_output(self) -> None:
        """Deliver everything the runtime has written so far, synchronously.

        Called before an invocation's log is closed: the runtime wrote its output before it posted
        its answer, so it is already in the pipe even if the loop has not seen it yet.
        """
        fd = self._read_fd
        while fd is not None and fd == self._read_fd:
            try:
                data = os.read(fd, _READ_SIZE)
            except (BlockingIOError, OSError):
                return
            if not data:
                self._close_output()
                return
            self._on_output(data)

    def _close_output(self) -> None:
        fd, self._read_fd = self._read_fd, None
        if fd is not None:
            self._loop.remove_reader(fd)
            os.close(fd)

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def stop(self, grace_s: float) -> int:
        """SIGTERM the group and give it `grace_s`, then SIGKILL it (at once when grace_s is 0)."""
        if self.returncode is None and grace_s > 0:
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), grace_s)
        # the leader may be gone while others in its group live on: kill the group regardless
        self.signal_group(signal.SIGKILL)
        code = await self.exited
        self.drain_output()
        self._close_output()
        return code

    def memory_used_bytes(self) -> int:
        """Peak RSS of the leader plus the current RSS of its descendants (0 once it is gone)."""
        return _status_kb(self.pid, b"VmHWM:") * 1024 + sum(
            _status_kb(child, b"VmRSS:") * 1024 for child in _descendants(self.pid)
        )


async def spawn(
    command: Sequence[str], env: Mapping[str, str], cwd: str, on_output: Callable[[bytes], None]
) -> Process:
    read_fd, write_fd = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,  # its own session and process group
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return Process(proc, read_fd, on_output)


def _status_kb(pid: int, key: bytes) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 1024:
        parent = todo.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children", "rb") as f:
                kids = [int(k) for k in f.read().split()]
        except (OSError, ValueError):
            continue
        found.extend(kids)
        todo.extend(kids)
    return found
