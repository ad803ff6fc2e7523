"""Starting, signalling and reaping one runtime process group, and measuring its memory.

Invariant: nothing the function started outlives it. Every runtime is started as the leader of its
own session (its process group holds what it starts) and, where the machine allows one, in a
memory cgroup of its own (which also holds what left the group with `setsid`); a reset, an exit or
a retirement kills the group and every member of the cgroup. The runtime dies with the emulator
(parent-death signal), and `sweep_leftovers` at start-up kills and removes what an emulator killed
outright (`kill -9`) left behind: its cgroups with their processes, its temporary directories and
the processes still using them. Without cgroups, a `setsid` escape of a runtime whose emulator was
SIGKILLed is found only through the TMPDIR it inherited.
Output (stdout and stderr on one pipe, so their order is kept) goes to a callback as it arrives.

Under the sandbox, an environment's group (made per init) holds Lambda's limits, and each of its
processes (the runtime, each extension) has a group of its own inside it, so that they share the
limits while each one's end, peak and OOM kills stay its own.

Memory: where the machine lets us make one, each runtime process gets a memory cgroup of its own,
whose peak counts every process the function ran, even those that have already exited (Lambda's
figure comes from the sandbox's cgroup too). Everywhere, /proc gives the peak RSS of the leader and
the RSS of its living descendants; the larger of the two figures is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from rie.sandbox import cgroups, namespace
from rie.sandbox.limits import Quotas

_READ_SIZE = 65536
TMPDIR_PREFIX = "rie-"  # an environment's TMPDIR: rie-<emulator pid>-<function>-env<n>-XXXXXX
CGROUP_PREFIX = "pyrie-"  # a runtime's memory cgroup: pyrie-<emulator pid>-env<n>-<init>
_KILL_ROUNDS = 20  # a cgroup's members are killed until none is left (they may be forking)


def tmpdir_prefix(function_name: str, env_id: int) -> str:
    return f"{TMPDIR_PREFIX}{os.getpid()}-{function_name}-env{env_id}-"


def cgroup_name(env_id: int, init: int) -> str:
    return f"{CGROUP_PREFIX}{os.getpid()}-env{env_id}-{init}"


def _owner(name: str, prefix: str) -> int | None:
    """The emulator pid a leftover's name carries, if it is one of ours."""
    if not name.startswith(prefix):
        return None
    owner = name[len(prefix) :].split("-", 1)[0]
    return int(owner) if owner.isdigit() else None


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # only here, once: nothing else needs it

    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl: Callable[..., int] | None = None
_preexec_ok: bool | None = None  # None: not decided yet (at the first spawn)
_pidfd_ok = False  # runtimes are started off the loop, their exits seen through pidfds


def _decide_child_setup() -> None:
    """Decided at the first spawn, on the loop: whether runtimes get a preexec function, and
    whether they are started off the loop."""
    global _prctl, _preexec_ok, _pidfd_ok
    if _preexec_ok is None:
        # a preexec function costs a fork instead of a vfork: under uvloop, which forks anyway
        # when it spawns on the loop, runtimes get one; the stdlib loop keeps vfork (several
        # times cheaper per spawn) and its runtimes go without the parent-death signal and adopt
        # their cgroup afterwards. (That signal is tied to the thread that forks: runtimes
        # started off the loop come from the loop's worker threads, which live as long as it.)
        _preexec_ok = type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        _prctl = _load_prctl() if _preexec_ok else None
        _pidfd_ok = _pidfd_works()


def _child_setup(
    join_files: Sequence[str],
    nofile: int | None = None,
    fs: namespace.Plan | None = None,
) -> Callable[[], None] | None:
    """What the child does between fork and exec: join its cgroups (before it can start anything,
    so even what it starts at once is a member), take Lambda's open-file limit, and tie itself to
    the emulator's life (PR_SET_PDEATHSIG), so a runtime does not outlive an emulator that is
    killed outright. Its own /tmp and read-only code (`fs`) can only be had here: with them,
    the child gets a preexec function whatever the loop."""
    if not _preexec_ok and fs is None:
        return None
    prctl = _prctl
    if prctl is None and not join_files and nofile is None and fs is None:
        return None
    parent = os.getpid()
    setrlimit = _setrlimit_nofile if nofile is not None else None
    mounts = namespace.child_setup(fs) if fs is not None else None

    def preexec() -> None:
        for path in join_files:  # `tasks` files on v1 (MemoryCgroup.join_files)
            with contextlib.suppress(OSError):  # the emulator adopts it afterwards otherwise
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, b"0")  # 0: the writing thread (v1 `tasks`) or process
                finally:
                    os.close(fd)
        if setrlimit is not None and nofile is not None:
            setrlimit(0, nofile)
        if mounts is not None:
            mounts()
        if prctl is not None:
            prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the emulator died before the signal was armed
                os._exit(1)

    return preexec


