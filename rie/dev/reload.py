"""Hot reload (`--watch`): when a file under a function's code (task root, layers) changes, that
function's environments are recycled, so the next invocation runs the new code.

Invariants:
- one burst of saves is one reload: changes are gathered until the files are quiet for a moment
  (watchfiles' debounce), then each function concerned is recycled once and one line is printed;
- nothing is lost: an invocation running old code finishes on it; its environment retires after;
- no polling of the file system: watchfiles waits on the kernel's notifications (inotify on Linux),
  and is imported only when --watch is given.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from rie.functions.registry import Function

DEBOUNCE_MS = 1000  # the longest a burst of changes is gathered before reloading
STEP_MS = 300  # quiet this long after a change: the burst is over


def available() -> bool:
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


async def watch(functions: Sequence[Function], stop: asyncio.Event) -> None:
    """Recycle functions as their code changes, until `stop` is set."""
    import logging

    from watchfiles import DefaultFilter, awatch

    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # rie prints its own line

    watched = [(root, fn) for fn in functions if fn.config.watch for root in roots_of(fn)]
    if not watched:
        return
    paths = sorted({root for root, _ in watched})
    async for changes in awatch(
        *paths,
        watch_filter=DefaultFilter(),
        debounce=DEBOUNCE_MS,
        step=STEP_MS,
        stop_event=stop,
        recursive=True,
    ):
        by_function: dict[str, tuple[Function, list[str]]] = {}
        for _, changed in changes:
            real = os.path.realpath(changed)
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
