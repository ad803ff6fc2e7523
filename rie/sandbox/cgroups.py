"""Lambda's limits written into a runtime's cgroups, and what this machine lets us enforce.

A runtime's memory cgroup is made by the supervisor (rie/sandbox/supervisor.py, `MemoryCgroup`);
this module gives it its limits: memory (with no swap), CPU by quota, processes and threads by
the pids controller. On cgroup v1 the cpu and pids controllers live in hierarchies of their own,
so the runtime also gets a group in each (same name), joined before it execs like the memory one.
On cgroup v2 one group holds every controller the parent delegates to it.

Invariant: a limit is reported as enforced only when its file was written; anything the machine
refuses is said once, at start-up (`probe`), never raised: the function runs as it would without.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rie.sandbox.limits import Quotas, quotas

CGROUP_ROOT = "/sys/fs/cgroup"
_V1_EXTRA = ("cpu", "pids")  # the v1 hierarchies a runtime joins besides memory


def own_paths() -> dict[str, str]:
    """This process's cgroup path per v1 controller ("" for the v2 hierarchy)."""
    paths: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return paths
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path.rstrip("/")
    return paths


def _v1_base(controller: str, own: dict[str, str]) -> str | None:
    """Where this process's group of a v1 controller is, if that hierarchy is mounted."""
    if controller not in own:
        return None
    for mount in (controller, "cpu,cpuacct" if controller in ("cpu", "cpuacct") else controller):
        base = os.path.join(CGROUP_ROOT, mount)
        if os.path.isdir(base) and not os.path.exists(os.path.join(base, "cgroup.controllers")):
            return base + own[controller]
    return None


_v1_bases: dict[str, str | None] | None = None


def v1_bases() -> dict[str, str | None]:
    """The cpu and pids bases on a v1 machine (decided once)."""
    global _v1_bases
    if _v1_bases is None:
        own = own_paths()
        _v1_bases = {c: _v1_base(c, own) for c in _V1_EXTRA}
    return _v1_bases


def is_v2(memory_group: str) -> bool:
    return os.path.exists(os.path.join(memory_group, "cgroup.controllers"))


def _write(path: str, value: str) -> bool:
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(value)
    except OSError:
        return False
    return True


@dataclass
class Applied:
    """What was written for one runtime: the v1 groups it joins besides memory, and the limits
    that took."""

    extra_groups: list[str] = field(default_factory=list)
    enforced: set[str] = field(default_factory=set)


def apply(memory_group: str, name: str, q: Quotas) -> Applied:
    """Write `q` into the runtime's groups (its memory group, made; the v1 cpu and pids groups
    named `name`, made here). Called before the runtime joins them."""
    applied = Applied()
    if is_v2(memory_group):
        if _write(os.path.join(memory_group, "memory.max"), str(q.memory_bytes)):
            applied.enforced.add("memory")
            _write(os.path.join(memory_group, "memory.swap.max"), "0")
        cpu_max = f"{q.cpu_quota_us or 'max'} {q.cpu_period_us}"
        if _write(os.path.join(memory_group, "cpu.max"), cpu_max):
            applied.enforced.add("cpu")
        if _write(os.path.join(memory_group, "pids.max"), str(q.pids)):
            applied.enforced.add("pids")
        return applied
    if _write(os.path.join(memory_group, "memory.limit_in_bytes"), str(q.memory_bytes)):
        applied.enforced.add("memory")
        # with swap the group would page out instead of failing: memsw (memory + swap) = M too
        _write(os.path.join(memory_group, "memory.memsw.limit_in_bytes"), str(q.memory_bytes))
    for controller, base in v1_bases().items():
        if base is None:
            continue
        group = os.path.join(base, name)
        try:
            os.mkdir(group)
        except FileExistsError:
            pass
        except OSError:
            continue
        applied.extra_groups.append(group)
        if controller == "cpu":
            ok = q.cpu_quota_us is None or (
                _write(os.path.join(group, "cpu.cfs_period_us"), str(q.cpu_period_us))
                and _write(os.path.join(group, "cpu.cfs_quota_us"), str(q.cpu_quota_us))
            )
        else:
            ok = _write(os.path.join(group, "pids.max"), str(q.pids))
        if ok:
            applied.enforced.add(controller)
    return applied


