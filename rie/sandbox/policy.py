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

    def state(why: str | None) -> str:
        return "on" if why is None else f"off ({why})"

    parts = [
        f"memory {config.memory_mb} MB: {state(caps.memory)}",
        f"{cpu}: {state(caps.cpu)}",
        f"processes+threads {PIDS}: {state(caps.pids)}",
        f"open files {NOFILE}: on",
        f"/tmp {config.ephemeral_storage_mb} MB: {state(fs)}",
        f"read-only code: {state(fs)}",
    ]
    if caps.memory is None and not caps.oom_counted:
        parts.append("out-of-memory kills: reported as Runtime.ExitError (no OOM counter)")
    return f"rie: sandbox of {name} (lambda): " + "; ".join(parts)
