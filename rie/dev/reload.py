"""Hot reload (`--watch`): when a file under a function's code (task root, layers) changes, that
function's environments are recycled, so the next invocation runs the new code.

Invariants:
- one burst of saves is one reload: changes are gathered until the files have been quiet for
  `QUIET_MS` (at most `DEBOUNCE_MS` after the first), then each function concerned is recycled once
  and one line is printed;
- nothing is lost: an invocation running old code finishes on it; its environment retires after;
- nothing is polled and nothing is paid per invocation: on Linux the kernel's inotify descriptor
  sits in the event loop's selector (no thread, no timer, no wake-up while the code does not
  change); elsewhere watchfiles waits on the platform's notifications, imported only then.

Why not watchfiles on Linux too: its asyncio side waits in a thread that wakes every `step` ms to
look for changes, and reports a burst only after one more quiet `step`, so a save took 1-2 steps
to be seen and the idle process woke `1000/step` times a second.
"""

from __future__ import annotations

import asyncio
import os
import re
import struct
import sys
from collections.abc import Callable, Iterable, Sequence

from rie.functions.registry import Function

DEBOUNCE_MS = 1000  # the longest a burst of changes is gathered before reloading
# quiet this long after a change: the burst is over (an editor's save takes a millisecond or
# two; a tool that writes many files may want longer: RIE_WATCH_QUIET_MS)
QUIET_MS = 40

# what watchfiles' DefaultFilter leaves out, so both watchers agree
IGNORED_DIRS = frozenset(
    {
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".tox",
        ".venv",
        ".idea",
        "node_modules",
        ".mypy_cache",
        ".pytest_cache",
        ".hypothesis",
    }
)
_IGNORED_NAMES = re.compile(r"\.py[cod]$|\.___jb_...___$|\.sw.$|~$|^\.\#|^\.DS_Store$|^flycheck_")

# <sys/inotify.h>
_IN_MODIFY = 0x2
_IN_ATTRIB = 0x4
_IN_CLOSE_WRITE = 0x8
_IN_MOVED_FROM = 0x40
_IN_MOVED_TO = 0x80
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_Q_OVERFLOW = 0x4000
_IN_IGNORED = 0x8000
_IN_ONLYDIR = 0x1000000
_IN_ISDIR = 0x40000000
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_WATCH_MASK = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
    | _IN_ONLYDIR
)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then `len` bytes of NUL-padded name


def available() -> bool:
    if sys.platform.startswith("linux"):
        return True
    import importlib.util

    return importlib.util.find_spec("watchfiles") is not None


def roots_of(fn: Function) -> list[str]:
    return [os.path.realpath(path) for path in (fn.config.task_root, *fn.config.layers)]


def owners(changed: str, watched: Sequence[tuple[str, Function]]) -> list[Function]:
    """The functions whose code includes the path `changed`."""
    found: list[Function] = []
    for root, fn in watched:
        if (changed == root or changed.startswith(root + os.sep)) and fn not in found:
            found.append(fn)
    return found


def ignored(name: str) -> bool:
    """Bytecode caches, VCS and tool directories, editors' swap and backup files, by name (the
    directories named here are never watched, so nothing under them is ever reported)."""
    return name in IGNORED_DIRS or bool(_IGNORED_NAMES.search(name))


def describe(paths: Sequence[str], roots: Sequence[str]) -> str:
    """The changed files, relative to their root; an editor's temporary files (written, renamed
    or removed within the burst) are left out when real files changed too."""
    unique = sorted(set(paths))
    existing = [path for path in unique if os.path.exists(path)]
    names = []
    for path in existing or unique:
        root = next((r for r in roots if path.startswith(r + os.sep)), None)
        names.append(os.path.relpath(path, root) if root else path)
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def reload_all(changed: Iterable[str], watched: Sequence[tuple[str, Function]]) -> None:
    """Recycle each function that owns one of the `changed` paths, once, and say so."""
    by_function: dict[str, tuple[Function, list[str]]] = {}
    for path in changed:
        real = os.path.realpath(path)
        for fn in owners(real, watched):
            by_function.setdefault(fn.name, (fn, []))[1].append(real)
    for fn, files in by_function.values():
        recycled = fn.pool.recycle()
        print(
            f"rie: reloading {fn.name}: {describe(files, roots_of(fn))} changed "
            f"({recycled} environment{'s' if recycled != 1 else ''} recycled)",
            file=sys.stderr,
            flush=True,
        )


def quiet_ms() -> int:
    try:
        return max(1, int(os.environ.get("RIE_WATCH_QUIET_MS", "") or QUIET_MS))
    except ValueError:
        return QUIET_MS