def delegate_controllers(group: str) -> bool:
    """v2: hand the memory, cpu and pids controllers down to the groups inside `group` (each
    process of an environment has one, for its own peak and OOM counter); whether memory was
    (without it, an inner group would tell nothing)."""
    control = os.path.join(group, "cgroup.subtree_control")
    for controller in ("memory", "cpu", "pids"):  # one at a time: one refused spoils no other
        _write(control, f"+{controller}")
    try:
        with open(control, encoding="ascii") as f:
            return "memory" in f.read().split()
    except OSError:
        return False


def oom_kills(memory_group: str) -> int:
    """How many processes the kernel's OOM killer ended in this group (the group is made per
    runtime, so any is this runtime's)."""
    for name in ("memory.events", "memory.oom_control"):
        try:
            with open(os.path.join(memory_group, name), "rb") as f:
                for line in f:
                    key, _, value = line.partition(b" ")
                    if key == b"oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return 0


def oom_kill_counted(memory_group: str) -> bool:
    """Whether this kernel counts OOM kills per group (v1: 4.13 and later)."""
    for name in ("memory.events", "memory.oom_control"):
        try:
            with open(os.path.join(memory_group, name), "rb") as f:
                if b"oom_kill " in f.read():
                    return True
        except OSError:
            continue
    return False


def remove_groups(paths: list[str]) -> list[str]:
    """rmdir each (empty) group; those that are still busy."""
    left = []
    for path in paths:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError:
            left.append(path)
    return left


def sweep(prefix: str, is_stale: Callable[[str], bool], within_s: float) -> None:
    """Remove the v1 cpu and pids groups left by emulators that are gone (their processes were
    killed through the memory group, swept first)."""
    stale: list[str] = []
    for base in v1_bases().values():
        if base is None:
            continue
        try:
            names = os.listdir(base)
        except OSError:
            continue
        stale.extend(os.path.join(base, n) for n in names if n.startswith(prefix) and is_stale(n))
    deadline = time.monotonic() + within_s
    while stale and time.monotonic() < deadline:
        stale = remove_groups(stale)
        if stale:
            time.sleep(0.01)


@dataclass(frozen=True)
class Capabilities:
    """What this machine lets rie enforce, each with the reason when it cannot."""

    memory: str | None  # None: enforced; else why not
    cpu: str | None
    pids: str | None
    oom_counted: bool


def probe(memory_base: str | None, probe_name: str) -> Capabilities:
    """Make a throw-away group to see which limits take (once, at start-up: about a millisecond)."""
    if memory_base is None:
        reason = _why_no_cgroup()
        return Capabilities(reason, reason, reason, False)
    group = os.path.join(memory_base, probe_name)
    try:
        os.mkdir(group)
    except FileExistsError:
        pass
    except OSError as exc:
        reason = f"no cgroup can be made under {memory_base}: {exc.strerror}" + _hint()
        return Capabilities(reason, reason, reason, False)
    applied = Applied()
    try:
        applied = apply(group, probe_name, quotas(128, 1))
        counted = oom_kill_counted(group)
    finally:
        remove_groups([*applied.extra_groups, group])

    def why(controller: str) -> str | None:
        if controller in applied.enforced:
            return None
        if is_v2(memory_base):
            return f"the {controller} controller is not delegated to {memory_base}" + _hint()
        return f"no writable v1 {controller} hierarchy" + _hint()

    return Capabilities(why("memory"), why("cpu"), why("pids"), counted)


def _hint() -> str:
    return " (run as root, or delegate a cgroup subtree: see docs/resources.md)"


def _why_no_cgroup() -> str:
    if not os.path.isdir(CGROUP_ROOT):
        return f"{CGROUP_ROOT} is not mounted"
    return "no cgroup of ours can be made here" + _hint()
