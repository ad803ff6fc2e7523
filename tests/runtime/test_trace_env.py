"""`_X_AMZN_TRACE_ID` changes with every invocation: Python code, the C library and child
processes all see the current value, whatever else sets or removes it, and setting it does not
leak (the C library's setenv keeps every value it ever set)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO

SCRIPT = r"""
import ctypes, json, os, subprocess
from runtime import trace_env

def child():
    return subprocess.run(["sh", "-c", 'printf %s "${_X_AMZN_TRACE_ID-unset}"'],
                          capture_output=True, text=True).stdout

def getenv():
    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p
    value = libc.getenv(b"_X_AMZN_TRACE_ID")
    return None if value is None else value.decode()

def rss_kib():
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0])

out = {}
trace_env.set("Root=1-before-preload")  # the ordinary way until preloaded
out["before"] = [os.environ["_X_AMZN_TRACE_ID"], child()]
trace_env.preload()
seen = []
for value in ("Root=1-aaaa", "Root=1-" + "b" * 60, "Root=1-c"):
    trace_env.set(value)
    seen.append([os.environ["_X_AMZN_TRACE_ID"], getenv(), child()])
out["seen"] = seen
os.environ["_X_AMZN_TRACE_ID"] = "set-by-the-function"
out["user"] = [getenv(), child()]
trace_env.set("Root=1-after-user")
out["after_user"] = [os.environ["_X_AMZN_TRACE_ID"], getenv(), child()]
trace_env.set(None)
out["removed"] = ["_X_AMZN_TRACE_ID" in os.environ, getenv(), child()]
trace_env.set("Root=1-back")
out["back"] = [os.environ["_X_AMZN_TRACE_ID"], getenv(), child()]
trace_env.set("Root=1-" + "x" * 600)  # longer than the buffer: the ordinary way
out["long"] = [len(os.environ["_X_AMZN_TRACE_ID"]), len(getenv()), len(child())]
trace_env.set("Root=1-short")
out["short_again"] = [os.environ["_X_AMZN_TRACE_ID"], getenv(), child()]
start = rss_kib()
for i in range(100000):
    trace_env.set("Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e%06d;Parent=9a9197af755a6419;Sampled=1" % i)
out["growth_kib"] = rss_kib() - start
out["last"] = getenv()
print(json.dumps(out))
"""


def test_every_reader_sees_the_current_trace_id_and_nothing_leaks() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["before"] == ["Root=1-before-preload"] * 2
    for value, row in zip(
        ("Root=1-aaaa", "Root=1-" + "b" * 60, "Root=1-c"), out["seen"], strict=True
    ):
        assert row == [value] * 3
    assert out["user"] == ["set-by-the-function"] * 2
    assert out["after_user"] == ["Root=1-after-user"] * 3
    assert out["removed"] == [False, None, "unset"]
    assert out["back"] == ["Root=1-back"] * 3
    assert out["long"] == [607] * 3
    assert out["short_again"] == ["Root=1-short"] * 3
    # os.environ's setenv would keep ~14 MB here (every value it ever set)
    assert out["growth_kib"] < 2048, out["growth_kib"]
    assert out["last"].endswith("099999;Parent=9a9197af755a6419;Sampled=1")