class Burst:
    """Changed paths gathered until `quiet` ms without a change (or `DEBOUNCE_MS` in all), then
    handed to `flush` at once: a loop timer, armed only while a burst is under way."""

    def __init__(self, flush: Callable[[list[str]], None], quiet: int = QUIET_MS) -> None:
        self._flush = flush
        self._quiet = quiet / 1000
        self._paths: list[str] = []
        self._first = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, paths: Iterable[str]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        before = len(self._paths)
        self._paths.extend(paths)
        if len(self._paths) == before:
            return
        if self._timer is None:
            self._first = now
        else:
            self._timer.cancel()
        at = min(now + self._quiet, self._first + DEBOUNCE_MS / 1000)
        self._timer = loop.call_at(at, self._fire)

    def _fire(self) -> None:
        paths, self._paths, self._timer = self._paths, [], None
        self._flush(paths)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._paths = []


class Inotify:
    """Linux's inotify over a tree of directories, each watched on its own (inotify is not
    recursive): directories created or moved in later are watched as they appear."""

    def __init__(self) -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        self._ctypes = ctypes
        self._add = libc.inotify_add_watch
        self._add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self._add.restype = ctypes.c_int
        self.fd = int(libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
        if self.fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self._dirs: dict[int, str] = {}  # watch descriptor -> directory
        self._pending = b""

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def watch_tree(self, root: str) -> list[str]:
        """Watch `root` and every directory under it; the files found (for a directory that
        appeared after the watch began, they are changes)."""
        files: list[str] = []
        self._watch_dir(root)
        for top, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if d not in IGNORED_DIRS]
            for d in dirs:
                self._watch_dir(os.path.join(top, d))
            files.extend(os.path.join(top, name) for name in names)
        return files

    def _watch_dir(self, path: str) -> None:
        wd = int(self._add(self.fd, os.fsencode(path), _WATCH_MASK))
        if wd < 0:
            err = self._ctypes.get_errno()
            if err in (2, 20):  # ENOENT, ENOTDIR: gone or replaced meanwhile, nothing to watch
                return
            hint = " (raise fs.inotify.max_user_watches)" if err == 28 else ""  # ENOSPC
            raise OSError(err, f"cannot watch {path}: {os.strerror(err)}{hint}")
        self._dirs[wd] = path

    def read(self, roots: Sequence[str]) -> list[str]:
        """The paths the queued events name (a queue overflow names every root)."""
        changed: list[str] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            data = self._pending + data
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                end = offset + _EVENT.size + length
                if end > len(data):
                    break
                name = data[offset + _EVENT.size : end].rstrip(b"\0")
                offset = end
                self._event(wd, mask, os.fsdecode(name), roots, changed)
            self._pending = data[offset:]
        return changed

    def _event(self, wd: int, mask: int, name: str, roots: Sequence[str], out: list[str]) -> None:
        if mask & _IN_Q_OVERFLOW:
            out.extend(roots)  # events were lost: assume everything changed
            return
        directory = self._dirs.get(wd)
        if mask & _IN_IGNORED:
            self._dirs.pop(wd, None)
            return
        if directory is None:
            return
        if name and ignored(name):
            return
        path = os.path.join(directory, name) if name else directory
        if mask & _IN_ISDIR and mask & (_IN_CREATE | _IN_MOVED_TO):
            try:
                out.extend(self.watch_tree(path))
            except OSError as e:
                print(f"rie: --watch: {e}", file=sys.stderr, flush=True)
            out.append(path)
        elif mask & (_IN_DELETE_SELF | _IN_MOVE_SELF):
            if directory in roots:
                out.append(directory)
        else:
            out.append(path)


async def watch(functions: Sequence[Function], stop: asyncio.Event) -> None:
    """Recycle functions as their code changes, until `stop` is set."""
    watched = [(root, fn) for fn in functions if fn.config.watch for root in roots_of(fn)]
    if not watched:
        return
    roots = sorted({root for root, _ in watched})
    if not sys.platform.startswith("linux"):
        await _watch_with_watchfiles(roots, watched, stop)
        return
    loop = asyncio.get_running_loop()
    inotify = Inotify()
    burst = Burst(lambda paths: reload_all(paths, watched), quiet_ms())
    try:
        for root in roots:
            inotify.watch_tree(root)
        loop.add_reader(inotify.fd, lambda: burst.add(inotify.read(roots)))
        try:
            await stop.wait()
        finally:
            loop.remove_reader(inotify.fd)
    finally:
        burst.cancel()
        inotify.close()


async def _watch_with_watchfiles(
    roots: Sequence[str], watched: Sequence[tuple[str, Function]], stop: asyncio.Event
) -> None:
    import logging

    from watchfiles import DefaultFilter, awatch

    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # rie prints its own line
    async for changes in awatch(
        *roots,
        watch_filter=DefaultFilter(),
        debounce=DEBOUNCE_MS,
        step=quiet_ms(),
        stop_event=stop,
        recursive=True,
    ):
        reload_all((changed for _, changed in changes), watched)
