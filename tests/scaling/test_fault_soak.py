"""A short fault soak, bounded to some seconds: several callers, a seeded mix of invocations that
succeed, raise, time out, `os._exit` and SIGKILL their own runtime (some leaving a `setsid` child).
Meanwhile, rounds of 10 parallel cold starts of a strict sh + curl runtime (it exits on any
failed call, as AWS's tutorial runtime) see no failed invocation.
Every invoke is answered exactly once with the kind its event asked for, none is throttled within
the limit, and nothing is left after SIGTERM, nor after a `kill -9` of rie and a new start.
The long version is `python -m benchmarks.soak` (figures in benchmarks/SOAK.md)."""

from __future__ import annotations

import pytest

from benchmarks.soak import KINDS, soak


@pytest.mark.timeout(180)  # a guard: it takes ~10 s here, more on a loaded machine
def test_fault_soak() -> None:
    f = soak(invokes=300, callers=4, shutdown_timeout=3.0)
    assert set(f.kinds) == set(KINDS), f.kinds  # every kind of ending was exercised
    assert f.wrong == [], f.wrong[:10]
    assert f.throttled == 0
    assert f.duplicate_ids == 0
    assert f.reports_not_once == 0
    assert f.shutdown_s < 3.0 + 3.0, f.shutdown_s
    assert f.left_after_sigterm == []
    assert f.left_after_kill9 == []
    assert f.cold_rounds >= 1 and f.cold_starts >= f.cold_rounds  # cold starts did happen
    assert f.cold_failed == [], f.cold_failed[:10]
