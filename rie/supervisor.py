"""Starting, signalling and reaping one runtime process group, and measuring its memory.

Invariant: every process is started as the leader of its own session (so its process group holds
everything the function starts), and nothing leaves here without the group being killed: a reset or
a retirement kills the group, not just the leader, so no grandchild outlives its environment.
Output (stdout and stderr on one pipe, so their order is kept) goes to a callback as it arrives.

Memory: where the machine lets us make one, each runtime process gets a memory cgroup of its own,
whose peak counts every process the function ran, even those that have already exited (Lambda's
figure comes from the sandbox's cgroup too). Everywhere, /proc gives the peak RSS of the leader and
the RSS of its living descendants; the larger of the two figures is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

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
        self,
        proc: asyncio.subprocess.Process,
        read_fd: int,
        on_output: Callable[[bytes], None],
        cgroup: MemoryCgroup | None = None,
    ) -> None:
        self._proc = proc
        self.pid = proc.pid
        self._cgroup = cgroup
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
        self.release()
        return code

    def release(self) -> None:
        """Let go of what outlives the process: its memory cgroup, once its processes have left
        it (killed processes take a moment; the next start sweeps up whatever is left)."""
        cgroup, self._cgroup = self._cgroup, None
        if cgroup is not None and not cgroup.remove():
            MemoryCgroup.pending.add(cgroup)
            for delay in (0.05, 0.25, 1.0, 5.0):
                self._loop.call_later(delay, cgroup.remove)

    def memory_used_bytes(self) -> int:
        """The peak memory of the process group, as well as this machine lets us know it."""
        leader = _status_kb(self.pid, b"VmHWM:") * 1024
        peak = self._cgroup.peak_bytes() if self._cgroup is not None else None
        if peak is not None:
            return max(peak, leader)
        return leader + sum(_status_kb(child, b"VmHWM:") * 1024 for child in _descendants(self.pid))


async def spawn(
    command: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    on_output: Callable[[bytes], None],
    cgroup_name: str | None = None,
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
    cgroup = MemoryCgroup.create(cgroup_name) if cgroup_name else None
    if cgroup is not None and not cgroup.adopt(proc.pid):
        cgroup.remove()
        cgroup = None
    return Process(proc, read_fd, on_output, cgroup)


class MemoryCgroup:
    """A memory cgroup made for one runtime process, under the emulator's own (v1 or v2)."""

    _base: str | bool | None = False  # where ours are made; None when the machine allows none
    pending: ClassVar[set[MemoryCgroup]] = set()  # released, not yet empty enough to remove

    def __init__(self, path: str, peak_file: str) -> None:
        self.path = path
        self._peak_file = peak_file

    @classmethod
    def _find_base(cls) -> str | None:
        try:
            with open("/proc/self/cgroup", encoding="ascii") as f:
                lines = f.read().splitlines()
        except OSError:
            return None
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                return "/sys/fs/cgroup/memory" + path.rstrip("/")
        for line in lines:
            if line.startswith("0::"):
                return "/sys/fs/cgroup" + line[3:].rstrip("/")
        return None

    @classmethod
    def _sweep(cls, base: str) -> None:
        """Remove groups left by emulators that are gone (killed before they could clean up)."""
        try:
            names = os.listdir(base)
        except OSError:
            return
        for name in names:
            owner = name.split("-")[1] if name.startswith("pyrie-") else ""
            if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(base, name))

    @classmethod
    def create(cls, name: str) -> MemoryCgroup | None:
        if cls._base is False:
            cls._base = cls._find_base()
            if cls._base is not None:
                cls._sweep(cls._base)
        base = cls._base
        if not isinstance(base, str):
            return None
        path = os.path.join(base, name)
        try:
            os.mkdir(path)
        except OSError:
            cls._base = None  # not allowed here: do not try again
            return None
        for peak in ("memory.max_usage_in_bytes", "memory.peak"):
            if os.path.exists(os.path.join(path, peak)):
                return cls(path, os.path.join(path, peak))
        with contextlib.suppress(OSError):
            os.rmdir(path)  # a v2 group without the memory controller tells us nothing
        cls._base = None
        return None

    def adopt(self, pid: int) -> bool:
        try:
            with open(os.path.join(self.path, "cgroup.procs"), "w", encoding="ascii") as f:
                f.write(str(pid))
        except OSError:
            return False
        return True

    def peak_bytes(self) -> int | None:
        try:
            with open(self._peak_file, "rb") as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def remove(self) -> bool:
        """Remove the group if it is empty; True once it is gone."""
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass
        except OSError:
            return False
        MemoryCgroup.pending.discard(self)
        return True

    @classmethod
    def remove_pending(cls, within_s: float) -> None:
        """At exit: the last chance to remove groups whose processes were still leaving."""
        deadline = time.monotonic() + within_s
        while cls.pending and time.monotonic() < deadline:
            for cgroup in list(cls.pending):
                cgroup.remove()
            if cls.pending:
                time.sleep(0.01)


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
