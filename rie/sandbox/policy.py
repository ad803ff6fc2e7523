"""What the sandbox enforces for a function on this machine, said in one line at start-up.

`--sandbox lambda` applies each part of Lambda's resource model this machine allows and says
which parts it could not apply and why; nothing here ever stops a function from starting (the
parts that cannot be had are simply not applied). `--sandbox off` applies none of them.
"""

from __future__ import annotations

import os

from rie.sandbox import cgroups, namespace
from rie.sandbox.limits import NOFILE, PIDS, cpu_share
from rie.sandbox.supervisor import CGROUP_PREFIX, MemoryCgroup
from rie.settings.config import Config

_caps: cgroups.Capabilities | None = None


def capabilities() -> cgroups.Capabilities:
    """What the cgroups of this machine let us limit (probed once per emulator)."""
    global _caps
    if _caps is None:
        _caps = cgroups.probe(MemoryCgroup.base(), f"{CGROUP_PREFIX}{os.getpid()}-probe")
    return _caps


def summary(config: Config) -> str:
    """One line: each limit of the function's sandbox, `on` or `off (why)`."""
    name = config.function_name
    if config.sandbox == "off":
        return (
            f"rie: sandbox of {name}: off (--sandbox off): memory, CPU, /tmp and code "
            "as on this machine; Memory Size is only reported"
        )
    caps = capabilities()
    cpus = os.cpu_count() or 1
    share = cpu_share(config.memory_mb)
    cpu = f"cpu {share:.2f} of {cpus} CPUs"
    if share > cpus:
        cpu = f"cpu {share:.2f} CPUs (capped at this machine's {cpus})"
    fs = namespace.capability()
    own = " (a user namespace: the runtime's and each extension's own)"
    tmp_note = own if namespace.mode() == "userns" else ""

    items: list[tuple[str, str | None]] = [
        (f"memory {config.memory_mb} MB", caps.memory),
        (cpu, caps.cpu),
        (f"processes+threads {PIDS}", caps.pids),
        (f"open files {NOFILE}", None),
        (f"/tmp {config.ephemeral_storage_mb} MB" + (tmp_note if fs is None else ""), fs),
        ("read-only code", fs),
    ]
    # consecutive limits that are off for one reason share it, so the line stays readable
    parts: list[str] = []
    i = 0
    while i < len(items):
        names, why = [items[i][0]], items[i][1]
        while why is not None and i + 1 < len(items) and items[i + 1][1] == why:
            i += 1
            names.append(items[i][0])
        parts.append(", ".join(names) + (": on" if why is None else f": off ({why})"))
        i += 1
    if caps.memory is None and not caps.oom_counted:
        parts.append("out-of-memory kills: reported as Runtime.ExitError (no OOM counter)")
    return f"rie: sandbox of {name} (lambda): " + "; ".join(parts)
