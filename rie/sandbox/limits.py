"""What a memory size buys on Lambda, as numbers the kernel takes (pure: no I/O).

Lambda's resource model (REFERENCE.md §11): memory M is the limit of the whole sandbox; CPU is in
proportion, 1,769 MB being one vCPU, up to 6 vCPUs at 10,240 MB; 1,024 open files; 1,024
processes and threads; /tmp of 512 MB unless the ephemeral storage says more. `quotas` turns a
memory size into those figures, capped by this machine's CPUs; `rie/sandbox/cgroups.py` writes
them.
"""

from __future__ import annotations

from dataclasses import dataclass

MB = 1024 * 1024
ONE_CPU_MB = 1769  # the memory size that buys one whole vCPU
MAX_CPUS = 6.0  # what 10,240 MB buys
# CFS quota per period. The kernel refuses quotas under 1 ms, and 128 MB's share of a period
# must stay above that: 20 ms gives 1.45 ms. A short period also keeps the throttling even over
# a short invocation (a long one would let a 50 ms handler run unthrottled in its first period).
CFS_PERIOD_US = 20_000
MIN_CFS_QUOTA_US = 1_000
NOFILE = 1024
PIDS = 1024
DEFAULT_EPHEMERAL_MB = 512
MIN_EPHEMERAL_MB, MAX_EPHEMERAL_MB = 512, 10240
SANDBOX_MODES = ("lambda", "off")


def cpu_share(memory_mb: int) -> float:
    """The CPUs Lambda gives a memory size (a fraction of one below 1,769 MB)."""
    return min(memory_mb / ONE_CPU_MB, MAX_CPUS)


@dataclass(frozen=True, slots=True)
class Quotas:
    memory_bytes: int
    cpus: float  # the share Lambda gives
    cpu_quota_us: int | None  # None: the share is this machine's whole count, nothing to cap
    cpu_period_us: int
    measurable: bool  # False: the share exceeds this machine's CPUs (timings are optimistic)
    pids: int
    nofile: int
    ephemeral_bytes: int


def quotas(memory_mb: int, machine_cpus: int, ephemeral_mb: int = DEFAULT_EPHEMERAL_MB) -> Quotas:
    share = cpu_share(memory_mb)
    capped = min(share, float(machine_cpus))
    quota: int | None = max(MIN_CFS_QUOTA_US, round(capped * CFS_PERIOD_US))
    if capped >= machine_cpus:
        quota = None
    return Quotas(
        memory_bytes=memory_mb * MB,
        cpus=share,
        cpu_quota_us=quota,
        cpu_period_us=CFS_PERIOD_US,
        measurable=share <= machine_cpus,
        pids=PIDS,
        nofile=NOFILE,
        ephemeral_bytes=ephemeral_mb * MB,
    )
