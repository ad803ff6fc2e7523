"""An environment's own /tmp and read-only code, through a private mount namespace per process.

As root ("root" mode), each environment gets a tmpfs of its ephemeral-storage size, mounted (by
the emulator, in its own namespace) on the environment's directory under the machine's temporary
directory and made anew at each init, so it is empty when an environment starts and gone with
it. Every process of the environment (runtime, extensions) enters a mount namespace of its own
between fork and exec (`child_setup`), where that tmpfs is bind-mounted on /tmp, and the task root
and the layers are bind-mounted read-only over themselves. The runtime and its extensions thus
share one /tmp, as on Lambda, while the machine's /tmp and the code stay untouched.

Without root, where the kernel allows unprivileged user namespaces ("userns" mode), each process
enters a user namespace (mapping only its own user and group) with its mount namespace, and
mounts a tmpfs of the ephemeral size on /tmp itself: the same limits, but the runtime's /tmp and
each extension's are their own (Lambda's are one).

The code, the interpreter and anything else the function runs from may themselves live under the
machine's /tmp (a venv there, pytest's `tmp_path`): those directories are opened before /tmp is
covered and bind-mounted back, read-only, at their own paths, so they stay reachable (their
parent directories appear, empty, in the function's /tmp). So do the paths under /tmp that the
values of the function's variables name (a marker, a record file: the user's own channel with
the function), writable, as the machine has them (`channel_paths`).

The layers appear merged at /opt, as Lambda unpacks them there: a read-only overlay whose lower
directories are the layers (the last on top) over the machine's own /opt, which thus stays
visible; where the machine has no /opt nothing is made on its root, and the layers are only at
their own paths.

tmpfs pages are memory: what a function keeps in /tmp is charged to its memory cgroup, as the
kernel charges page cache to the writer. docs/resources.md says what that means.

Needs CAP_SYS_ADMIN (root); without it nothing here is applied and `capability` says why.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ctypes

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
# statvfs flags -> the mount flags a read-only remount must keep (a user namespace may not drop
# them: they are locked on mounts it did not make)
_KEEP_FLAGS = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, 8),
    (os.ST_NOATIME, 1024),
    (os.ST_NODIRATIME, 2048),
    (4096, MS_RELATIME),  # ST_RELATIME
)
MNT_DETACH = 2
SANDBOX_TMP = "/tmp"
LAMBDA_TASK_ROOT = "/var/task"
LAMBDA_OPT = "/opt"

_libc: ctypes.CDLL | None = None
_get_errno: Callable[[], int] | None = None
_ulong: Any = None


def _lib() -> ctypes.CDLL:
    """libc, loaded the first time an environment needs it (ctypes costs start-up time)."""
    global _libc, _get_errno, _ulong
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
        _get_errno, _ulong = ctypes.get_errno, ctypes.c_ulong
    return _libc


def _error(what: str) -> OSError:
    errno = _get_errno() if _get_errno is not None else 0
    return OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> None:
    rc = _lib().mount(
        None if source is None else os.fsencode(source),
        os.fsencode(target),
        None if fstype is None else fstype.encode(),
        _ulong(flags),
        None if data is None else data.encode(),
    )
    if rc != 0:
        raise _error(f"mount {target}")


def _umount(target: str) -> None:
    if _lib().umount2(os.fsencode(target), MNT_DETACH) != 0:
        raise _error(f"umount {target}")


_capability: tuple[str | None, str | None] | None = None


def capability() -> str | None:
    """None when this machine lets rie give environments their own /tmp and read-only code;
    else why not (decided once)."""
    return _decide()[1]


def mode() -> str | None:
    """ "root", "userns" or None (not possible here)."""
    return _decide()[0]


def _decide() -> tuple[str | None, str | None]:
    global _capability
    if _capability is None:
        _capability = _probe()
    return _capability


def _probe() -> tuple[str | None, str | None]:
    if not sys.platform.startswith("linux"):
        return None, "Linux mount namespaces are needed"
    if not os.path.exists("/proc/self/ns/mnt"):
        return None, "this kernel has no mount namespaces"
    try:
        _lib().unshare  # noqa: B018 - present in glibc and musl; resolved, not called
    except AttributeError:
        return None, "the C library has no unshare()"
    if os.geteuid() == 0:
        return "root", None
    why = _userns_blocked()
    if why is not None:
        return None, f"not root, and {why} (see docs/resources.md)"
    return "userns", None


def _userns_blocked() -> str | None:
    """Why unprivileged user namespaces cannot be had here, or None. The sysctls say most; a
    child that tries is the only sure answer (AppArmor, seccomp), and costs a fork, once."""
    for path, bad, why in (
        (
            "/proc/sys/kernel/unprivileged_userns_clone",
            "0",
            "user namespaces are disabled: sysctl kernel.unprivileged_userns_clone=0",
        ),
        ("/proc/sys/user/max_user_namespaces", "0", "sysctl user.max_user_namespaces=0"),
        (
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1",
            "AppArmor restricts unprivileged user namespaces "
            "(sysctl kernel.apparmor_restrict_unprivileged_userns=1)",
        ),
    ):
        try:
            with open(path, encoding="ascii") as f:
                if f.read().strip() == bad:
                    return why
        except OSError:
            continue
    lib = _lib()
    pid = os.fork()
    if pid == 0:  # the child only tries, and leaves at once
        os._exit(0 if lib.unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return "this machine refuses unprivileged user namespaces"
    return None


def fresh_tmp(path: str, size_bytes: int) -> bool:
    """Mount an empty tmpfs of `size_bytes` on `path` (the environment's directory), replacing the
    one of the last init; False if the machine refuses (the function then runs without)."""
    release_tmp(path)
    try:
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_bytes},mode=1777")
    except OSError:
        return False
    return True


def release_tmp(path: str) -> None:
    """Unmount an environment's tmpfs (its content goes with it)."""
    if os.path.ismount(path):
        with contextlib.suppress(OSError):
            _umount(path)


@dataclass(frozen=True, slots=True)
class Plan:
    """What one process of an environment sees: `tmp_source` on /tmp (None: a tmpfs of
    `tmp_bytes` of its own, in a user namespace), `readonly` paths read-only, `keep` (paths
    under /tmp, each with whether the function may write there) reachable at their own paths;
    the working directory `cwd` entered again once the mounts are made."""

    tmp_source: str | None
    readonly: tuple[str, ...]
    keep: tuple[tuple[str, bool], ...]
    cwd: str
    tmp_bytes: int = 0
    # the task root, shown read-only at /var/task too ("" : not); `var_entries`: what the
    # machine's /var holds, put back (bound) when /var/task has to be made on a tmpfs over /var
    task_root: str = ""
    var_entries: tuple[tuple[str, str], ...] = ()
    # the layers, in order, merged read-only at /opt over the machine's own /opt (an overlay:
    # a later layer's file wins, and what the machine keeps in /opt stays there); () : not
    opt_layers: tuple[str, ...] = ()


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# a function's settings name at most this many paths under /tmp to keep (each is a mount in
# every process's start: the cold start stays bounded whatever the environment holds)
MAX_KEPT = 64


def plan(
    tmp_source: str | None,
    readonly: Iterable[str],
    reachable: Iterable[str],
    cwd: str,
    tmp_bytes: int = 0,
    task_root: str = "",
    writable: Iterable[str] = (),
    layers: Sequence[str] = (),
) -> Plan:
    """The mounts of one process: `readonly` is its code (the task root, layers), `reachable`
    what else it runs from (files or directories: kept read-only), `writable` the paths its
    environment's variables name (`channel_paths`: kept as the machine has them, writable).
    Only paths under the machine's /tmp need keeping; the code is read-only wherever it is."""
    ro = sorted({os.path.realpath(p) for p in readonly if p and os.path.isdir(p)})

    def keepable(path: str) -> bool:
        return (
            _under(path, SANDBOX_TMP)
            and path != SANDBOX_TMP
            # what is in the environment's own /tmp is there already
            and (tmp_source is None or not _under(path, tmp_source))
        )

    modes: dict[str, bool] = {}
    for path in writable:
        if path not in ro:  # named exactly, a path in the code is writable; the code itself never
            modes[path] = True
    for path in (*ro, *reachable):
        if not path:
            continue
        path = os.path.realpath(path)
        if not os.path.isdir(path):
            path = os.path.dirname(path)
        if keepable(path):
            modes.setdefault(path, False)
    for path in ro:  # the code is read-only even where a variable names its directory
        if path in modes:
            modes[path] = False
    # a kept path inside another one of the same kind needs nothing of its own (it is shown with
    # it); one of the other kind is mounted over it, after it (sorted: parents first)
    keep: list[tuple[str, bool]] = []
    for path in sorted(p for p in modes if keepable(p)):
        enclosing = [q for q, _ in keep if _under(path, q)]
        if enclosing and modes[max(enclosing, key=len)] == modes[path]:
            continue
        keep.append((path, modes[path]))
        if len(keep) >= MAX_KEPT:
            break
    var_entries: tuple[tuple[str, str], ...] = ()
    if task_root:
        task_root = os.path.realpath(task_root)
        if task_root == LAMBDA_TASK_ROOT or _under(LAMBDA_TASK_ROOT, task_root):
            task_root = ""  # already there
        elif not os.path.isdir(LAMBDA_TASK_ROOT):
            found = _var_entries()
            if found is None:
                task_root = ""
            else:
                var_entries = found
    # the code under /tmp is made read-only where it is kept; the rest, over itself
    outside = tuple(p for p in ro if not keepable(p))
    return Plan(
        tmp_source, outside, tuple(keep), cwd, tmp_bytes, task_root, var_entries, _opt(layers)
    )


def _opt(layers: Sequence[str]) -> tuple[str, ...]:
    """The layers to merge at /opt: only where the machine has an /opt to mount on (it is not
    made on the machine's root) and every layer's path can be an overlay's lower directory."""
    found = tuple(os.path.realpath(p) for p in layers if p and os.path.isdir(p))
    if not found or not os.path.isdir(LAMBDA_OPT):
        return ()
    if any(c in p for p in (*found, LAMBDA_OPT) for c in ":,\\"):
        return ()  # overlay's option syntax has no room for them
    return found


def _var_entries() -> tuple[tuple[str, str], ...] | None:
    """/var's entries as (name, kind): "d" a directory, "f" a file, "l:<target>" a symlink;
    None when /var cannot be listed (then there is no /var/task)."""
    out = []
    try:
        with os.scandir("/var") as it:
            for entry in it:
                if entry.is_symlink():
                    out.append((entry.name, "l:" + os.readlink(entry.path)))
                elif entry.is_dir():
                    out.append((entry.name, "d"))
                else:
                    out.append((entry.name, "f"))
    except OSError:
        return None
    return tuple(sorted(out))


# the search paths a runtime runs from: code, kept read-only (not a channel of the user's)
SEARCH_PATHS = ("PYTHONPATH", "PATH", "LD_LIBRARY_PATH")


def reachable_paths(command: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """What a runtime may run from: its executable and the arguments that name files (a script,
    a module's directory), the interpreter's prefixes, the search paths of its environment, and
    the wrapper script a bootstrap may start it through."""
    paths = [command[0] if command else "", sys.prefix, sys.base_prefix, sys.exec_prefix]
    paths.append(env.get("AWS_LAMBDA_EXEC_WRAPPER", ""))
    paths.extend(arg for arg in command[1:] if arg.startswith("/") and os.path.exists(arg))
    for var in SEARCH_PATHS:
        paths.extend(p for p in env.get(var, "").split(os.pathsep) if p)
    return paths


def channel_paths(env: Mapping[str, str], skip: Iterable[str] = ()) -> list[str]:
    """The paths under the machine's /tmp that the values of a function's variables name (a
    `PATH`-like list counts each part): the user's own channel with the function (a marker, a
    record, pytest's `tmp_path`), kept writable at the same path. A path that exists is kept
    itself (a file or a directory); one that does not yet, through its nearest existing parent,
    so the function can make it, but never /tmp itself: a path right in /tmp that is not there
    yet cannot be kept. `skip`: variables that are not the user's (rie's own, the search paths)."""
    prefix = SANDBOX_TMP + "/"
    skipped = {*skip, *SEARCH_PATHS}
    found: list[str] = []
    for key, value in env.items():
        if prefix not in value or key in skipped:
            continue
        for part in value.split(os.pathsep):
            if not part.startswith(prefix):
                continue
            path = os.path.normpath(part)
            while not os.path.lexists(path) and _under(path, SANDBOX_TMP):
                path = os.path.dirname(path)
            path = os.path.realpath(path)
            if _under(path, SANDBOX_TMP) and path != SANDBOX_TMP and os.path.exists(path):
                found.append(path)
    return found


def child_setup(p: Plan) -> Callable[[], None]:
    """The part of a child's set-up between fork and exec that makes its mounts. Failing, it
    leaves the child as it was (a limit less rather than a function that cannot start)."""
    lib = _lib()
    lib.unshare  # noqa: B018 - resolved before the fork, not in the child
    own = p.tmp_source is None
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | (CLONE_NEWUSER if own else 0)
    # the flags each read-only path's mount has, known before the fork
    keep_flags = {path: _mount_flags(path) for path in p.readonly}
    keep_flags.update((path, _mount_flags(path)) for path, writable in p.keep if not writable)
    kept_dirs = {path: os.path.isdir(path) for path, _ in p.keep}

    def setup() -> None:
        if lib.unshare(flags) != 0:
            return
        try:
            if own:
                # only this user and group, as themselves: files keep their owners
                _write_proc("/proc/self/setgroups", "deny")
                _write_proc("/proc/self/uid_map", f"{uid} {uid} 1")
                _write_proc("/proc/self/gid_map", f"{gid} {gid} 1")
            _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
            # the paths under /tmp it runs from or trades files through, held open while /tmp
            # is covered (one that went away meanwhile is left out)
            held: list[tuple[str, bool, int]] = []
            for path, writable in p.keep:
                with contextlib.suppress(OSError):
                    held.append((path, writable, os.open(path, os.O_PATH | os.O_CLOEXEC)))
            if p.tmp_source is None:
                size = f"size={p.tmp_bytes},mode=1777"
                _mount("tmpfs", SANDBOX_TMP, "tmpfs", MS_NOSUID | MS_NODEV, size)
            else:
                _mount(p.tmp_source, SANDBOX_TMP, None, MS_BIND | MS_REC, None)
            # parents first (the plan is sorted): a path inside a kept one is mounted over it
            for path, writable, fd in held:
                try:
                    if kept_dirs[path]:
                        os.makedirs(path, exist_ok=True)
                    elif not os.path.lexists(path):  # (inside a kept directory, it is there)
                        os.makedirs(os.path.dirname(path), exist_ok=True)
                        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
                    _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, None)
                    if not writable:
                        remount = MS_BIND | MS_REMOUNT | MS_RDONLY | keep_flags[path]
                        _mount(None, path, None, remount, None)
                except OSError:
                    continue  # this path is not kept; the rest still are
                finally:
                    os.close(fd)
            for path in p.readonly:
                _mount(path, path, None, MS_BIND | MS_REC, None)
                remount = MS_BIND | MS_REMOUNT | MS_RDONLY | keep_flags[path]
                _mount(None, path, None, remount, None)
            if p.opt_layers:
                try:
                    _merge_opt(p.opt_layers)
                except OSError as exc:
                    # said in the function's log: the layers stay reachable at their own paths
                    os.write(2, f"rie: sandbox: no layers at /opt for this init: {exc}\n".encode())
            cwd = p.cwd
            if p.task_root:
                try:
                    _show_at_var_task(p)
                    cwd = LAMBDA_TASK_ROOT
                except OSError as exc:
                    # said in the function's log: LAMBDA_TASK_ROOT names /var/task
                    os.write(2, f"rie: sandbox: no /var/task for this init: {exc}\n".encode())
            # the working directory was entered before the mounts: enter it again, on them
            os.chdir(cwd)
        except OSError:
            return

    return setup


def _merge_opt(layers: tuple[str, ...]) -> None:
    """The layers merged read-only at /opt, as Lambda unpacks them there one after the other:
    an overlay whose lower directories are the layers, the last one on top, over the machine's
    own /opt (so nothing it keeps there is hidden). Nothing is written anywhere."""
    lower = ":".join((*reversed(layers), LAMBDA_OPT))
    _mount("overlay", LAMBDA_OPT, "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, f"lowerdir={lower}")


def _show_at_var_task(p: Plan) -> None:
    """Bind the (read-only) task root at /var/task. Where the machine has no /var/task, /var is
    covered by a small tmpfs holding its own entries again (bound back, symlinks remade) and the
    new /var/task; the machine's /var is not touched."""
    covered = False
    try:
        if p.var_entries:
            var = os.open("/var", os.O_PATH | os.O_DIRECTORY)
            try:
                _mount("tmpfs", "/var", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
                covered = True
                for name, kind in p.var_entries:
                    target = f"/var/{name}"
                    if kind.startswith("l:"):
                        os.symlink(kind[2:], target)
                        continue
                    if kind == "d":
                        os.mkdir(target)
                    else:
                        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
                    _mount(f"/proc/self/fd/{var}/{name}", target, None, MS_BIND | MS_REC, None)
            finally:
                os.close(var)
            os.mkdir(LAMBDA_TASK_ROOT)
        _mount(p.task_root, LAMBDA_TASK_ROOT, None, MS_BIND | MS_REC, None)
        # the task root's mount is read-only already (it is among `readonly`): keep its flags
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY | _mount_flags(LAMBDA_TASK_ROOT)
        _mount(None, LAMBDA_TASK_ROOT, None, flags, None)
    except OSError:
        if covered:  # the machine's /var back as it was
            with contextlib.suppress(OSError):
                _umount("/var")
        raise


def _write_proc(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _mount_flags(path: str) -> int:
    try:
        f_flag = os.statvfs(path).f_flag
    except OSError:
        return 0
    return sum(ms for st, ms in _KEEP_FLAGS if f_flag & st)