def _setrlimit_nofile(pid: int, limit: int) -> None:
    """RLIMIT_NOFILE of `pid` (0: this process), soft and hard, as Lambda's 1,024; never above
    what it has (only root may raise a hard limit)."""
    import resource

    with contextlib.suppress(OSError, ValueError):
        _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))


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
        proc: asyncio.subprocess.Process | _Child,
        read_fd: int,
        on_output: Callable[[bytes], None],
        cgroup: MemoryCgroup | None = None,
    ) -> None:
        self._proc = proc
        self.pid = proc.pid
        self._cgroup = cgroup
        self._peak_bytes = 0  # the highest figure measured: it outlives the process
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

    def kill_everything(self) -> None:
        """SIGKILL the process group and every process in the cgroup, `setsid` escapees too."""
        if self.returncode is None:
            self.memory_used_bytes()  # its peak, while /proc still has it
        self.signal_group(signal.SIGKILL)
        if self._cgroup is not None:
            self._cgroup.kill_members()

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer ended a process of this runtime's memory cgroup (its
        own counter: a SIGKILL from anyone else does not count). Read before `release`."""
        return self._cgroup is not None and cgroups.oom_kills(self._cgroup.path) > 0

    async def stop(self, grace_s: float) -> int:
        """SIGTERM the group and give it `grace_s`, then SIGKILL it (at once when grace_s is 0)."""
        if self.returncode is None and grace_s > 0:
            self.memory_used_bytes()  # it may exit within the grace: its peak first
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), grace_s)
        # the leader may be gone while others in its group live on: kill the group regardless
        self.kill_everything()
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
        """The peak memory of the process group, as well as this machine lets us know it: the
        highest figure measured so far (a process that is gone has none left in /proc, but its
        exit status came with the peak of it and of the children it waited for)."""
        peak = self._cgroup.peak_bytes() if self._cgroup is not None else None
        if peak is not None and self._cgroup is not None and "memory" in self._cgroup.enforced:
            # a group with the sandbox's limit holds the figure Lambda reports: a process's RSS
            # also counts shared pages charged elsewhere (the interpreter's), and can exceed it;
            # the leader's own figure is not read then (one file read per sample, not two)
            self._peak_bytes = max(self._peak_bytes, peak)
            return self._peak_bytes
        leader = max(_status_kb(self.pid, b"VmHWM:") * 1024, getattr(self._proc, "max_rss", 0))
        if peak is not None:
            used = max(peak, leader)
        else:
            children = _descendants(self.pid) if self.returncode is None else ()
            used = leader + sum(_status_kb(child, b"VmHWM:") * 1024 for child in children)
        self._peak_bytes = max(self._peak_bytes, used)
        return self._peak_bytes


class _Child:
    """A runtime process started off the loop (`subprocess.Popen` in a worker thread), whose exit
    the loop sees through a pidfd; it offers what `Process` uses of an asyncio subprocess."""

    def __init__(self, popen: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._popen = popen  # kept until the exit is seen, so that nothing else reaps the pid
        self.pid = popen.pid
        self.max_rss = 0  # bytes: the peak RSS of it and its waited-for children, once it exited
        self._loop = loop
        self._exit: asyncio.Future[int] = loop.create_future()
        self._pidfd: int | None = os.pidfd_open(popen.pid)
        loop.add_reader(self._pidfd, self._readable)

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def _readable(self) -> None:
        if self._pidfd is None:
            return
        code = self._popen.returncode
        if code is None:
            try:
                # reaped here rather than by `poll`: wait4 also gives the peak RSS of the process
                # (and of the children it waited for), which /proc no longer has once it is gone
                pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status, usage = 0, 0, None
                code = self._popen.poll()
            if pid:
                code = os.waitstatus_to_exitcode(status)  # negative for a signal, as asyncio's
                self._popen.returncode = code
                if usage is not None:
                    self.max_rss = usage.ru_maxrss * 1024
        if code is None:
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None
        if not self._exit.done():
            self._exit.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)


def _pidfd_works() -> bool:
    """Whether this machine gives pidfds (Linux 5.3 and later, unless a seccomp filter refuses)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


