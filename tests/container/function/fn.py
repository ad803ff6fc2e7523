"""Handlers the container tests mount as /var/task: who runs them, one that outlives its
invocation, and one that leaves orphaned processes for PID 1 to reap."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from typing import Any


def whoami(event: Any, context: Any) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(dir=os.environ.get("TMPDIR")) as f:
        f.write(b"x")  # the function's TMPDIR is writable whoever runs it
    return {
        "uid": os.getuid(),
        "tmpdir": os.environ.get("TMPDIR"),
        "runtime_api": os.environ.get("AWS_LAMBDA_RUNTIME_API"),
        "function_name": context.function_name,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "event": event,
    }


def slow(event: Any, context: Any) -> str:
    print("sleeping", flush=True)
    time.sleep(600)
    return "woke up"


def orphans(event: Any, context: Any) -> list[int]:
    """Start processes whose parent exits at once: they are handed to PID 1, which must reap them
    when they end. Their pids come back so that the test can watch them go."""
    pids = []
    for _ in range(3):
        out = subprocess.run(
            ["sh", "-c", "sleep 0.1 & echo $!"], capture_output=True, text=True, check=True
        )
        pids.append(int(out.stdout))
    return pids
