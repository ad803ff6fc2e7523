"""The fault soak's handler: the event says how this invocation ends (benchmarks/soak.py)."""

import os
import signal
import subprocess
import time


def handler(event, context):  # type: ignore[no-untyped-def]
    if event.get("spawn"):
        # a child that leaves the runtime's process group, as `setsid` does: it must die with
        # the environment all the same
        subprocess.Popen(["sleep", "60"], start_new_session=True)
    kind = event["kind"]
    if kind == "raise":
        raise ValueError(f"raised on purpose {event['n']}")
    if kind == "timeout":
        time.sleep(60)
    if kind == "exit":
        os._exit(3)
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    return {"n": event["n"]}