def _start_child(
    command: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    write_fd: int,
    cgroup_name: str | None,
    limits: Quotas | None = None,
    fs: namespace.Plan | None = None,
    cgroup_parent: MemoryCgroup | None = None,
) -> tuple[subprocess.Popen[bytes], MemoryCgroup | None]:
    """Make the runtime's cgroup, start the runtime in it; the cgroup if the runtime is in it.

    Run in a worker thread: making a cgroup, `fork` and `exec` (which `Popen` waits for) and the
    cgroup write take milliseconds each, more when the CPUs are busy with other runtimes' init,
    and the loop meanwhile serves the environments already running."""
    cgroup = MemoryCgroup.create(cgroup_name, limits, cgroup_parent) if cgroup_name else None
    try:
        popen = subprocess.Popen(
            list(command), **_child_options(env, cwd, write_fd, cgroup, limits, fs)
        )
    except BaseException:
        if cgroup is not None:
            cgroup.remove()
        raise
    return popen, _adopted(cgroup, popen.pid, limits)


def _child_options(
    env: Mapping[str, str],
    cwd: str,
    write_fd: int,
    cgroup: MemoryCgroup | None,
    limits: Quotas | None = None,
    fs: namespace.Plan | None = None,
) -> dict[str, Any]:
    """How a runtime is started, whichever way: output to the emulator's pipe, its own session
    and process group, and the child set-up (cgroup, parent-death signal) before exec."""
    return {
        "stdin": subprocess.DEVNULL,
        "stdout": write_fd,
        "stderr": write_fd,
        "env": dict(env),
        "cwd": cwd,
        "start_new_session": True,
        "preexec_fn": _child_setup(
            cgroup.join_files if cgroup is not None else (),
            limits.nofile if limits is not None else None,
            fs,
        ),
    }


def _adopted(
    cgroup: MemoryCgroup | None, pid: int, limits: Quotas | None = None
) -> MemoryCgroup | None:
    """The cgroup once `pid` is in it (the child joins it itself; this makes sure); else none.
    Without a preexec function, the open-file limit is set from here too."""
    if limits is not None and not _preexec_ok:
        _setrlimit_nofile(pid, limits.nofile)
    if cgroup is not None and not cgroup.adopt(pid):
        cgroup.remove()
        return None
    return cgroup


def _abandon(
    loop: asyncio.AbstractEventLoop,
    started: asyncio.Future[tuple[subprocess.Popen[bytes], MemoryCgroup | None]],
) -> None:
    """Kill a runtime whose start was given up on, and reap it."""
    if started.cancelled() or started.exception() is not None:
        return
    popen, cgroup = started.result()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)
    if cgroup is not None:
        cgroup.kill_members()
        MemoryCgroup.pending.add(cgroup)  # removed once empty, at the latest at shutdown
        for delay in (0.05, 0.25, 1.0):
            loop.call_later(delay, cgroup.remove)
    loop.run_in_executor(None, popen.wait)


async def spawn(
    command: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    on_output: Callable[[bytes], None],
    cgroup_name: str | None = None,
    limits: Quotas | None = None,
    fs: namespace.Plan | None = None,
    cgroup_parent: MemoryCgroup | None = None,
) -> Process:
    """Start a runtime; `limits`: Lambda's for its memory size (rie/sandbox/limits.py), written
    into its cgroups before it starts, where this machine allows; `fs`: its own /tmp and
    read-only code (rie/sandbox/namespace.py). With `cgroup_parent` (the environment's group,
    which holds the limits), `cgroup_name` is a group of the process's own inside it."""
    _decide_child_setup()
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    try:
        if _pidfd_ok:
            # off the loop: the loop keeps serving the other environments while this one starts
            starting = loop.run_in_executor(
                None,
                _start_child,
                command,
                env,
                cwd,
                write_fd,
                cgroup_name,
                limits,
                fs,
                cgroup_parent,
            )
            try:
                popen, cgroup = await asyncio.shield(starting)
            except asyncio.CancelledError:
                # given up on while it starts: it is killed as soon as it is there
                starting.add_done_callback(functools.partial(_abandon, loop))
                raise
            return Process(_Child(popen, loop), read_fd, on_output, cgroup)
        cgroup = MemoryCgroup.create(cgroup_name, limits, cgroup_parent) if cgroup_name else None
        try:
            proc = await asyncio.create_subprocess_exec(
                *command, **_child_options(env, cwd, write_fd, cgroup, limits, fs)
            )
        except BaseException:
            if cgroup is not None:
                cgroup.remove()
            raise
        return Process(proc, read_fd, on_output, _adopted(cgroup, proc.pid, limits))
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)


