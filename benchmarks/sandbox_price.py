"""The sandbox's price: cold start (Init Duration) and warm invokes, `--sandbox lambda` against
`--sandbox off`, interleaved so that both see the same machine.

`python -m benchmarks.sandbox_price [--samples N] [--warm N]`: for each sample, a fresh rie per
mode, one cold invoke (its REPORT's Init Duration: the runtime's cgroups, its /tmp, its mount
namespace and its start), then N warm invokes timed by the caller. Prints medians per mode.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from pathlib import Path

from rie.testing import LambdaFunction, rie_arguments

HANDLERS = Path(__file__).resolve().parent / "handlers"
_INIT = re.compile(r"Init Duration: ([\d.]+) ms")


def sample(mode: str, warm: int, memory: int = 3008) -> tuple[float, float]:
    args = rie_arguments(
        handler="noop.handler", task_root=HANDLERS, memory=memory, args=["--sandbox", mode]
    )
    fn = LambdaFunction(args).start()
    try:
        first = fn.invoke({"n": 0})
        found = _INIT.search(first.log)
        assert found, first.log
        times = []
        for _ in range(warm):
            t0 = time.perf_counter()
            fn.invoke({"n": 1})
            times.append((time.perf_counter() - t0) * 1000)
        return float(found.group(1)), statistics.median(times) if times else 0.0
    finally:
        fn.stop()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sandbox_price")
    p.add_argument("--samples", type=int, default=15)
    p.add_argument("--warm", type=int, default=100)
    p.add_argument("--memory", type=int, default=3008)
    a = p.parse_args()
    init: dict[str, list[float]] = {"off": [], "lambda": []}
    warm: dict[str, list[float]] = {"off": [], "lambda": []}
    for _ in range(a.samples):
        for mode in ("off", "lambda"):
            i, w = sample(mode, a.warm, a.memory)
            init[mode].append(i)
            warm[mode].append(w)
    for mode in ("off", "lambda"):
        print(
            f"--sandbox {mode:6}  cold start (Init Duration) median {statistics.median(init[mode]):6.2f} ms"
            f"  warm invoke median {statistics.median(warm[mode]):5.3f} ms"
        )
    print(
        f"price: cold {statistics.median(init['lambda']) - statistics.median(init['off']):+.2f} ms,"
        f" warm {statistics.median(warm['lambda']) - statistics.median(warm['off']):+.3f} ms"
    )


if __name__ == "__main__":
    main()
