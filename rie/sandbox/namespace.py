"""An environment's own /tmp and read-only code, through a private mount namespace per process.

Each environment gets a tmpfs of its ephemeral-storage size, mounted (by the emulator, in its own
namespace) on the environment's directory under the machine's temporary directory and made anew
at each init, so it is empty when an environment starts and gone with it. Every process of the
environment (runtime, extensions) enters a mount namespace of its own between fork and exec
(`child_setup`), where that tmpfs is bind-mounted on /tmp, and the task root and the layers are
bind-mounted read-only over themselves. The runtime and its extensions thus share one /tmp, as on
Lambda, while the machine's /tmp and the code stay untouched.

The code, the interpreter and anything else the function runs from may themselves live under the
machine's /tmp (a venv there, pytest's `tmp_path`): those directories are opened before /tmp is
covered and bind-mounted back at their own paths, so they stay reachable (their parent
directories appear, empty, in the function's /tmp).

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
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
SANDBOX_TMP = "/tmp"

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


_capability: tuple[str | None] | None = None


def capability() -> str | None:
    """None when this machine lets rie give environments their own /tmp and read-only code;
    else why not (decided once)."""
    global _capability
    if _capability is None:
        _capability = (_why_not(),)
    return _capability[0]


def _why_not() -> str | None:
    if not sys.platform.startswith("linux"):
        return "Linux mount namespaces are needed"
    if os.geteuid() != 0:
        return "mount namespaces need root here (see docs/resources.md)"
    if not os.path.exists("/proc/self/ns/mnt"):
        return "this kernel has no mount namespaces"
    try:
        _lib().unshare  # noqa: B018 - present in glibc and musl; probed, not called
    except AttributeError:
        return "the C library has no unshare()"
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
    """What one process of an environment sees: `tmp_source` on /tmp, `readonly` paths read-only,
    `keep` (directories under /tmp the process runs from) reachable; the working directory
    `cwd` entered again once the mounts are made."""

    tmp_source: str
    readonly: tuple[str, ...]
    keep: tuple[str, ...]
    cwd: str


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def plan(
    tmp_source: str,
    readonly: Iterable[str],
    reachable: Iterable[str],
    cwd: str,
) -> Plan:
    """The mounts of one process: `reachable` are the paths it may run from (files or
    directories; only those under /tmp need anything done)."""
    keep: list[str] = []
    for path in reachable:
        if not path:
            continue
        path = os.path.realpath(path)
        if not os.path.isdir(path):
            path = os.path.dirname(path)
        if _under(path, SANDBOX_TMP) and path != SANDBOX_TMP and not _under(path, tmp_source):
            keep.append(path)
    # a kept directory inside another kept one needs nothing of its own
    keep = sorted(set(keep))
    outer = [p for p in keep if not any(_under(p, q) and p != q for q in keep)]
    ro = sorted({os.path.realpath(p) for p in readonly if p and os.path.isdir(p)})
    return Plan(tmp_source, tuple(ro), tuple(outer), cwd)


def reachable_paths(command: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """What a runtime may run from: its executable, the interpreter's prefixes, and the search
    paths of its environment."""
    paths = [command[0] if command else "", sys.prefix, sys.base_prefix, sys.exec_prefix]
    for var in ("PYTHONPATH", "PATH", "LD_LIBRARY_PATH"):
        paths.extend(p for p in env.get(var, "").split(os.pathsep) if p)
    return paths


def child_setup(p: Plan) -> Callable[[], None]:
    """The part of a child's set-up between fork and exec that makes its mounts. Failing, it
    leaves the child as it was (a limit less rather than a function that cannot start)."""
    lib = _lib()
    lib.unshare  # noqa: B018 - resolved before the fork, not in the child

    def setup() -> None:
        if lib.unshare(CLONE_NEWNS) != 0:
            return
        try:
            _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
            # the directories under /tmp it runs from, held open while /tmp is covered
            held = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in p.keep]
            _mount(p.tmp_source, SANDBOX_TMP, None, MS_BIND | MS_REC, None)
            for path, fd in held:
                os.makedirs(path, exist_ok=True)
                _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, None)
                os.close(fd)
            for path in p.readonly:
                _mount(path, path, None, MS_BIND | MS_REC, None)
                _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)
            # the working directory was entered before the mounts: enter it again, on them
            os.chdir(p.cwd)
        except OSError:
            return

    return setup