class MemoryCgroup:
    """A memory cgroup made for one runtime process, under the emulator's own (v1 or v2); or
    made for a whole environment (its limits, shared by the runtime and its extensions), each of
    its processes in a group of its own inside it (`parent`)."""

    _base: str | bool | None = False  # where ours are made; None when the machine allows none
    pending: ClassVar[set[MemoryCgroup]] = set()  # released, not yet empty enough to remove

    def __init__(self, path: str, peak_file: str) -> None:
        self.path = path
        self._peak_file = peak_file
        self.extra_groups: list[str] = []  # v1: its cpu and pids groups (rie/sandbox/cgroups.py)
        self.joined: tuple[str, ...] = ()  # v1: its parent's cpu and pids groups, joined too
        self.enforced: set[str] = set()  # the limits written: memory, cpu, pids
        self._join_files: tuple[str, ...] | None = None  # once the groups above are known

    @classmethod
    def _find_base(cls) -> str | None:
        own = cgroups.own_paths()
        if "memory" in own:
            return f"{cgroups.CGROUP_ROOT}/memory{own['memory']}"
        if "" in own:  # the v2 hierarchy
            return cgroups.CGROUP_ROOT + own[""]
        return None

    @classmethod
    def sweep(cls, within_s: float) -> list[str]:
        """Kill the processes of groups left by emulators that are gone (killed before they could
        clean up), then remove the groups; the paths of those that could not be removed."""
        base = cls._find_base()
        try:
            names = os.listdir(base) if base else []
        except OSError:
            return []
        assert base is not None
        stale = []
        for name in names:
            owner = _owner(name, CGROUP_PREFIX)
            if owner is not None and not _alive(owner):
                group = cls(os.path.join(base, name), "")
                group.kill_members()
                stale.append(group)
        cgroups.sweep(
            CGROUP_PREFIX,
            lambda name: (owner := _owner(name, CGROUP_PREFIX)) is not None and not _alive(owner),
            within_s,
        )
        deadline = time.monotonic() + within_s
        while stale:
            stale = [group for group in stale if not group.remove()]
            if not stale or time.monotonic() > deadline:
                break
            time.sleep(0.01)  # killed processes take a moment to leave their group
        return [group.path for group in stale]

    @classmethod
    def base(cls) -> str | None:
        """Where runtimes' memory cgroups are made (None: nowhere on this machine)."""
        if cls._base is False:
            cls._base = cls._find_base()
        return cls._base if isinstance(cls._base, str) else None

    @classmethod
    def create(
        cls, name: str, limits: Quotas | None = None, parent: MemoryCgroup | None = None
    ) -> MemoryCgroup | None:
        """A group `name` with `limits` written; inside `parent` (named `parent/leaf`), a group
        without limits of its own (the parent's apply to it, and it joins the parent's v1 cpu
        and pids groups)."""
        if cls._base is False:
            cls._base = cls._find_base()
        base = cls._base
        if not isinstance(base, str):
            return None
        path = os.path.join(base, name)
        try:
            os.mkdir(path)
        except OSError:
            if parent is None:
                cls._base = None  # not allowed here: do not try again
            return None
        for peak in ("memory.max_usage_in_bytes", "memory.peak"):
            if os.path.exists(os.path.join(path, peak)):
                group = cls(path, os.path.join(path, peak))
                if parent is not None:
                    group.joined = tuple(
                        os.path.join(g, "cgroup.procs") for g in parent.extra_groups
                    )
                elif limits is not None:
                    applied = cgroups.apply(path, name, limits)
                    group.extra_groups, group.enforced = applied.extra_groups, applied.enforced
                return group
        with contextlib.suppress(OSError):
            os.rmdir(path)  # a v2 group without the memory controller tells us nothing
        if parent is None:
            cls._base = None
        return None

    @classmethod
    def create_shared(cls, name: str, limits: Quotas) -> MemoryCgroup | None:
        """An environment's group: its limits, shared by every process of the environment, each
        in a group of its own inside it (v2: the controllers are handed down to them)."""
        group = cls.create(name, limits)
        v2 = group is not None and cgroups.is_v2(group.path)
        if group is not None and v2 and not cgroups.delegate_controllers(group.path):
            group.remove()  # its processes could not have groups of their own in it
            return None
        return group

    @property
    def procs_file(self) -> str:
        return os.path.join(self.path, "cgroup.procs")

    @property
    def procs_files(self) -> tuple[str, ...]:
        """Every group the runtime joins: memory first (the one that must take)."""
        own = (os.path.join(g, "cgroup.procs") for g in self.extra_groups)
        return (self.procs_file, *own, *self.joined)

    @property
    def join_files(self) -> tuple[str, ...]:
        """What a child writes "0" to between fork and exec to join the groups of `procs_files`:
        a v1 group's `tasks` file. Between fork and exec the child is one thread, so moving that
        thread moves the whole process; and a thread that moves itself skips the lock a move of a
        whole process takes, whose first use after a quiet spell waits out an RCU grace period
        (10-20 ms on each cold start, measured; benchmarks/RESULTS.md). v2 has no such file."""
        files = self._join_files
        if files is None:
            tasks = tuple(os.path.join(os.path.dirname(p), "tasks") for p in self.procs_files)
            files = tuple(
                t if os.path.exists(t) else p for t, p in zip(tasks, self.procs_files, strict=True)
            )
            self._join_files = files
        return files

    def adopt(self, pid: int) -> bool:
        try:
            with open(self.procs_file, "w", encoding="ascii") as f:
                f.write(str(pid))
        except OSError:
            return False
        for procs in self.procs_files[1:]:
            # a limit less if it fails: the start-up line said so
            with contextlib.suppress(OSError), open(procs, "w", encoding="ascii") as f:
                f.write(str(pid))
        return True

    def members(self) -> list[int]:
        """Its processes and those of the groups inside it."""
        found: list[int] = []
        for path in [self.path, *self._inner()]:
            try:
                with open(os.path.join(path, "cgroup.procs"), "rb") as f:
                    found.extend(int(pid) for pid in f.read().split())
            except (OSError, ValueError):
                continue
        return found

    def _inner(self) -> list[str]:
        """The groups right inside this one (an environment's: one per process)."""
        try:
            with os.scandir(self.path) as it:
                inner = [e.path for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            return []
        return inner

    def kill_members(self) -> None:
        """SIGKILL every process in the group (v2: cgroup.kill; v1: one by one, until no new
        one appears, since a member may fork while the others are being killed)."""
        try:
            with open(os.path.join(self.path, "cgroup.kill"), "w", encoding="ascii") as f:
                f.write("1")
            return
        except OSError:
            pass
        for _ in range(_KILL_ROUNDS):
            members = self.members()
            if not members:
                return
            for pid in members:
                _kill(pid)

    def peak_bytes(self) -> int | None:
        try:
            with open(self._peak_file, "rb") as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def remove(self) -> bool:
        """Remove the group if it is empty; True once it is gone."""
        self.extra_groups = cgroups.remove_groups(self.extra_groups)
        cgroups.remove_groups(self._inner())  # what its processes' groups left (emptied)
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass
        except OSError:
            return False
        if self.extra_groups:  # a v1 cpu or pids group still busy: tried again later
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


def sweep_leftovers(within_s: float = 1.0) -> None:
    """At start-up: kill and remove what emulators killed outright left behind (only those whose
    pid is gone: several emulators may run at once). Their memory cgroups go with every process
    in them; then their temporary directories go, with any process still using one as TMPDIR
    (which finds the `setsid` escapees of a runtime where there are no cgroups)."""
    MemoryCgroup.sweep(within_s)
    # where tempfile.mkdtemp may have made them, without tempfile.gettempdir()'s probe (it writes
    # a file, which costs start-up time on a busy disk)
    roots = {os.environ.get(var) or "" for var in ("TMPDIR", "TEMP", "TMP")} | {"/tmp", "/var/tmp"}
    stale: set[str] = set()
    for root in roots - {""}:
        try:
            names = os.listdir(root)
        except OSError:
            continue
        stale.update(
            os.path.join(root, name)
            for name in names
            if (owner := _owner(name, TMPDIR_PREFIX)) is not None and not _alive(owner)
        )
    if not stale:
        return
    wanted = {b"TMPDIR=" + os.fsencode(path) for path in stale}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if wanted.intersection(environ):
            _kill(int(entry))
    for path in stale:
        namespace.release_tmp(path)  # an environment's own /tmp (rie/sandbox/namespace.py)
        shutil.rmtree(path, ignore_errors=True)
